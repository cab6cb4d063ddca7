//! Cloud configuration the way openstacksdk and the `openstack` CLI read it: `clouds.yaml` + `secure.yaml` from the
//! standard search path, `--os-cloud`/`OS_CLOUD`, and `OS_*` environment variables, resolved into a [`CloudConfig`].
//!
//! [`resolve`] is pure: the environment and the file system come in as values ([`ConfigEnv`], [`ConfigFiles`]), so
//! every rule is testable without touching the real ones. [`load`] wires in the process environment and disk.
//!
//! Semantics follow openstacksdk's `openstack/config/loader.py`:
//! - search path: `$OS_CLIENT_CONFIG_FILE`, then `clouds.{yaml,yml,json}` in the current directory,
//!   `$XDG_CONFIG_HOME/openstack`, `~/.config/openstack`, `/etc/openstack`; the first file found is the only one
//!   read. `secure.*` (or `$OS_CLIENT_SECURE_FILE`) is found the same way and merged over it, key by key.
//! - `OS_*` variables other than the selectors (`OS_CLOUD`, `OS_REGION_NAME`, `OS_CLIENT_CONFIG_FILE`,
//!   `OS_CLIENT_SECURE_FILE`, `OS_CLOUD_NAME`) form a cloud named `envvars` (or `$OS_CLOUD_NAME`), used when no cloud
//!   is named. When a cloud from a file is named, `OS_*` values override it, as the `openstack` CLI does (its options
//!   default to the environment).
//! - without a name: the environment cloud if there is one, else the only cloud of the file.
//! - like the `openstack` CLI, a user or project given by name without a domain falls back to
//!   `default_domain` / `OS_DEFAULT_DOMAIN`, itself defaulting to the domain id `default`.
//!
//! Unlike openstacksdk, a file that does not parse is an error (with line:column), not a warning and a skip: a
//! harness that silently ignores its configuration would talk to the wrong cloud.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::secret::Secret;

/// Environment variables that only select a cloud or a file; they alone do not make an environment cloud.
const SELECTOR_VARS: [&str; 5] =
    ["OS_CLOUD", "OS_REGION_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE", "OS_CLOUD_NAME"];

/// Everything needed to reach and authenticate against one cloud region.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudConfig {
    /// The cloud's name in clouds.yaml, or `envvars` (`$OS_CLOUD_NAME`) for the environment.
    pub name: String,
    /// Where the values came from, for messages.
    pub origin: ConfigOrigin,
    /// Keystone's URL as configured (versioned or not).
    pub auth_url: String,
    pub auth: AuthMethod,
    pub region_name: Option<String>,
    pub interface: Interface,
    pub tls: TlsVerify,
    /// `api_timeout`: per-request timeout, if the configuration sets one.
    pub api_timeout: Option<Duration>,
}

/// Where a [`CloudConfig`] was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    Environment,
    Files { clouds: Option<PathBuf>, secure: Option<PathBuf> },
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Environment => f.write_str("the OS_* environment variables"),
            ConfigOrigin::Files { clouds: Some(c), secure: Some(s) } => {
                write!(f, "{} (with {})", c.display(), s.display())
            }
            ConfigOrigin::Files { clouds: Some(p), secure: None }
            | ConfigOrigin::Files { clouds: None, secure: Some(p) } => {
                write!(f, "{}", p.display())
            }
            ConfigOrigin::Files { clouds: None, secure: None } => f.write_str("no configuration file"),
        }
    }
}

/// How to get a Keystone v3 token.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthMethod {
    /// `password` / `v3password`.
    Password { user: UserRef, password: Secret, scope: Scope },
    /// `v3applicationcredential`: the credential carries its own project scope.
    ApplicationCredential { credential: CredentialRef, secret: Secret },
    /// `token` / `v3token`: rescope an existing token.
    Token { token: Secret, scope: Scope },
}

impl AuthMethod {
    /// The `auth_type` name as clouds.yaml spells it.
    pub fn auth_type(&self) -> &'static str {
        match self {
            AuthMethod::Password { .. } => "password",
            AuthMethod::ApplicationCredential { .. } => "v3applicationcredential",
            AuthMethod::Token { .. } => "v3token",
        }
    }
}

/// A Keystone user, by id or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// A Keystone domain, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

/// A project, by id or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

