//! Issue 17's isolation table: every route mockstack serves (`mockstack::server::ROUTES`) asked by every persona
//! (alpha's member, reader and manager, beta's member, the admin, no token, a revoked token, an expired token). Each
//! cell's expected status comes from a rule that restates the real services' default policies (Keystone 30, Glance
//! 33, Nova 34 with the new RBAC defaults enforced), written once per kind of route; every response to a persona
//! that may not see project alpha's private data is scanned for secret markers planted in alpha's resources, and no
//! response may carry a token the request did not carry itself. All mismatches are reported together as one table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use mockstack::clock::ClockMode;
use mockstack::nova::quota::Quota;
use mockstack::server::{ROUTES, Route};
use mockstack::{Config, MockStack};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

// ----- personas -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Reader,
    Member,
    Manager,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Project {
    Alpha,
    Beta,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Persona {
    /// alice, member of alpha: alpha's resources are hers.
    Owner,
    AlphaReader,
    AlphaManager,
    /// bob, member of beta.
    OtherMember,
    Admin,
    NoToken,
    /// One of alice's tokens, revoked through `DELETE /v3/auth/tokens`.
    Revoked,
    /// One of alice's tokens, issued an hour and more before the table runs.
    Expired,
}

const PERSONAS: [Persona; 8] = [
    Persona::Owner,
    Persona::AlphaReader,
    Persona::AlphaManager,
    Persona::OtherMember,
    Persona::Admin,
    Persona::NoToken,
    Persona::Revoked,
    Persona::Expired,
];

impl Persona {
    fn name(self) -> &'static str {
        match self {
            Persona::Owner => "owner (alice)",
            Persona::AlphaReader => "alpha-reader",
            Persona::AlphaManager => "alpha-manager",
            Persona::OtherMember => "beta member (bob)",
            Persona::Admin => "admin",
            Persona::NoToken => "no token",
            Persona::Revoked => "revoked token",
            Persona::Expired => "expired token",
        }
    }

    /// The project and strongest role of a valid token; `None` when the request carries none that is valid.
    fn identity(self) -> Option<(Project, Role)> {
        match self {
            Persona::Owner => Some((Project::Alpha, Role::Member)),
            Persona::AlphaReader => Some((Project::Alpha, Role::Reader)),
            Persona::AlphaManager => Some((Project::Alpha, Role::Manager)),
            Persona::OtherMember => Some((Project::Beta, Role::Member)),
            Persona::Admin => Some((Project::Admin, Role::Admin)),
            Persona::NoToken | Persona::Revoked | Persona::Expired => None,
        }
    }

    /// Whether the persona may read alpha's private resources (so its answers are not scanned for them).
    fn sees_alpha_private_data(self) -> bool {
        matches!(self.identity(), Some((Project::Alpha, _)) | Some((_, Role::Admin)))
    }
}

// ----- the rules -----

/// What a policy (and the lookup before it) comes to for one persona.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allowed,
    Forbidden,
    NotFound,
    Unauthenticated,
}

/// Visibility of the alpha image a Glance row targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Private,
    /// Shared with beta (beta is a member).
    Shared,
    Public,
    Community,
}

impl Visibility {
    fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Public => "public",
            Visibility::Community => "community",
        }
    }
}

/// Keystone 30's defaults (`keystone/common/policies/*.py`), each of which lets an admin in (`admin_required`) besides
/// whom its name says. mockstack issues project-scoped tokens only, so the system-scoped and domain-scoped branches of
/// these rules never hold.
#[derive(Debug, Clone, Copy)]
enum KeystoneRule {
    /// `identity:get_user` (ADMIN_OR_SYSTEM_READER_OR_DOMAIN_READER_OR_USER), on alice.
    TargetUser,
    /// `identity:get_project` (ADMIN_OR_SYSTEM_READER_OR_DOMAIN_READER_OR_PROJECT_USER), on alpha.
    ProjectUser,
    /// `identity:list_projects` (ADMIN_OR_SYSTEM_READER_OR_DOMAIN_READER) and `identity:list_roles`
    /// (ADMIN_OR_SYSTEM_READER_OR_DOMAIN_MANAGER: `role:manager and not domain_id:None`, which a project-scoped
    /// token never meets).
    SystemOrDomainScope,
    /// `identity:check_token`, `identity:validate_token`, `identity:revoke_token`: admin, a system user or a service,
    /// or the token's own user (`token_subject`), on one of alice's tokens.
    TokenSubject,
}

/// Glance 33's defaults (`glance/policies/image.py`, `base.py`) behind its visibility rule: an image the caller cannot
/// see (`get_image` fails) is a 404 whatever the policy asked (`ImageAPIPolicy._enforce`).
#[derive(Debug, Clone, Copy)]
enum GlanceRule {
    /// `add_image`: ADMIN_OR_PROJECT_MEMBER_CREATE_IMAGE, the member role in the project that will own the image
    /// (the caller's own).
    AddImage,
    /// `get_image`: ADMIN_OR_PROJECT_READER_GET_IMAGE; the visibility rule alone decides.
    GetImage,
    /// `modify_image`, `delete_image`, `upload_image`, `deactivate`, `reactivate`, `add_member`, `delete_member`:
    /// ADMIN_OR_PROJECT_MEMBER on the image's owner.
    OwnerMember,
    /// `download_image`: ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE, the member role on any image one can see.
    Download,
    /// `get_member`, `get_members`: ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER.
    ReaderOrSharedMember,
    /// `modify_member`: ADMIN_OR_SHARED_MEMBER, the member role in the member project (beta).
    SharedMember,
}

