//! Who exists in the mock cloud: domains, projects, users and their role assignments, loaded from a TOML file or the built-in default set.
//!
//! The file format (documented in the README):
//!
//! ```toml
//! [[domains]]            # optional; the "default" domain always exists
//! id = "default"
//! name = "Default"
//!
//! [[projects]]
//! name = "alpha"
//! domain = "default"     # a domain id or name; "default" when omitted
//!
//! [[users]]
//! name = "alice"
//! password = "alice-secret"
//! domain = "default"
//! [users.roles]          # project name = roles on it
//! alpha = ["member"]
//! ```
//!
//! Roles imply each other as in Keystone's bootstrap: admin > manager > member > reader.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// Roles known to mockstack, in Keystone's default implication order (each implies the next).
pub const ROLE_CHAIN: [&str; 4] = ["admin", "manager", "member", "reader"];

/// The other role Keystone's bootstrap creates: `service`, which the services' own users hold (keystonemiddleware
/// validates tokens with it). It implies no other role.
pub const SERVICE_ROLE: &str = "service";

/// A Keystone domain: the namespace projects and users live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDomain {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub password: String,
    /// Project id -> roles as assigned (implied roles are added at token time).
    pub roles: BTreeMap<String, Vec<String>>,
}

/// Every identity of one mockstack.
#[derive(Debug, Clone, Default)]
pub struct IdentitySet {
    pub domains: Vec<IdentityDomain>,
    pub projects: Vec<Project>,
    pub users: Vec<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    domains: Vec<FileDomain>,
    #[serde(default)]
    projects: Vec<FileProject>,
    #[serde(default)]
    users: Vec<FileUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDomain {
    id: Option<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProject {
    id: Option<String>,
    name: String,
    domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    id: Option<String>,
    name: String,
    password: String,
    domain: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
}

/// A stable, Keystone-shaped (32 hex digit) id derived from a name, so ids survive restarts.
pub fn stable_id(kind: &str, name: &str) -> String {
    use md5::Digest;
    let digest = md5::Md5::digest(format!("{kind}:{name}").as_bytes());
    hex::encode(digest)
}

impl IdentitySet {
    /// The built-in set: an admin, and members, readers and managers in two ordinary projects.
    pub fn builtin() -> IdentitySet {
        Self::from_toml_str(BUILTIN, "<built-in identities>").expect("built-in identities are valid")
    }

    pub fn load(path: &Path) -> Result<IdentitySet, IdentityError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| IdentityError::Read { path: path.display().to_string(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<IdentitySet, IdentityError> {
        let model: FileModel = toml::from_str(text)
            .map_err(|e| IdentityError::Parse { path: origin.to_string(), message: toml_error_with_line(text, &e) })?;
        let invalid = |what: String| IdentityError::Invalid { path: origin.to_string(), what };

        let mut set = IdentitySet {
            domains: vec![IdentityDomain { id: "default".into(), name: "Default".into() }],
            ..IdentitySet::default()
        };
        for d in model.domains {
            let id = d.id.unwrap_or_else(|| stable_id("domain", &d.name));
            if set.domains.iter().any(|x| x.id == id || x.name == d.name) {
                if id == "default" {
                    set.domains[0].name = d.name;
                    continue;
                }
                return Err(invalid(format!("domain {:?} is defined twice", d.name)));
            }
            set.domains.push(IdentityDomain { id, name: d.name });
        }
        let resolve_domain = |set: &IdentitySet, key: &Option<String>, owner: &str| {
            let key = key.as_deref().unwrap_or("default");
            set.domains
                .iter()
                .find(|d| d.id == key || d.name == key)
                .map(|d| d.id.clone())
                .ok_or_else(|| invalid(format!("{owner} names unknown domain {key:?}")))
        };
        for p in model.projects {
            let domain_id = resolve_domain(&set, &p.domain, &format!("project {:?}", p.name))?;
            if set.projects.iter().any(|x| x.name == p.name && x.domain_id == domain_id) {
                return Err(invalid(format!("project {:?} is defined twice", p.name)));
            }
            let id = p.id.unwrap_or_else(|| stable_id("project", &format!("{domain_id}/{}", p.name)));
            set.projects.push(Project { id, name: p.name, domain_id });
        }
        for u in model.users {
            let domain_id = resolve_domain(&set, &u.domain, &format!("user {:?}", u.name))?;
            if set.users.iter().any(|x| x.name == u.name && x.domain_id == domain_id) {
                return Err(invalid(format!("user {:?} is defined twice", u.name)));
            }
            let mut roles = BTreeMap::new();
            for (project, assigned) in u.roles {
                let project_id = set
                    .projects
                    .iter()
                    .find(|p| p.name == project || p.id == project)
                    .map(|p| p.id.clone())
                    .ok_or_else(|| invalid(format!("user {:?} has roles on unknown project {project:?}", u.name)))?;
                for role in &assigned {
                    if !ROLE_CHAIN.contains(&role.as_str()) && role != SERVICE_ROLE {
                        return Err(invalid(format!(
                            "user {:?}: unknown role {role:?} (known: {}, {SERVICE_ROLE})",
                            u.name,
                            ROLE_CHAIN.join(", ")
                        )));
                    }
                }
                roles.insert(project_id, assigned);
            }
            let id = u.id.unwrap_or_else(|| stable_id("user", &format!("{domain_id}/{}", u.name)));
            set.users.push(User { id, name: u.name, domain_id, password: u.password, roles });
        }
        Ok(set)
    }

    pub fn domain(&self, id: &str) -> Option<&IdentityDomain> {
        self.domains.iter().find(|d| d.id == id)
    }

    pub fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn project_by_name(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.name == name)
    }

    /// The roles a user holds on a project, with implied roles added, in Keystone's order.
    pub fn effective_roles(&self, user: &User, project_id: &str) -> Vec<String> {
        let Some(assigned) = user.roles.get(project_id) else { return Vec::new() };
        let strongest = assigned.iter().filter_map(|r| ROLE_CHAIN.iter().position(|c| c == r)).min();
        let mut roles: Vec<String> = match strongest {
            Some(i) => ROLE_CHAIN[i..].iter().map(|r| r.to_string()).collect(),
            None => Vec::new(),
        };
        if assigned.iter().any(|r| r == SERVICE_ROLE) {
            roles.push(SERVICE_ROLE.to_owned());
        }
        roles
    }

    /// A one-line-per-user summary without secrets, printed when mockstack starts.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for u in &self.users {
            let roles: Vec<String> = u
                .roles
                .iter()
                .map(|(pid, roles)| {
                    let pname = self.project(pid).map(|p| p.name.as_str()).unwrap_or(pid);
                    format!("{}@{pname}", roles.join("+"))
                })
                .collect();
            out.push_str(&format!("  {:<16} {}\n", u.name, roles.join(", ")));
        }
        out
    }
}

/// Turns a toml error into "line L, column C: message" so the location reads like file:line.
pub(crate) fn toml_error_with_line(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map(|l| l.chars().count() + 1).unwrap_or(1);
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

const BUILTIN: &str = r#"
[[projects]]
name = "admin"

[[projects]]
name = "alpha"

[[projects]]
name = "beta"

[[users]]
name = "admin"
password = "mockstack-admin"
[users.roles]
admin = ["admin"]

[[users]]
name = "alice"
password = "mockstack-alice"
[users.roles]
alpha = ["member"]

[[users]]
name = "alpha-reader"
password = "mockstack-alpha-reader"
[users.roles]
alpha = ["reader"]

[[users]]
name = "alpha-manager"
password = "mockstack-alpha-manager"
[users.roles]
alpha = ["manager"]

[[users]]
name = "bob"
password = "mockstack-bob"
[users.roles]
beta = ["member"]

[[users]]
name = "beta-reader"
password = "mockstack-beta-reader"
[users.roles]
beta = ["reader"]

[[users]]
name = "beta-manager"
password = "mockstack-beta-manager"
[users.roles]
beta = ["manager"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_an_admin_and_two_isolated_projects() {
        let set = IdentitySet::builtin();
        let admin = set.user_by_name("admin").unwrap();
        let admin_project = set.project_by_name("admin").unwrap();
        assert_eq!(set.effective_roles(admin, &admin_project.id), ["admin", "manager", "member", "reader"]);
        let alice = set.user_by_name("alice").unwrap();
        let alpha = set.project_by_name("alpha").unwrap();
        let beta = set.project_by_name("beta").unwrap();
        assert_eq!(set.effective_roles(alice, &alpha.id), ["member", "reader"]);
        assert!(set.effective_roles(alice, &beta.id).is_empty());
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err = IdentitySet::from_toml_str("[[users]]\nname = 1\n", "ids.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("ids.toml: line 2"), "{text}");
        let err = IdentitySet::from_toml_str(
            "[[users]]\nname='x'\npassword='y'\n[users.roles]\nnope=['member']\n",
            "ids.toml",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "ids.toml: user \"x\" has roles on unknown project \"nope\"");
        let err = IdentitySet::from_toml_str(
            "[[projects]]\nname='p'\n[[users]]\nname='x'\npassword='y'\n[users.roles]\np=['root']\n",
            "ids.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown role \"root\""));
    }

    #[test]
    fn tempest_style_accounts_are_expressible() {
        let mut text = String::new();
        for p in ["p1", "p2", "p3"] {
            text.push_str(&format!("[[projects]]\nname='{p}'\n"));
        }
        for p in ["p1", "p2", "p3"] {
            for role in ["member", "reader", "manager"] {
                text.push_str(&format!("[[users]]\nname='{p}-{role}'\npassword='pw'\n[users.roles]\n{p}=['{role}']\n"));
            }
        }
        text.push_str("[[users]]\nname='admin2'\npassword='pw'\n[users.roles]\np1=['admin']\n");
        let set = IdentitySet::from_toml_str(&text, "t").unwrap();
        assert_eq!(set.users.len(), 10);
        assert_eq!(set.projects.len(), 3);
    }
}