/// What the token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Project(ProjectRef),
    Domain(DomainRef),
    System,
    Unscoped,
}

/// An application credential, by id or by name plus its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialRef {
    Id(String),
    Name { name: String, user: UserRef },
}

/// Which catalog endpoint to use. Parsing accepts `public`/`internal`/`admin` and the v2-era `publicURL` spellings,
/// in any case, as keystoneauth does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::IntoStaticStr, strum::EnumString)]
#[strum(ascii_case_insensitive)]
pub enum Interface {
    #[strum(to_string = "public", serialize = "publicurl")]
    Public,
    #[strum(to_string = "internal", serialize = "internalurl")]
    Internal,
    #[strum(to_string = "admin", serialize = "adminurl")]
    Admin,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Server certificate verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// The system's trust roots.
    System,
    /// Only the CA bundle at this path (`cacert` / `OS_CACERT`), as python-requests does.
    CaBundle(PathBuf),
    /// `verify: false` / `insecure: true` / `OS_INSECURE=true`.
    Insecure,
    /// No trust roots at all, for a cloud served over plain HTTP (an embedded mockstack): loading the system's
    /// certificates cost more than the requests of a whole build. An https endpoint fails verification.
    PlainHttp,
}

/// Bad or missing configuration. Each message names the file (or environment variable) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML/JSON, or a value has the wrong type.
    #[error("{}{}: {key}: {message}", path.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Parse { path: PathBuf, location: Option<(usize, usize)>, key: String, message: String },
    #[error("cloud {name:?} is not defined in {origin}{}", available_clouds(available))]
    CloudNotFound { name: String, origin: String, available: Vec<String> },
    #[error("no cloud configuration: set OS_CLOUD or pass --os-cloud with a clouds.yaml (searched {}), or set OS_AUTH_URL and the other OS_* variables", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NothingConfigured { searched: Vec<PathBuf> },
    #[error("{origin} defines several clouds{}; choose one with --os-cloud or OS_CLOUD", available_clouds(available))]
    NoCloudSelected { origin: String, available: Vec<String> },
    #[error("{origin}: {key} is missing: {hint}")]
    Missing { origin: String, key: String, hint: String },
    #[error("{origin}: {key} = {value:?}: {message}")]
    Invalid { origin: String, key: String, value: String, message: String },
}

fn available_clouds(names: &[String]) -> String {
    if names.is_empty() {
        " (it defines no clouds)".to_string()
    } else {
        format!(" (it defines: {})", names.join(", "))
    }
}

/// The `--os-cloud` / `--os-region-name` command-line values (each `None` when not given).
#[derive(Debug, Clone, Default)]
pub struct ConfigRequest {
    pub cloud: Option<String>,
    pub region_name: Option<String>,
}

/// The parts of the process environment that configuration depends on.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    pub vars: BTreeMap<String, String>,
    pub current_dir: PathBuf,
    pub home_dir: Option<PathBuf>,
}