/// Nova 34's defaults (`nova/policies/*.py`, PROJECT_READER_OR_ADMIN, PROJECT_MEMBER_OR_ADMIN, ADMIN).
#[derive(Debug, Clone, Copy)]
enum NovaRule {
    /// A rule whose target is the caller's own project: `servers:index`/`detail` (reader), `servers:create`
    /// (member), `os-flavor-extra-specs:index`/`show` (reader).
    OwnProject(Role),
    /// ADMIN, checked before any lookup: `os-flavor-manage:*`, `os-flavor-extra-specs:create/update/delete`.
    AdminOnly,
    /// Alpha's server, looked up in the caller's project first (another project's server is a 404), then the rule
    /// on the server's project: `servers:show` (reader), `servers:update`/`delete`, `servers:start`/`stop`/`reboot`/
    /// `create_image`, `os-console-output`, `os-lock-server:lock`/`unlock`, `os-remote-consoles` (member),
    /// `os-instance-actions:list`/`show` (reader).
    Server(Role),
    /// `os-server-shares:*`: the rule on the project of the server's instance mapping, before the instance is looked
    /// up, so another project's server is a 403 (index/show reader, create/delete member).
    ServerMapping(Role),
    /// A private flavor no project has access to: no policy, but only an admin's flavor query finds it.
    PrivateFlavor,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Answered before authentication: version documents, `POST /v3/auth/tokens`, and the console page a console
    /// URL opens (its token is the credential).
    NoAuth,
    /// Any valid token, no policy or an empty one: `identity:get_auth_catalog`, `identity:get_auth_projects`,
    /// Glance's schemas, `get_images` (ADMIN_OR_PROJECT_READER on the caller's own project) and info, Nova's flavor
    /// list and show, mockstack's clock.
    AnyToken,
    /// mockstack's own admin API (no real service has it): the admin role.
    MockAdmin,
    Keystone(KeystoneRule),
    Glance(GlanceRule),
    Nova(NovaRule),
}

/// The rule, applied to a persona on a row's target.
fn decide(rule: Rule, persona: Persona, visibility: Option<Visibility>) -> Decision {
    use Decision::*;
    let allowed_if = |yes: bool| if yes { Allowed } else { Forbidden };
    if let Rule::NoAuth = rule {
        return Allowed;
    }
    let Some((project, role)) = persona.identity() else { return Unauthenticated };
    let admin = role == Role::Admin;
    let alpha = project == Project::Alpha;
    match rule {
        Rule::NoAuth | Rule::AnyToken => Allowed,
        Rule::MockAdmin => allowed_if(admin),
        Rule::Keystone(k) => match k {
            KeystoneRule::TargetUser | KeystoneRule::TokenSubject => allowed_if(admin || persona == Persona::Owner),
            KeystoneRule::ProjectUser => allowed_if(admin || alpha),
            KeystoneRule::SystemOrDomainScope => allowed_if(admin),
        },
        Rule::Glance(GlanceRule::AddImage) => allowed_if(role >= Role::Member),
        Rule::Glance(g) => {
            let visibility = visibility.expect("Glance rows name their image's visibility");
            let can_see = admin
                || alpha
                || matches!(visibility, Visibility::Public | Visibility::Community)
                || (visibility == Visibility::Shared && project == Project::Beta);
            if !can_see {
                return NotFound;
            }
            match g {
                GlanceRule::GetImage | GlanceRule::ReaderOrSharedMember => Allowed,
                GlanceRule::AddImage => unreachable!("decided before visibility"),
                GlanceRule::OwnerMember => allowed_if(admin || (alpha && role >= Role::Member)),
                GlanceRule::Download => allowed_if(role >= Role::Member),
                GlanceRule::SharedMember => allowed_if(admin || (project == Project::Beta && role >= Role::Member)),
            }
        }
        Rule::Nova(n) => match n {
            NovaRule::OwnProject(needed) => allowed_if(role >= needed),
            NovaRule::AdminOnly => allowed_if(admin),
            NovaRule::Server(needed) => {
                if admin {
                    Allowed
                } else if !alpha {
                    NotFound
                } else {
                    allowed_if(role >= needed)
                }
            }
            NovaRule::ServerMapping(needed) => allowed_if(admin || (alpha && role >= needed)),
            NovaRule::PrivateFlavor => {
                if admin {
                    Allowed
                } else {
                    NotFound
                }
            }
        },
    }
}

// ----- the table -----

/// A target a destructive row consumes: each cell gets its own, made before the table runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// An alpha image with data (of the row's visibility).
    ActiveImage,
    /// An alpha image without data.
    QueuedImage,
    /// An alpha image with data, deactivated.
    DeactivatedImage,
    /// An alpha server, running.
    ActiveServer,
    /// An alpha server, stopped.
    StoppedServer,
    /// An alpha server its owner locked.
    LockedServer,
    /// A flavor.
    Flavor,
    /// An extra spec on the private flavor.
    SpecKey,
    /// A tag on the row's image.
    Tag,
    /// A member (not beta) of the shared image.
    Member,
    /// One of alice's tokens, as the subject.
    SubjectToken,
}

/// One row: a route, the request sent on it (its path parameters filled from the fixture), and the rule.
#[derive(Debug, Clone)]
struct Row {
    method: &'static str,
    pattern: &'static str,
    label: &'static str,
    rule: Rule,
    /// The status when the rule allows the persona.
    allowed: u16,
    visibility: Option<Visibility>,
    fresh: Option<Fresh>,
    query: Option<&'static str>,
    body: Option<Value>,
    content_type: Option<&'static str>,
    microversion: &'static str,
    /// The token to act on (`X-Subject-Token`).
    subject: bool,
    /// Why this row's answer may carry alpha's data to anyone (the URL's own token is the credential).
    capability: Option<&'static str>,
}

fn row(method: &'static str, pattern: &'static str, rule: Rule, allowed: u16) -> Row {
    Row {
        method,
        pattern,
        label: "",
        rule,
        allowed,
        visibility: None,
        fresh: None,
        query: None,
        body: None,
        content_type: None,
        microversion: "2.100",
        subject: false,
        capability: None,
    }
}

impl Row {
    fn label(mut self, label: &'static str) -> Row {
        self.label = label;
        self
    }
    fn visibility(mut self, v: Visibility) -> Row {
        self.visibility = Some(v);
        self
    }
    fn fresh(mut self, f: Fresh) -> Row {
        self.fresh = Some(f);
        self
    }
    fn query(mut self, q: &'static str) -> Row {
        self.query = Some(q);
        self
    }
    fn body(mut self, b: Value) -> Row {
        self.body = Some(b);
        self
    }
    fn content_type(mut self, c: &'static str) -> Row {
        self.content_type = Some(c);
        self
    }
    fn microversion(mut self, v: &'static str) -> Row {
        self.microversion = v;
        self
    }
    fn subject(mut self) -> Row {
        self.subject = true;
        self
    }
    fn capability(mut self, why: &'static str) -> Row {
        self.capability = Some(why);
        self
    }
}

const ALL_VISIBILITIES: [Visibility; 4] =
    [Visibility::Private, Visibility::Shared, Visibility::Public, Visibility::Community];
const PATCH: &str = "application/openstack-images-v2.1-json-patch";
const OCTETS: &str = "application/octet-stream";

/// Every row. Placeholders `{name}` in paths and bodies are filled per cell (see [`Fixture::fill`]).
fn table() -> Vec<Row> {
    use GlanceRule as G;
    use KeystoneRule as K;
    use NovaRule as N;
    use Rule::{AnyToken, Glance, Keystone, MockAdmin, NoAuth, Nova};
    let password_auth = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "domain": {"id": "default"}, "password": "mockstack-alice"}}},
        "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}
    }});
    let mut rows = vec![
        // Keystone
        row("GET", "/identity/", NoAuth, 300),
        row("GET", "/identity", NoAuth, 300),
        row("GET", "/identity/v3", NoAuth, 200),
        row("GET", "/identity/v3/", NoAuth, 200),
        row("GET", "/identity/v3/auth/tokens", Keystone(K::TokenSubject), 200).subject(),
        row("HEAD", "/identity/v3/auth/tokens", Keystone(K::TokenSubject), 200).subject(),
        row("POST", "/identity/v3/auth/tokens", NoAuth, 201).body(password_auth),
        row("DELETE", "/identity/v3/auth/tokens", Keystone(K::TokenSubject), 204).subject().fresh(Fresh::SubjectToken),
        row("GET", "/identity/v3/auth/catalog", AnyToken, 200),
        row("GET", "/identity/v3/auth/projects", AnyToken, 200),
        row("GET", "/identity/v3/users/{user_id}", Keystone(K::TargetUser), 200),
        row("GET", "/identity/v3/projects/{project_id}", Keystone(K::ProjectUser), 200),
        row("GET", "/identity/v3/projects", Keystone(K::SystemOrDomainScope), 200),
        row("GET", "/identity/v3/roles", Keystone(K::SystemOrDomainScope), 200),
        // Glance, apart from one image
        row("GET", "/image/", NoAuth, 300),
        row("GET", "/image", NoAuth, 300),
        row("GET", "/image/versions", NoAuth, 200),
        row("GET", "/image/v2/images", AnyToken, 200),
        row("POST", "/image/v2/images", Glance(G::AddImage), 201).body(json!({"name": "isolation-new-{fresh}"})),
        row("GET", "/image/v2/schemas/image", AnyToken, 200),
        row("GET", "/image/v2/schemas/images", AnyToken, 200),
        row("GET", "/image/v2/schemas/member", AnyToken, 200),
        row("GET", "/image/v2/schemas/members", AnyToken, 200),
        row("GET", "/image/v2/info/import", AnyToken, 200),
        // Without multiple stores Glance answers this 404 to anyone it let in.
        row("GET", "/image/v2/info/stores", AnyToken, 404),
        // Glance members, on the image shared with beta
        row("GET", "/image/v2/images/{image_id}/members", Glance(G::ReaderOrSharedMember), 200),
        row("POST", "/image/v2/images/{image_id}/members", Glance(G::OwnerMember), 200)
            .body(json!({"member": "isolation-member-{fresh}"})),
        row("GET", "/image/v2/images/{image_id}/members/{member_id}", Glance(G::ReaderOrSharedMember), 200),
        row("PUT", "/image/v2/images/{image_id}/members/{member_id}", Glance(G::SharedMember), 200)
            .body(json!({"status": "accepted"})),
        row("DELETE", "/image/v2/images/{image_id}/members/{member_id}", Glance(G::OwnerMember), 204)
            .fresh(Fresh::Member),
    ];
    for row in rows.iter_mut().filter(|r| r.pattern.contains("/members")) {
        row.visibility = Some(Visibility::Shared);
    }
    for v in ALL_VISIBILITIES {
        rows.extend([
            row("GET", "/image/v2/images/{image_id}", Glance(G::GetImage), 200),
            row("PATCH", "/image/v2/images/{image_id}", Glance(G::OwnerMember), 200)
                .content_type(PATCH)
                .body(json!([{"op": "add", "path": "/isolation_touched", "value": "yes"}])),
            row("DELETE", "/image/v2/images/{image_id}", Glance(G::OwnerMember), 204).fresh(Fresh::ActiveImage),
            row("GET", "/image/v2/images/{image_id}/file", Glance(G::Download), 200),
            row("PUT", "/image/v2/images/{image_id}/file", Glance(G::OwnerMember), 204)
                .fresh(Fresh::QueuedImage)
                .content_type(OCTETS),
            row("PUT", "/image/v2/images/{image_id}/tags/{tag}", Glance(G::OwnerMember), 204),
            row("DELETE", "/image/v2/images/{image_id}/tags/{tag}", Glance(G::OwnerMember), 204).fresh(Fresh::Tag),
            row("POST", "/image/v2/images/{image_id}/actions/deactivate", Glance(G::OwnerMember), 204)
                .fresh(Fresh::ActiveImage),
            row("POST", "/image/v2/images/{image_id}/actions/reactivate", Glance(G::OwnerMember), 204)
                .fresh(Fresh::DeactivatedImage),
        ]);
        for row in rows.iter_mut().rev().take(9) {
            row.visibility = Some(v);
            row.label = v.as_str();
        }
    }
    let server_body = json!({"server": {"name": "isolation-created", "imageRef": "{public_image}", "flavorRef": "1",
                                        "networks": "none"}});
    rows.extend([
        // Nova
        row("GET", "/compute/", NoAuth, 200),
        row("GET", "/compute", NoAuth, 200),
        row("GET", "/compute/v2.1/", NoAuth, 200),
        row("GET", "/compute/v2.1", NoAuth, 200),
        row("GET", "/compute/v2.1/flavors", AnyToken, 200),
        row("POST", "/compute/v2.1/flavors", Nova(N::AdminOnly), 200)
            .body(json!({"flavor": {"name": "isolation-flavor-{fresh}", "ram": 64, "vcpus": 1, "disk": 1}})),
        row("GET", "/compute/v2.1/flavors/detail", AnyToken, 200),
        row("GET", "/compute/v2.1/flavors/{id}", AnyToken, 200).label("public flavor").visibility(Visibility::Public),
        row("GET", "/compute/v2.1/flavors/{id}", Nova(N::PrivateFlavor), 200).label("private flavor"),
        row("PUT", "/compute/v2.1/flavors/{id}", Nova(N::AdminOnly), 200)
            .body(json!({"flavor": {"description": "isolation"}})),
        row("DELETE", "/compute/v2.1/flavors/{id}", Nova(N::AdminOnly), 202).fresh(Fresh::Flavor),
        row("GET", "/compute/v2.1/flavors/{id}/os-extra_specs", Nova(N::OwnProject(Role::Reader)), 200)
            .label("public flavor")
            .visibility(Visibility::Public),
        row("GET", "/compute/v2.1/flavors/{id}/os-extra_specs", Nova(N::PrivateFlavor), 200).label("private flavor"),
        row("POST", "/compute/v2.1/flavors/{id}/os-extra_specs", Nova(N::AdminOnly), 200)
            .body(json!({"extra_specs": {"isolation:added": "yes"}})),
        row("GET", "/compute/v2.1/flavors/{id}/os-extra_specs/{key}", Nova(N::PrivateFlavor), 200),
        row("PUT", "/compute/v2.1/flavors/{id}/os-extra_specs/{key}", Nova(N::AdminOnly), 200)
            .body(json!({"{key}": "again"})),
        row("DELETE", "/compute/v2.1/flavors/{id}/os-extra_specs/{key}", Nova(N::AdminOnly), 200).fresh(Fresh::SpecKey),
        row("GET", "/compute/v2.1/servers", Nova(N::OwnProject(Role::Reader)), 200),
        row("POST", "/compute/v2.1/servers", Nova(N::OwnProject(Role::Member)), 202).body(server_body),
        row("GET", "/compute/v2.1/servers/detail", Nova(N::OwnProject(Role::Reader)), 200),
        row("GET", "/compute/v2.1/servers/{id}", Nova(N::Server(Role::Reader)), 200),
        row("PUT", "/compute/v2.1/servers/{id}", Nova(N::Server(Role::Member)), 200)
            .body(json!({"server": {"name": "{server_name}"}})),
        row("DELETE", "/compute/v2.1/servers/{id}", Nova(N::Server(Role::Member)), 204).fresh(Fresh::ActiveServer),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 202)
            .label("os-stop")
            .fresh(Fresh::ActiveServer)
            .body(json!({"os-stop": null})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 202)
            .label("os-start")
            .fresh(Fresh::StoppedServer)
            .body(json!({"os-start": null})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 202)
            .label("reboot")
            .fresh(Fresh::ActiveServer)
            .body(json!({"reboot": {"type": "SOFT"}})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 202)
            .label("createImage")
            .fresh(Fresh::ActiveServer)
            .body(json!({"createImage": {"name": "isolation-snapshot-{fresh}"}})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 200)
            .label("os-getConsoleOutput")
            .body(json!({"os-getConsoleOutput": {}})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 202)
            .label("lock")
            .fresh(Fresh::ActiveServer)
            .body(json!({"lock": null})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 202)
            .label("unlock")
            .fresh(Fresh::LockedServer)
            .body(json!({"unlock": null})),
        row("POST", "/compute/v2.1/servers/{id}/action", Nova(N::Server(Role::Member)), 200)
            .label("os-getVNCConsole (2.1)")
            .microversion("2.1")
            .body(json!({"os-getVNCConsole": {"type": "novnc"}})),
        row("GET", "/compute/v2.1/servers/{id}/os-instance-actions", Nova(N::Server(Role::Reader)), 200),
        row("GET", "/compute/v2.1/servers/{id}/os-instance-actions/{request_id}", Nova(N::Server(Role::Reader)), 200),
        row("POST", "/compute/v2.1/servers/{id}/remote-consoles", Nova(N::Server(Role::Member)), 200)
            .body(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        row("GET", "/compute/v2.1/servers/{id}/shares", Nova(N::ServerMapping(Role::Reader)), 200),
        // Allowed, a share is attached to a stopped server only (409); without Manila none is ever found (404).
        row("POST", "/compute/v2.1/servers/{id}/shares", Nova(N::ServerMapping(Role::Member)), 409)
            .body(json!({"share": {"share_id": "{share_id}"}})),
        row("GET", "/compute/v2.1/servers/{id}/shares/{share_id}", Nova(N::ServerMapping(Role::Reader)), 404),
        row("DELETE", "/compute/v2.1/servers/{id}/shares/{share_id}", Nova(N::ServerMapping(Role::Member)), 409),
        // mockstack's own API
        row("GET", "/mockstack/journal", MockAdmin, 200),
        row("DELETE", "/mockstack/journal", MockAdmin, 204),
        row("GET", "/mockstack/clock", AnyToken, 200),
        row("POST", "/mockstack/clock/advance", MockAdmin, 200).body(json!({"seconds": 0})),
        row("GET", "/mockstack/faults", MockAdmin, 200),
        row("PUT", "/mockstack/faults", MockAdmin, 200).body(json!({"rules": []})),
        row("DELETE", "/mockstack/faults", MockAdmin, 204),
        row("GET", "/mockstack/servers/{id}/domain.xml", MockAdmin, 200),
        row("GET", "/mockstack/compute/options", MockAdmin, 200),
        row("PUT", "/mockstack/compute/options", MockAdmin, 200).body(json!({})),
        row("GET", "/mockstack/vnc_lite.html", NoAuth, 200)
            .query("path=%3Ftoken%3D{console_token}")
            .capability("a console URL's token is its credential, as noVNC's proxy takes it"),
    ]);
    rows
}