impl ConfigEnv {
    /// The real process environment.
    pub fn from_process() -> ConfigEnv {
        ConfigEnv {
            vars: std::env::vars().collect(),
            current_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home_dir: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Reads configuration files: `Ok(None)` when the file does not exist.
pub trait ConfigFiles {
    fn read(&self, path: &Path) -> std::io::Result<Option<String>>;
}

/// The real file system.
pub struct DiskFiles;

impl ConfigFiles for DiskFiles {
    fn read(&self, path: &Path) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<F: Fn(&Path) -> Option<String>> ConfigFiles for F {
    fn read(&self, path: &Path) -> std::io::Result<Option<String>> {
        Ok(self(path))
    }
}

/// Resolves configuration from the process environment and the real disk.
pub fn load(request: &ConfigRequest) -> Result<CloudConfig, ConfigError> {
    resolve(request, &ConfigEnv::from_process(), &DiskFiles)
}

/// The directories searched for `clouds.yaml` and `secure.yaml`, in order.
pub fn search_dirs(env: &ConfigEnv) -> Vec<PathBuf> {
    let mut dirs = vec![env.current_dir.clone()];
    if let Some(xdg) = env.var("XDG_CONFIG_HOME") {
        dirs.push(Path::new(xdg).join("openstack"));
    }
    if let Some(home) = &env.home_dir {
        let unix = home.join(".config").join("openstack");
        if !dirs.contains(&unix) {
            dirs.push(unix);
        }
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    dirs
}

fn candidate_files(env: &ConfigEnv, stem: &str, override_var: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = env.var(override_var).map(PathBuf::from).into_iter().collect();
    for dir in search_dirs(env) {
        for suffix in ["yaml", "yml", "json"] {
            files.push(dir.join(format!("{stem}.{suffix}")));
        }
    }
    files
}

/// One `clouds:` entry as written in a file (or built from `OS_*`). Values are kept as strings; meaning is given in
/// [`resolve`], where errors can name their key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(expecting = "a mapping of cloud settings")]
struct RawCloud {
    #[serde(default)]
    auth: RawAuth,
    #[serde(default, alias = "auth-type", alias = "auth_plugin", deserialize_with = "scalar")]
    auth_type: Option<String>,
    #[serde(default, alias = "region-name", deserialize_with = "scalar")]
    region_name: Option<String>,
    #[serde(default)]
    regions: Option<Vec<RawRegion>>,
    #[serde(default, alias = "endpoint_type", alias = "endpoint-type", deserialize_with = "scalar")]
    interface: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    verify: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    insecure: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    cacert: Option<String>,
    #[serde(default, alias = "identity-api-version", deserialize_with = "scalar")]
    identity_api_version: Option<String>,
    #[serde(default, alias = "api-timeout", deserialize_with = "scalar")]
    api_timeout: Option<String>,
    #[serde(default, alias = "default-domain", deserialize_with = "scalar")]
    default_domain: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    profile: Option<String>,
}

/// A `regions:` item: a bare name or `{name: ..., values: {...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawRegion {
    Name(String),
    Detailed { name: String },
}

impl RawRegion {
    fn name(&self) -> &str {
        match self {
            RawRegion::Name(name) | RawRegion::Detailed { name } => name,
        }
    }
}

macro_rules! raw_auth {
    ($($field:ident $(, $alias:literal)*;)*) => {
        /// The `auth:` mapping of a cloud.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(expecting = "a mapping of auth settings")]
        struct RawAuth {
            $(
                #[serde(default, deserialize_with = "scalar" $(, alias = $alias)*)]
                $field: Option<String>,
            )*
        }

        impl RawAuth {
            /// `self`'s values, with `over`'s taking precedence: openstacksdk's `merge_clouds`.
            fn merged_with(&self, over: &RawAuth) -> RawAuth {
                RawAuth { $($field: over.$field.clone().or_else(|| self.$field.clone()),)* }
            }
        }
    };
}

raw_auth! {
    auth_url, "auth-url";
    username, "user-name", "user_name";
    user_id, "user-id";
    password;
    project_name, "project-name", "tenant_name", "tenant-name";
    project_id, "project-id", "tenant_id", "tenant-id";
    user_domain_name, "user-domain-name";
    user_domain_id, "user-domain-id";
    project_domain_name, "project-domain-name";
    project_domain_id, "project-domain-id";
    domain_name, "domain-name";
    domain_id, "domain-id";
    application_credential_id, "application-credential-id";
    application_credential_name, "application-credential-name";
    application_credential_secret, "application-credential-secret";
    token, "auth_token", "auth-token";
    system_scope, "system-scope";
}

impl RawCloud {
    fn merged_with(&self, over: &RawCloud) -> RawCloud {
        RawCloud {
            auth: self.auth.merged_with(&over.auth),
            auth_type: over.auth_type.clone().or_else(|| self.auth_type.clone()),
            region_name: over.region_name.clone().or_else(|| self.region_name.clone()),
            regions: over.regions.clone().or_else(|| self.regions.clone()),
            interface: over.interface.clone().or_else(|| self.interface.clone()),
            verify: over.verify.clone().or_else(|| self.verify.clone()),
            insecure: over.insecure.clone().or_else(|| self.insecure.clone()),
            cacert: over.cacert.clone().or_else(|| self.cacert.clone()),
            identity_api_version: over.identity_api_version.clone().or_else(|| self.identity_api_version.clone()),
            api_timeout: over.api_timeout.clone().or_else(|| self.api_timeout.clone()),
            default_domain: over.default_domain.clone().or_else(|| self.default_domain.clone()),
            profile: over.profile.clone().or_else(|| self.profile.clone()),
        }
    }

    /// The cloud the `OS_*` variables describe (`OS_AUTH_URL` → `auth.auth_url`, and so on).
    fn from_env(env: &ConfigEnv) -> RawCloud {
        let v = |name: &str| env.var(name).map(String::from);
        RawCloud {
            auth: RawAuth {
                auth_url: v("OS_AUTH_URL"),
                username: v("OS_USERNAME").or_else(|| v("OS_USER_NAME")),
                user_id: v("OS_USER_ID"),
                password: v("OS_PASSWORD"),
                project_name: v("OS_PROJECT_NAME").or_else(|| v("OS_TENANT_NAME")),
                project_id: v("OS_PROJECT_ID").or_else(|| v("OS_TENANT_ID")),
                user_domain_name: v("OS_USER_DOMAIN_NAME"),
                user_domain_id: v("OS_USER_DOMAIN_ID"),
                project_domain_name: v("OS_PROJECT_DOMAIN_NAME"),
                project_domain_id: v("OS_PROJECT_DOMAIN_ID"),
                domain_name: v("OS_DOMAIN_NAME"),
                domain_id: v("OS_DOMAIN_ID"),
                application_credential_id: v("OS_APPLICATION_CREDENTIAL_ID"),
                application_credential_name: v("OS_APPLICATION_CREDENTIAL_NAME"),
                application_credential_secret: v("OS_APPLICATION_CREDENTIAL_SECRET"),
                token: v("OS_TOKEN").or_else(|| v("OS_AUTH_TOKEN")),
                system_scope: v("OS_SYSTEM_SCOPE"),
            },
            auth_type: v("OS_AUTH_TYPE").or_else(|| v("OS_AUTH_PLUGIN")),
            region_name: v("OS_REGION_NAME"),
            regions: None,
            interface: v("OS_INTERFACE").or_else(|| v("OS_ENDPOINT_TYPE")),
            verify: v("OS_VERIFY"),
            insecure: v("OS_INSECURE"),
            cacert: v("OS_CACERT"),
            identity_api_version: v("OS_IDENTITY_API_VERSION"),
            api_timeout: v("OS_API_TIMEOUT"),
            default_domain: v("OS_DEFAULT_DOMAIN"),
            profile: None,
        }
    }
}

/// Accepts any YAML scalar (string, number, bool) as a string: `project_id: 1234` and `verify: false` are common.
fn scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        String(String),
        Bool(bool),
        Int(i64),
        Float(f64),
    }
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(|s| match s {
        Scalar::String(s) => s,
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    clouds: Option<BTreeMap<String, RawCloud>>,
}

struct LoadedFile {
    path: PathBuf,
    clouds: BTreeMap<String, RawCloud>,
}

/// A parse error's key path, line:column and message.
type ParseFailure = (String, Option<(usize, usize)>, String);

fn parse_file(path: &Path, text: &str) -> Result<LoadedFile, ConfigError> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let parsed: Result<Option<RawFile>, ParseFailure> = if is_json {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let inner = e.inner();
            let location = char_location(text, inner.line(), inner.column());
            (e.path().to_string(), Some(location), strip_location(&inner.to_string()))
        })
    } else if text.trim().is_empty() {
        Ok(None)
    } else {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let location = e.inner().location().map(|l| yaml_location_in_text(text, l.line(), l.column()));
            (e.path().to_string(), location, strip_location(&e.inner().to_string()))
        })
    };
    match parsed {
        Ok(file) => {
            Ok(LoadedFile { path: path.to_path_buf(), clouds: file.and_then(|f| f.clouds).unwrap_or_default() })
        }
        Err((key, location, message)) => Err(ConfigError::Parse {
            path: path.to_path_buf(),
            location,
            key: if key == "." || key.is_empty() { "(document)".into() } else { key },
            message,
        }),
    }
}