// ----- the fixture -----

/// What the table runs against: one mockstack with a manual clock, every persona's token, alpha's resources with
/// secret markers, and the fresh targets of destructive rows.
struct Fixture {
    mock: MockStack,
    http: Client,
    tokens: HashMap<Persona, String>,
    /// Placeholder values every cell shares.
    values: HashMap<&'static str, String>,
    images: HashMap<&'static str, String>,
    /// (marker name, value): alpha's private data, which no persona outside alpha (and not admin) may be shown.
    secrets: Vec<(String, String)>,
    /// Every token the fixture issued to a persona: a response may carry one only if its request did.
    all_tokens: Vec<String>,
    /// Per-cell overrides of placeholders, for destructive rows.
    fresh: HashMap<(usize, Persona), HashMap<&'static str, String>>,
    counter: std::cell::Cell<u64>,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A guest installer ISO the simulated host boots; it installs for longer than the table runs, so its servers stay
/// running.
fn installer_iso() -> Vec<u8> {
    let facts: guestsim::guest::GuestFacts = toml::from_str(
        r#"
name = "Isolation Linux"
family = "linux"
release = "1"
distro = "ubuntu"
arch = "x86_64"
virtio_storage = "built-in"
firmware = "bios"
min_ram_mb = 64
min_disk_gb = 1
install_seconds = 1000000
boot_seconds = 10
agent = "cloud-init"
"#,
    )
    .unwrap();
    let mut out = Vec::new();
    guestsim::media::os_iso::os_installer_iso(&facts, &Default::default(), &mut out).unwrap();
    out
}

impl Fixture {
    fn next(&self) -> u64 {
        self.counter.set(self.counter.get() + 1);
        self.counter.get()
    }