/// serde_json's 1-based line and byte column as a line and character column, as the YAML parser and every other
/// located error count them. A column past the end of its line (serde_json's at the end of the input) stays one past
/// the line's last character.
fn char_location(text: &str, line: usize, byte_column: usize) -> (usize, usize) {
    let Some(line_text) = text.split('\n').nth(line.saturating_sub(1)) else { return (line, byte_column) };
    let before = &line_text[..line_text.floor_char_boundary(byte_column.saturating_sub(1))];
    (line, before.chars().count() + 1)
}

/// The YAML parser's 1-based line and column as an editor shows them. YAML breaks lines at `\r`, NEL and the Unicode
/// line and paragraph separators too, where an editor shows one line, and puts the end of an input without a final
/// newline on the line after the last: the place is found by YAML's rules, then counted in `\n`-separated lines,
/// and kept inside the text.
fn yaml_location_in_text(text: &str, line: usize, column: usize) -> (usize, usize) {
    let (mut yaml_line, mut yaml_column) = (1, 1);
    let (mut text_line, mut text_column) = (1, 1);
    let mut chars = text.chars().peekable();
    while (yaml_line, yaml_column) < (line, column) {
        let Some(c) = chars.next() else { break };
        let yaml_break = match c {
            '\r' => chars.peek() != Some(&'\n'),
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => true,
            _ => false,
        };
        if yaml_break {
            (yaml_line, yaml_column) = (yaml_line + 1, 1);
        } else if c != '\r' {
            yaml_column += 1;
        }
        if c == '\n' {
            (text_line, text_column) = (text_line + 1, 1);
        } else {
            text_column += 1;
        }
    }
    (text_line, text_column)
}