    async fn send(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.mock.url()));
        if let Some(token) = token {
            request = request.header("x-auth-token", token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Reply { status, headers, text }
    }

    /// A call that must succeed, as `persona`.
    async fn setup(&self, persona: Persona, method: &str, path: &str, body: Option<Value>, ct: Option<&str>) -> Reply {
        let mut headers = vec![("openstack-api-version", "compute 2.100")];
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        headers.push(("content-type", ct.unwrap_or("application/json")));
        let reply = self.send(Some(&self.tokens[&persona]), method, path, &headers, bytes).await;
        assert!(reply.status < 300, "set-up {method} {path}: {} {}", reply.status, reply.text);
        reply
    }

    async fn login(mock: &MockStack, http: &Client, user: &str, project: &str) -> (String, Value) {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": format!("mockstack-{user}")}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}
        }});
        let r = http.post(mock.auth_url() + "/auth/tokens").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "login {user}");
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        (token, r.json().await.unwrap())
    }

    /// An alpha image of `visibility` (a public one is made by the admin for alpha: only admins publicize), shared
    /// ones with beta as a member, with `data` uploaded by alice when given.
    async fn image(&self, name: &str, visibility: Visibility, data: Option<Vec<u8>>, extra: Value) -> String {
        let alpha = self.values["project_id"].clone();
        let mut body = json!({"name": name, "visibility": visibility.as_str(), "disk_format": "raw",
                              "container_format": "bare"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let creator = if visibility == Visibility::Public {
            body["owner"] = json!(alpha);
            Persona::Admin
        } else {
            Persona::Owner
        };
        let created = self.setup(creator, "POST", "/image/v2/images", Some(body), None).await.json();
        let id = created["id"].as_str().unwrap().to_string();
        if visibility == Visibility::Shared {
            let beta = json!({"member": self.values["beta_project_id"]});
            self.setup(Persona::Owner, "POST", &format!("/image/v2/images/{id}/members"), Some(beta), None).await;
        }
        if let Some(data) = data {
            let reply = self
                .send(
                    Some(&self.tokens[&Persona::Owner]),
                    "PUT",
                    &format!("/image/v2/images/{id}/file"),
                    &[("content-type", OCTETS)],
                    Some(data),
                )
                .await;
            assert_eq!(reply.status, 204, "upload: {}", reply.text);
        }
        id
    }

    /// An alpha server booted from the public installer image, with alice's secrets in its name and metadata.
    async fn server(&self, name: &str) -> (String, Reply) {
        let body = json!({"server": {"name": name, "imageRef": self.values["public_image"], "flavorRef": "1",
                                     "networks": "none", "metadata": {"isolation": "server-metadata-secret"}}});
        let reply = self.setup(Persona::Owner, "POST", "/compute/v2.1/servers", Some(body), None).await;
        let id = reply.json()["server"]["id"].as_str().unwrap().to_string();
        (id, reply)
    }

    fn advance(&self, seconds: u64) {
        self.mock.state().clock().advance(Duration::from_secs(seconds));
    }

    async fn start() -> Fixture {
        let config = Config {
            clock: ClockMode::Manual { tick: Duration::ZERO },
            quota: Quota { instances: 1000, cores: 1000, ram_mb: 1 << 30 },
            virtio_win_image: None,
            driver_floppy_image: None,
            ..Config::default()
        };
        let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = Client::new();
        let mut tokens = HashMap::new();
        // Issued first, then left to expire: every other token is issued after the clock moved past its end.
        let (expired, _) = Fixture::login(&mock, &http, "alice", "alpha").await;
        mock.state().clock().advance(mockstack::auth::DEFAULT_TOKEN_TTL + Duration::from_secs(1));
        tokens.insert(Persona::Expired, expired);
        let mut values = HashMap::new();
        for (persona, user, project) in [
            (Persona::Owner, "alice", "alpha"),
            (Persona::AlphaReader, "alpha-reader", "alpha"),
            (Persona::AlphaManager, "alpha-manager", "alpha"),
            (Persona::OtherMember, "bob", "beta"),
            (Persona::Admin, "admin", "admin"),
            (Persona::Revoked, "alice", "alpha"),
        ] {
            let (token, body) = Fixture::login(&mock, &http, user, project).await;
            if persona == Persona::Owner {
                values.insert("user_id", body["token"]["user"]["id"].as_str().unwrap().to_string());
                values.insert("project_id", body["token"]["project"]["id"].as_str().unwrap().to_string());
            }
            if persona == Persona::OtherMember {
                values.insert("beta_project_id", body["token"]["project"]["id"].as_str().unwrap().to_string());
            }
            tokens.insert(persona, token);
        }
        let all_tokens = tokens.values().cloned().collect();
        let mut fixture = Fixture {
            mock,
            http,
            tokens,
            values,
            images: HashMap::new(),
            secrets: Vec::new(),
            all_tokens,
            fresh: HashMap::new(),
            counter: std::cell::Cell::new(0),
        };
        let revoked = fixture.tokens[&Persona::Revoked].clone();
        let reply = fixture
            .send(Some(&revoked), "DELETE", "/identity/v3/auth/tokens", &[("x-subject-token", &revoked)], None)
            .await;
        assert_eq!(reply.status, 204, "revoking: {}", reply.text);

        let unique = uuid::Uuid::new_v4().simple().to_string();
        let secret = |what: &str| format!("isolation-{what}-{unique}");
        // Alpha's images, each with data of its own (so its checksum is its own).
        let public = fixture
            .image(&secret("public-image"), Visibility::Public, Some(installer_iso()), json!({"disk_format": "iso"}))
            .await;
        fixture.values.insert("public_image", public.clone());
        fixture.images.insert("public", public);
        for v in [Visibility::Private, Visibility::Shared, Visibility::Community] {
            let name = secret(&format!("{}-image", v.as_str()));
            let data = format!("isolation {} data {unique}", v.as_str()).into_bytes();
            let extra = json!({"isolation_secret": secret(&format!("{}-property", v.as_str()))});
            let id = fixture.image(&name, v, Some(data), extra).await;
            if v == Visibility::Private {
                let image = fixture.setup(Persona::Owner, "GET", &format!("/image/v2/images/{id}"), None, None).await;
                let image = image.json();
                fixture.secrets.extend([
                    ("private image id".into(), id.clone()),
                    ("private image name".into(), name),
                    ("private image property".into(), image["isolation_secret"].as_str().unwrap().to_string()),
                    ("private image checksum".into(), image["checksum"].as_str().unwrap().to_string()),
                    ("private image multihash".into(), image["os_hash_value"].as_str().unwrap().to_string()),
                ]);
            }
            fixture.images.insert(v.as_str(), id);
        }
        for id in fixture.images.values().cloned().collect::<Vec<_>>() {
            fixture
                .setup(Persona::Owner, "PUT", &format!("/image/v2/images/{id}/tags/isolation-tag"), None, None)
                .await;
        }
        fixture.values.insert("tag", "isolation-tag".into());
        fixture.values.insert("member_id", fixture.values["beta_project_id"].clone());

        // A flavor no project has access to, with one extra spec.
        let flavor = json!({"flavor": {"name": secret("private-flavor"), "ram": 64, "vcpus": 1, "disk": 1,
                                       "os-flavor-access:is_public": false}});
        let flavor = fixture.setup(Persona::Admin, "POST", "/compute/v2.1/flavors", Some(flavor), None).await.json();
        let flavor_id = flavor["flavor"]["id"].as_str().unwrap().to_string();
        let spec = json!({"extra_specs": {"isolation:key": "value"}});
        let specs = format!("/compute/v2.1/flavors/{flavor_id}/os-extra_specs");
        fixture.setup(Persona::Admin, "POST", &specs, Some(spec), None).await;
        fixture.values.insert("private_flavor", flavor_id);
        fixture.values.insert("key", "isolation:key".into());
        fixture.values.insert("share_id", uuid::Uuid::new_v4().to_string());

        // Alpha's server.
        let server_name = secret("server");
        let (server, created) = fixture.server(&server_name).await;
        let admin_pass = created.json()["server"]["adminPass"].as_str().unwrap().to_string();
        let request_id = created.headers["x-openstack-request-id"].to_str().unwrap().to_string();
        fixture.secrets.extend([
            ("server id".into(), server.clone()),
            ("server name".into(), server_name.clone()),
            ("server admin password".into(), admin_pass),
            ("server create request id".into(), request_id.clone()),
        ]);
        fixture.values.insert("server", server);
        fixture.values.insert("server_name", server_name);
        fixture.values.insert("request_id", request_id);
        fixture
    }

    /// Makes every destructive cell's own target; servers are created together, then the clock is moved once.
    async fn make_fresh_targets(&mut self, rows: &[Row]) {
        let mut servers = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let Some(fresh) = row.fresh else { continue };
            for persona in PERSONAS {
                let n = self.next();
                let mut values = HashMap::new();
                let visibility = row.visibility.unwrap_or(Visibility::Private);
                let image_data = || Some(format!("fresh image {n}").into_bytes());
                match fresh {
                    Fresh::ActiveImage | Fresh::DeactivatedImage => {
                        let id = self.image(&format!("fresh-{n}"), visibility, image_data(), json!({})).await;
                        if fresh == Fresh::DeactivatedImage {
                            let path = format!("/image/v2/images/{id}/actions/deactivate");
                            self.setup(Persona::Admin, "POST", &path, None, None).await;
                        }
                        values.insert("image_id", id);
                    }
                    Fresh::QueuedImage => {
                        values.insert("image_id", self.image(&format!("fresh-{n}"), visibility, None, json!({})).await);
                    }
                    Fresh::ActiveServer | Fresh::StoppedServer | Fresh::LockedServer => {
                        let (id, _) = self.server(&format!("fresh-server-{n}")).await;
                        servers.push((fresh, id.clone()));
                        values.insert("server", id);
                    }
                    Fresh::Flavor => {
                        let body = json!({"flavor": {"name": format!("fresh-flavor-{n}"), "ram": 64, "vcpus": 1,
                                                     "disk": 1}});
                        let created =
                            self.setup(Persona::Admin, "POST", "/compute/v2.1/flavors", Some(body), None).await;
                        values.insert("flavor", created.json()["flavor"]["id"].as_str().unwrap().to_string());
                    }
                    Fresh::SpecKey => {
                        let key = format!("isolation:fresh-{n}");
                        let path = format!("/compute/v2.1/flavors/{}/os-extra_specs", self.values["private_flavor"]);
                        let body = json!({"extra_specs": {key.clone(): "v"}});
                        self.setup(Persona::Admin, "POST", &path, Some(body), None).await;
                        values.insert("key", key);
                    }
                    Fresh::Tag => {
                        let tag = format!("fresh-tag-{n}");
                        let path = format!("/image/v2/images/{}/tags/{tag}", self.images[visibility.as_str()]);
                        self.setup(Persona::Owner, "PUT", &path, None, None).await;
                        values.insert("tag", tag);
                    }
                    Fresh::Member => {
                        let member = format!("fresh-member-{n}");
                        let path = format!("/image/v2/images/{}/members", self.images[visibility.as_str()]);
                        self.setup(Persona::Owner, "POST", &path, Some(json!({"member": member})), None).await;
                        values.insert("member_id", member);
                    }
                    Fresh::SubjectToken => {
                        let (token, _) = Fixture::login(&self.mock, &self.http, "alice", "alpha").await;
                        self.all_tokens.push(token.clone());
                        values.insert("subject", token);
                    }
                }
                self.fresh.insert((index, persona), values);
            }
        }
        self.advance(10);
        for (fresh, id) in &servers {
            let action = match fresh {
                Fresh::StoppedServer => json!({"os-stop": null}),
                Fresh::LockedServer => json!({"lock": null}),
                _ => continue,
            };
            self.setup(Persona::Owner, "POST", &format!("/compute/v2.1/servers/{id}/action"), Some(action), None).await;
        }
        self.advance(30);
        // The table's shared server must be running: its console is asked for.
        let path = format!("/compute/v2.1/servers/{}", self.values["server"]);
        let server = self.setup(Persona::Owner, "GET", &path, None, None).await.json();
        assert_eq!(server["server"]["status"], "ACTIVE", "{server}");
        // A console URL alice opened, for the console page's row.
        let path = format!("/compute/v2.1/servers/{}/remote-consoles", self.values["server"]);
        let body = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
        let console = self.setup(Persona::Owner, "POST", &path, Some(body), None).await.json();
        let url = console["remote_console"]["url"].as_str().unwrap().to_string();
        let token = url.rsplit("%3D").next().unwrap().to_string();
        self.values.insert("console_token", token);
    }

    /// The value of placeholder `name` for a cell: the cell's own target first, then the row's image or flavor.
    fn value(&self, row: &Row, index: usize, persona: Persona, name: &str) -> String {
        if let Some(v) = self.fresh.get(&(index, persona)).and_then(|m| m.get(name)) {
            return v.clone();
        }
        match name {
            "image_id" => self.images[row.visibility.expect("image rows name a visibility").as_str()].clone(),
            "id" if row.pattern.contains("/flavors/") => match self.fresh.get(&(index, persona)) {
                Some(m) if m.contains_key("flavor") => m["flavor"].clone(),
                // m1.tiny, public.
                _ if row.visibility == Some(Visibility::Public) => "1".into(),
                _ => self.values["private_flavor"].clone(),
            },
            "id" => self.value(row, index, persona, "server"),
            "subject" => self.tokens[&Persona::Owner].clone(),
            "fresh" => format!("{index}-{persona:?}"),
            other => self.values.get(other).cloned().unwrap_or_else(|| panic!("no value for {{{other}}}")),
        }
    }

    /// `text` with every `{name}` filled for the cell.
    fn fill(&self, text: &str, row: &Row, index: usize, persona: Persona) -> String {
        let placeholder = regex::Regex::new(r"\{([a-z_]+)\}").unwrap();
        placeholder.replace_all(text, |c: &regex::Captures| self.value(row, index, persona, &c[1])).into_owned()
    }
}

// ----- running it -----

/// One cell whose answer is not what the rule says, or whose answer shows what it must not.
struct Mismatch {
    route: String,
    persona: Persona,
    expected: String,
    got: String,
    excerpt: String,
}

/// Keystone's 401 body, which keystonemiddleware writes in front of Glance and Nova too.
fn is_keystone_401(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| {
        v == json!({"error": {"code": 401, "title": "Unauthorized",
                              "message": "The request you have made requires authentication."}})
    })
}

fn excerpt(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(110).collect()
}

async fn run_cell(fixture: &Fixture, row: &Row, index: usize, persona: Persona) -> Vec<Mismatch> {
    let decision = decide(row.rule, persona, row.visibility);
    let expected = match decision {
        Decision::Allowed => row.allowed,
        Decision::Forbidden => 403,
        Decision::NotFound => 404,
        Decision::Unauthenticated => 401,
    };
    let mut path = fixture.fill(row.pattern, row, index, persona);
    if let Some(query) = row.query {
        path = format!("{path}?{}", fixture.fill(query, row, index, persona));
    }
    let subject = row.subject.then(|| fixture.value(row, index, persona, "subject"));
    let version = format!("compute {}", row.microversion);
    let mut headers = vec![("openstack-api-version", version.as_str())];
    headers.push(("content-type", row.content_type.unwrap_or("application/json")));
    if let Some(subject) = &subject {
        headers.push(("x-subject-token", subject));
    }
    let body = match (&row.body, row.content_type) {
        (_, Some(OCTETS)) => Some(b"uploaded by the isolation table".to_vec()),
        (Some(b), _) => Some(fixture.fill(&b.to_string(), row, index, persona).into_bytes()),
        (None, _) => None,
    };
    let token = fixture.tokens.get(&persona).map(String::as_str);
    let sent = format!(
        "{path} {} {}",
        subject.as_deref().unwrap_or(""),
        String::from_utf8_lossy(body.as_deref().unwrap_or(b""))
    );
    let reply = fixture.send(token, row.method, &path, &headers, body).await;

    let label = if row.label.is_empty() { String::new() } else { format!(" [{}]", row.label) };
    let route = format!("{} {}{label}", row.method, row.pattern);
    let mut mismatches = Vec::new();
    let mut fail = |expected: String, got: String| {
        mismatches.push(Mismatch { route: route.clone(), persona, expected, got, excerpt: excerpt(&reply.text) })
    };
    if reply.status != expected {
        fail(format!("{expected} ({decision:?})"), reply.status.to_string());
    } else if decision == Decision::Unauthenticated && row.method != "HEAD" && !is_keystone_401(&reply.text) {
        fail("401 with Keystone's body".into(), "another body".into());
    }
    // What the answer shows: its body and headers.
    let mut shown = reply.text.clone();
    for (name, value) in &reply.headers {
        let _ = write!(shown, "\n{name}: {}", value.to_str().unwrap_or(""));
    }
    if !persona.sees_alpha_private_data() && row.capability.is_none() {
        for (what, secret) in &fixture.secrets {
            if shown.contains(secret.as_str()) && !sent.contains(secret.as_str()) {
                fail(format!("no {what}"), format!("{what} shown"));
            }
        }
    }
    for other in &fixture.all_tokens {
        if shown.contains(other.as_str()) && Some(other.as_str()) != token && !sent.contains(other.as_str()) {
            fail("no token it was not given".into(), "another token shown".into());
        }
    }
    mismatches
}