/// Parsers repeat the path and position we already report separately.
fn strip_location(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    // serde_norway prefixes "path: " when it knows the path.
    match message.split_once(": ") {
        Some((head, tail)) if !head.contains(' ') && (head.contains('.') || head.contains('[')) => tail.to_string(),
        _ => message.to_string(),
    }
}

fn first_file(files: &dyn ConfigFiles, candidates: &[PathBuf]) -> Result<Option<LoadedFile>, ConfigError> {
    for path in candidates {
        match files.read(path) {
            Ok(Some(text)) => return parse_file(path, &text).map(Some),
            Ok(None) => continue,
            // openstacksdk skips files it may not read, and so do we.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
            Err(source) => return Err(ConfigError::Read { path: path.clone(), source }),
        }
    }
    Ok(None)
}

/// Names keys in messages: `clouds.NAME.auth.auth_url` for a file cloud, `OS_AUTH_URL` for the environment one.
struct KeyNamer<'a> {
    cloud: &'a str,
    from_env: bool,
}

impl KeyNamer<'_> {
    fn name(&self, key: &str) -> String {
        if self.from_env { env_var_for(key) } else { format!("clouds.{}.{key}", self.cloud) }
    }
}

fn env_var_for(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    format!("OS_{}", last.to_ascii_uppercase())
}

/// Turns a request, an environment and the files it points to into one cloud's configuration.
pub fn resolve(request: &ConfigRequest, env: &ConfigEnv, files: &dyn ConfigFiles) -> Result<CloudConfig, ConfigError> {
    let clouds_candidates = candidate_files(env, "clouds", "OS_CLIENT_CONFIG_FILE");
    let clouds_file = first_file(files, &clouds_candidates)?;
    let secure_file = first_file(files, &candidate_files(env, "secure", "OS_CLIENT_SECURE_FILE"))?;

    let env_cloud_name = env.var("OS_CLOUD_NAME").unwrap_or("envvars").to_string();
    let env_has_cloud = env.vars.iter().any(|(k, v)| {
        k.starts_with("OS_")
            && !v.is_empty()
            && !SELECTOR_VARS.contains(&k.as_str())
            && !["OS_TEST", "OS_STD", "OS_LOG"].iter().any(|p| k.starts_with(p))
    });

    let mut file_names: Vec<String> = clouds_file.iter().flat_map(|f| f.clouds.keys().cloned()).collect();
    for name in secure_file.iter().flat_map(|f| f.clouds.keys()) {
        if !file_names.contains(name) {
            file_names.push(name.clone());
        }
    }
    let files_origin = ConfigOrigin::Files {
        clouds: clouds_file.as_ref().map(|f| f.path.clone()),
        secure: secure_file.as_ref().map(|f| f.path.clone()),
    };

    let selected = request.cloud.clone().or_else(|| env.var("OS_CLOUD").map(String::from));
    let (name, raw, origin) = match selected {
        Some(name) if file_names.contains(&name) => {
            let from_clouds = clouds_file.as_ref().and_then(|f| f.clouds.get(&name)).cloned().unwrap_or_default();
            let from_secure = secure_file.as_ref().and_then(|f| f.clouds.get(&name)).cloned().unwrap_or_default();
            let merged = from_clouds.merged_with(&from_secure).merged_with(&RawCloud::from_env(env));
            (name, merged, files_origin)
        }
        Some(name) if env_has_cloud && name == env_cloud_name => {
            (name, RawCloud::from_env(env), ConfigOrigin::Environment)
        }
        Some(name) => {
            if clouds_file.is_none() && secure_file.is_none() {
                return Err(ConfigError::CloudNotFound {
                    name,
                    origin: format!("any clouds.yaml (searched {})", display_paths(&clouds_candidates)),
                    available: Vec::new(),
                });
            }
            return Err(ConfigError::CloudNotFound { name, origin: files_origin.to_string(), available: file_names });
        }
        None if env_has_cloud => (env_cloud_name, RawCloud::from_env(env), ConfigOrigin::Environment),
        None => match file_names.as_slice() {
            [only] => {
                let name = only.clone();
                let from_clouds = clouds_file.as_ref().and_then(|f| f.clouds.get(&name)).cloned().unwrap_or_default();
                let from_secure = secure_file.as_ref().and_then(|f| f.clouds.get(&name)).cloned().unwrap_or_default();
                (name, from_clouds.merged_with(&from_secure), files_origin)
            }
            [] => return Err(ConfigError::NothingConfigured { searched: clouds_candidates }),
            _ => return Err(ConfigError::NoCloudSelected { origin: files_origin.to_string(), available: file_names }),
        },
    };
    let region_override = request.region_name.clone().or_else(|| env.var("OS_REGION_NAME").map(String::from));
    interpret(&name, raw, origin, region_override)
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Gives the raw strings their meaning, with an error naming the key for anything missing or wrong.
fn interpret(
    name: &str,
    raw: RawCloud,
    origin: ConfigOrigin,
    region_override: Option<String>,
) -> Result<CloudConfig, ConfigError> {
    let keys = KeyNamer { cloud: name, from_env: origin == ConfigOrigin::Environment };
    let origin_text = origin.to_string();
    let missing = |key: &str, hint: &str| ConfigError::Missing {
        origin: origin_text.clone(),
        key: keys.name(key),
        hint: hint.to_string(),
    };
    let invalid = |key: &str, value: &str, message: &str| ConfigError::Invalid {
        origin: origin_text.clone(),
        key: keys.name(key),
        value: value.to_string(),
        message: message.to_string(),
    };

    if let Some(profile) = &raw.profile {
        return Err(invalid("profile", profile, "vendor profiles are not supported; write auth_url and region out"));
    }
    if let Some(version) = raw.identity_api_version.as_ref().filter(|v| *v != "3" && !v.starts_with("3.")) {
        return Err(invalid("identity_api_version", version, "only the Identity API v3 is supported"));
    }
    let auth = &raw.auth;
    let auth_url = auth
        .auth_url
        .clone()
        .ok_or_else(|| missing("auth.auth_url", "Keystone's URL, e.g. https://keystone.example.com:5000/v3"))?;
    if !(auth_url.starts_with("http://") || auth_url.starts_with("https://")) {
        return Err(invalid("auth.auth_url", &auth_url, "expected an http:// or https:// URL"));
    }
    if auth_url.trim_end_matches('/').ends_with("/v2.0") {
        return Err(invalid("auth.auth_url", &auth_url, "the Identity API v2.0 is not supported; use the v3 URL"));
    }

    let default_domain = DomainRef::Id(raw.default_domain.clone().unwrap_or_else(|| "default".into()));
    let domain_of = |id: &Option<String>, name: &Option<String>| -> Option<DomainRef> {
        id.clone()
            .map(DomainRef::Id)
            .or_else(|| name.clone().map(DomainRef::Name))
            .or_else(|| auth.domain_id.clone().map(DomainRef::Id))
            .or_else(|| auth.domain_name.clone().map(DomainRef::Name))
    };
    let user = || -> Option<UserRef> {
        if let Some(id) = &auth.user_id {
            return Some(UserRef::Id(id.clone()));
        }
        auth.username.as_ref().map(|name| UserRef::Name {
            name: name.clone(),
            domain: domain_of(&auth.user_domain_id, &auth.user_domain_name).unwrap_or_else(|| default_domain.clone()),
        })
    };
    let scope = || -> Scope {
        if let Some(id) = &auth.project_id {
            return Scope::Project(ProjectRef::Id(id.clone()));
        }
        if let Some(name) = &auth.project_name {
            let domain =
                domain_of(&auth.project_domain_id, &auth.project_domain_name).unwrap_or_else(|| default_domain.clone());
            return Scope::Project(ProjectRef::Name { name: name.clone(), domain });
        }
        if let Some(id) = &auth.domain_id {
            return Scope::Domain(DomainRef::Id(id.clone()));
        }
        if let Some(name) = &auth.domain_name {
            return Scope::Domain(DomainRef::Name(name.clone()));
        }
        if auth.system_scope.is_some() {
            return Scope::System;
        }
        Scope::Unscoped
    };

    let inferred_type = if auth.application_credential_secret.is_some() && auth.password.is_none() {
        "v3applicationcredential"
    } else if auth.token.is_some() && auth.password.is_none() {
        "v3token"
    } else {
        "password"
    };
    let auth_type = raw.auth_type.clone().unwrap_or_else(|| inferred_type.to_string());
    let method = match auth_type.as_str() {
        "password" | "v3password" => AuthMethod::Password {
            user: user().ok_or_else(|| missing("auth.username", "the user's name (or auth.user_id)"))?,
            password: auth
                .password
                .clone()
                .map(Secret::new)
                .ok_or_else(|| missing("auth.password", "the user's password"))?,
            scope: scope(),
        },
        "v3applicationcredential" | "applicationcredential" => {
            let secret = auth.application_credential_secret.clone().map(Secret::new).ok_or_else(|| {
                missing("auth.application_credential_secret", "the secret shown when the credential was created")
            })?;
            let credential = if let Some(id) = &auth.application_credential_id {
                CredentialRef::Id(id.clone())
            } else if let Some(cred_name) = &auth.application_credential_name {
                let user =
                    user().ok_or_else(|| missing("auth.username", "the credential's owner (or auth.user_id)"))?;
                CredentialRef::Name { name: cred_name.clone(), user }
            } else {
                return Err(missing("auth.application_credential_id", "the credential's id (or its name and owner)"));
            };
            AuthMethod::ApplicationCredential { credential, secret }
        }
        "token" | "v3token" => AuthMethod::Token {
            token: auth
                .token
                .clone()
                .map(Secret::new)
                .ok_or_else(|| missing("auth.token", "an existing Keystone token"))?,
            scope: scope(),
        },
        other => {
            return Err(invalid(
                "auth_type",
                other,
                "supported auth types are password, v3password, v3applicationcredential and v3token",
            ));
        }
    };

    let known_regions: Vec<String> = match &raw.regions {
        Some(regions) => regions.iter().map(|r| r.name().to_string()).collect(),
        None => raw
            .region_name
            .iter()
            .flat_map(|r| r.split(','))
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect(),
    };
    let region_name = match region_override.filter(|r| !r.is_empty()) {
        Some(region) if known_regions.is_empty() || known_regions.contains(&region) => Some(region),
        Some(region) => {
            let key = if raw.regions.is_some() { "regions" } else { "region_name" };
            return Err(invalid(
                key,
                &region,
                &format!("region {region:?} is not one of: {}", known_regions.join(", ")),
            ));
        }
        None => known_regions.first().cloned(),
    };

    let interface = match &raw.interface {
        Some(value) => {
            value.parse::<Interface>().map_err(|_| invalid("interface", value, "expected public, internal or admin"))?
        }
        None => Interface::Public,
    };

    let verify = match &raw.verify {
        Some(v) => parse_bool(v).ok_or_else(|| invalid("verify", v, "expected true or false"))?,
        None => true,
    };
    // openstacksdk's get_boolean: only "true" (any case) is true.
    let insecure = raw.insecure.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let tls = if !verify || insecure {
        TlsVerify::Insecure
    } else if let Some(cacert) = &raw.cacert {
        TlsVerify::CaBundle(PathBuf::from(cacert))
    } else {
        TlsVerify::System
    };

    let api_timeout = match &raw.api_timeout {
        Some(v) => {
            let seconds: f64 = v.parse().map_err(|_| invalid("api_timeout", v, "expected a number of seconds"))?;
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(invalid("api_timeout", v, "expected a positive number of seconds"));
            }
            Some(Duration::from_secs_f64(seconds))
        }
        None => None,
    };

    Ok(CloudConfig { name: name.to_string(), origin, auth_url, auth: method, region_name, interface, tls, api_timeout })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}