fn render(mismatches: &[Mismatch]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<72} {:<18} {:<28} {:<22} body", "route", "persona", "expected", "got");
    for m in mismatches {
        let _ =
            writeln!(out, "{:<72} {:<18} {:<28} {:<22} {}", m.route, m.persona.name(), m.expected, m.got, m.excerpt);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_persona_as_the_real_policies_say() {
    let rows = table();
    let mut fixture = Fixture::start().await;
    fixture.make_fresh_targets(&rows).await;
    let mut mismatches = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        for persona in PERSONAS {
            mismatches.extend(run_cell(&fixture, row, index, persona).await);
        }
    }
    let cells = rows.len() * PERSONAS.len();
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells ({} rows over {} routes) disagree with the real policies:\n{}",
        mismatches.len(),
        rows.len(),
        ROUTES.len(),
        render(&mismatches)
    );
}

/// The table runs over exactly the routes the router serves, each at least once.
#[test]
fn the_table_covers_every_route_and_nothing_else() {
    let rows = table();
    let served: Vec<(String, String)> = ROUTES.iter().map(|r| (r.method.to_string(), r.pattern())).collect();
    let missing: Vec<&(String, String)> =
        served.iter().filter(|(m, p)| !rows.iter().any(|r| r.method == m && r.pattern == p)).collect();
    assert!(missing.is_empty(), "routes without a row in the isolation table: {missing:?}");
    let unknown: Vec<String> = rows
        .iter()
        .filter(|r| !served.iter().any(|(m, p)| r.method == m && r.pattern == p))
        .map(|r| format!("{} {}", r.method, r.pattern))
        .collect();
    assert!(unknown.is_empty(), "rows for routes mockstack does not serve: {unknown:?}");
}

/// Every `.route(PATH, METHODS)` call in mockstack's source, as (method, PATH) pairs, counted.
fn routes_in_source() -> BTreeMap<(String, String), usize> {
    let mut found = BTreeMap::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src];
    let method_call = regex::Regex::new(r"\b(get|head|post|put|patch|delete)\(").unwrap();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                let Some(literal) = rest.trim_start().strip_prefix('"') else { continue };
                let route_path = &literal[..literal.find('"').unwrap()];
                // The call's text up to its closing parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map(|(i, _)| i)
                    .unwrap();
                for call in method_call.captures_iter(&rest[..end]) {
                    let method = call[1].to_ascii_uppercase();
                    *found.entry((method, route_path.to_string())).or_insert(0) += 1;
                }
            }
        }
    }
    found
}

/// `ROUTES` is the router's own list: the same (method, path) pairs as the `.route` calls in the source, as often.
#[test]
fn routes_list_matches_the_routers() {
    let mut listed: BTreeMap<(String, String), usize> = BTreeMap::new();
    for Route { method, path, .. } in ROUTES {
        *listed.entry((method.to_string(), path.to_string())).or_insert(0) += 1;
    }
    let in_source = routes_in_source();
    let only_source: Vec<_> = in_source.iter().filter(|(k, n)| listed.get(*k) != Some(n)).collect();
    let only_listed: Vec<_> = listed.iter().filter(|(k, n)| in_source.get(*k) != Some(n)).collect();
    assert!(
        only_source.is_empty() && only_listed.is_empty(),
        "mockstack::server::ROUTES and the routers disagree.\nrouted (count) but not listed so: {only_source:?}\n\
         listed (count) but not routed so: {only_listed:?}"
    );
}

/// The rules are not vacuous: each kind refuses someone, and a valid token is needed wherever a route asks for one.
#[test]
fn every_rule_refuses_someone_but_discovery() {
    for row in table() {
        let refused = PERSONAS.iter().filter(|p| decide(row.rule, **p, row.visibility) != Decision::Allowed).count();
        match row.rule {
            Rule::NoAuth => assert_eq!(refused, 0, "{} {}", row.method, row.pattern),
            _ => assert!(refused >= 3, "{} {} refuses only {refused} personas", row.method, row.pattern),
        }
    }
}
