//! Faults on demand: rules that make mockstack fail the way a user's cloud fails (an error in the service's own body, a
//! slow answer, a dropped connection, throttling), matched per request and applied by [`apply_faults`], a middleware
//! the router runs inside the request-context one (so that a faulted request is journaled like any other).
//!
//! The same model is read from a TOML file (`isoharness mock --faults FILE`) and from JSON (`PUT /mockstack/faults`).
//! Every value is checked while it is read (`try_from` types), so that a bad one is reported at its place in the
//! file: `FILE:LINE:COLUMN: message`.
//!
//! Determinism: each rule draws from its own RNG, seeded from the plan's seed and the rule's position, and draws
//! only for a request it is eligible for; the same seed and the same sequence of requests therefore fault the same
//! requests again. Rules are consulted in order and the first that fires is the only one applied (the later rules
//! neither count nor draw for that request).

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::ClockMode;
use crate::error::{ApiError, Service};
use crate::state::AppState;

/// A set of fault rules and the seed their probabilities draw from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// `None`: a seed is chosen at start and shown by `GET /mockstack/faults`, so that a run can be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// One rule: which requests it concerns, what it does to them, and how often.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RuleFields")]
pub struct FaultRule {
    /// A label for people; shown in the journal and by `GET /mockstack/faults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matcher: FaultMatch,
    pub action: FaultAction,
    #[serde(default)]
    pub when: FaultWhen,
}

/// A rule as written, before the checks that involve several of its fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFields {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "match", default)]
    matcher: FaultMatch,
    action: FaultAction,
    #[serde(default)]
    when: FaultWhen,
}

impl TryFrom<RuleFields> for FaultRule {
    type Error = String;
    fn try_from(f: RuleFields) -> Result<Self, String> {
        let m = &f.matcher;
        if f.action.is_lifecycle() && (m.service.is_some() || m.method.is_some() || m.path.is_some()) {
            return Err(format!(
                "an {} rule concerns an instance's build, not a request: match it by project and resource_name only",
                f.action.kind()
            ));
        }
        Ok(FaultRule { name: f.name, matcher: f.matcher, action: f.action, when: f.when })
    }
}

/// What a request must be for a rule to concern it; every field given must hold, an absent one holds always.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// A glob on the path below the service's prefix (`/v2/images/*/file`, `/v2.1/servers/**`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathGlob>,
    /// The id or the name of the project the request's token is scoped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The name of the resource concerned: the `name` in a create or update body (top level, as Glance's, or one
    /// level down, as Nova's `{"server": {"name": ...}}`), or the name of the image or server the path names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

/// The services a rule can match; mockstack's own `/mockstack` API is never faulted, so that faults can always be
/// inspected and cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    Identity,
    Image,
    Compute,
}

impl ServiceName {
    fn of(service: Service) -> ServiceName {
        match service {
            Service::Identity => ServiceName::Identity,
            Service::Image => ServiceName::Image,
            Service::Compute => ServiceName::Compute,
        }
    }
}

/// What a rule does to a request it fires for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answers with `status` and `message` in the service's own error body.
    HttpError {
        status: ErrorStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Holds the request for `seconds` of the mock's time, then answers it normally: wall time on a real clock,
    /// `seconds / factor` of wall time on a scaled one, and on a manual clock the clock is moved by `seconds` and the
    /// answer comes at once (a manual clock never waits).
    Delay { seconds: DelaySeconds },
    /// Closes the connection without an answer.
    DropConnection,
    /// A 429 or 503 with `Retry-After: retry_after`, in the service's own error body.
    Throttle { status: ThrottleStatus, retry_after: u32 },
    /// Not a request fault: an instance whose build reaches `step` goes to ERROR with a fault (code 500, `message`).
    /// Such a rule matches on `project` and `resource_name` (the server's name) only, when the build gets there.
    InstanceError {
        step: BuildStep,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Not a request fault: a snapshot (`createImage`) whose upload would finish never does; the server stays in
    /// `image_uploading` and the image in `saving`. Matched by `project` and `resource_name` (the snapshot's or the
    /// server's name) only.
    SnapshotStuck,
}

/// The build steps an `instance_error` can stop an instance at: with the task state it then has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStep {
    /// Block devices are being prepared (before the host builds the domain).
    BlockDeviceMapping,
    /// The domain was built and is spawning (before it runs).
    Spawning,
}

impl FaultAction {
    fn kind(&self) -> &'static str {
        match self {
            FaultAction::HttpError { .. } => "http_error",
            FaultAction::Delay { .. } => "delay",
            FaultAction::DropConnection => "drop_connection",
            FaultAction::Throttle { .. } => "throttle",
            FaultAction::InstanceError { .. } => "instance_error",
            FaultAction::SnapshotStuck => "snapshot_stuck",
        }
    }

    /// Whether the action happens to a resource's lifecycle rather than to a request.
    fn is_lifecycle(&self) -> bool {
        matches!(self, FaultAction::InstanceError { .. } | FaultAction::SnapshotStuck)
    }
}

/// Which of the requests a rule matches it fires for: the first `after` matches pass untouched, then (at most `first`
/// of them) each fires with `probability`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultWhen {
    #[serde(default)]
    pub probability: Probability,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    #[serde(default)]
    pub after: u64,
}

impl Default for FaultWhen {
    fn default() -> Self {
        FaultWhen { probability: Probability(1.0), first: None, after: 0 }
    }
}

impl FaultWhen {
    /// Whether the match numbered `index` (from 0) is in the window `after`/`first` describe.
    fn covers(&self, index: u64) -> bool {
        index >= self.after && self.first.is_none_or(|first| index - self.after < first)
    }
}

/// A probability from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Probability(pub f64);

impl Default for Probability {
    fn default() -> Self {
        Probability(1.0)
    }
}

impl TryFrom<f64> for Probability {
    type Error = String;
    fn try_from(p: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&p) {
            Ok(Probability(p))
        } else {
            Err(format!("probability must be from 0 to 1, got {p}"))
        }
    }
}

impl From<Probability> for f64 {
    fn from(p: Probability) -> f64 {
        p.0
    }
}

/// An error status an `http_error` answers with: 400 to 599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct ErrorStatus(pub StatusCode);

impl TryFrom<u16> for ErrorStatus {
    type Error = String;
    fn try_from(code: u16) -> Result<Self, String> {
        match StatusCode::from_u16(code) {
            Ok(status) if status.is_client_error() || status.is_server_error() => Ok(ErrorStatus(status)),
            _ => Err(format!("status must be an error status from 400 to 599, got {code}")),
        }
    }
}

impl From<ErrorStatus> for u16 {
    fn from(s: ErrorStatus) -> u16 {
        s.0.as_u16()
    }
}

/// The statuses a throttled service answers with: 429 (rate limited) or 503 (overloaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct ThrottleStatus(pub StatusCode);

impl TryFrom<u16> for ThrottleStatus {
    type Error = String;
    fn try_from(code: u16) -> Result<Self, String> {
        match code {
            429 => Ok(ThrottleStatus(StatusCode::TOO_MANY_REQUESTS)),
            503 => Ok(ThrottleStatus(StatusCode::SERVICE_UNAVAILABLE)),
            _ => Err(format!("a throttle's status is 429 or 503, got {code}")),
        }
    }
}

impl From<ThrottleStatus> for u16 {
    fn from(s: ThrottleStatus) -> u16 {
        s.0.as_u16()
    }
}

/// The most a delay may hold a request: past it a client has long given up, and a typo (`3600` for `3.6`) would hold
/// a connection for hours.
pub const MAX_DELAY_SECONDS: f64 = 600.0;

/// A delay's length in seconds, from 0 to [`MAX_DELAY_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct DelaySeconds(pub f64);

impl TryFrom<f64> for DelaySeconds {
    type Error = String;
    fn try_from(seconds: f64) -> Result<Self, String> {
        if (0.0..=MAX_DELAY_SECONDS).contains(&seconds) {
            Ok(DelaySeconds(seconds))
        } else {
            Err(format!("seconds must be from 0 to {MAX_DELAY_SECONDS}, got {seconds}"))
        }
    }
}

impl From<DelaySeconds> for f64 {
    fn from(s: DelaySeconds) -> f64 {
        s.0
    }
}

/// An HTTP method, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpMethod(String);

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

impl TryFrom<String> for HttpMethod {
    type Error = String;
    fn try_from(method: String) -> Result<Self, String> {
        let upper = method.to_ascii_uppercase();
        if METHODS.contains(&upper.as_str()) {
            Ok(HttpMethod(upper))
        } else {
            Err(format!("method must be one of {}, got {method:?}", METHODS.join(", ")))
        }
    }
}

impl From<HttpMethod> for String {
    fn from(m: HttpMethod) -> String {
        m.0
    }
}

/// A path glob: `*` stands for any characters within one segment, `**` for any characters across segments, every
/// other character for itself. It must match the whole service-relative path (the query string is not part of it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathGlob {
    text: String,
    regex: regex::Regex,
}

impl TryFrom<String> for PathGlob {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!(
                "path must start with '/' (it is the path below the service's prefix, e.g. /v2/images/*), got {text:?}"
            ));
        }
        let mut pattern = String::from("^");
        let mut rest = text.as_str();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("**") {
                pattern.push_str(".*");
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                pattern.push_str("[^/]*");
                rest = after;
            } else {
                let literal_end = rest.find('*').unwrap_or(rest.len());
                pattern.push_str(&regex::escape(&rest[..literal_end]));
                rest = &rest[literal_end..];
            }
        }
        pattern.push('$');
        let regex = regex::Regex::new(&pattern).map_err(|e| format!("path {text:?} cannot be matched: {e}"))?;
        Ok(PathGlob { text, regex })
    }
}

impl From<PathGlob> for String {
    fn from(glob: PathGlob) -> String {
        glob.text
    }
}

impl PathGlob {
    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }
}

/// A faults file that cannot be used, located as `FILE:LINE:COLUMN` when the fault is at a place in it.
#[derive(Debug, thiserror::Error)]
pub enum FaultsFileError {
    #[error("cannot read the faults file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}

impl FaultPlan {
    /// Reads a faults file (TOML).
    pub fn load(path: &std::path::Path) -> Result<FaultPlan, FaultsFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| FaultsFileError::Read { path: path.display().to_string(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses a faults file's text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<FaultPlan, FaultsFileError> {
        toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map(|l| l.chars().count() + 1).unwrap_or(1);
                    format!("{origin}:{line}:{column}")
                }
                None => origin.to_string(),
            };
            FaultsFileError::Invalid { location, message: e.message().trim_end().to_string() }
        })
    }
}

/// One rule as it runs: the rule, its counters and its RNG.
#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    /// Requests the rule's `match` held for (while no earlier rule fired).
    matched: u64,
    /// Requests the rule fired for.
    applied: u64,
    rng: StdRng,
}

#[derive(Debug)]
struct Active {
    seed: u64,
    rules: Vec<ActiveRule>,
}

impl Active {
    fn new(plan: &FaultPlan) -> Active {
        let seed = plan.seed.unwrap_or_else(rand::random);
        let rules = plan
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| ActiveRule {
                rule: rule.clone(),
                matched: 0,
                applied: 0,
                // One stream per rule, so that adding a rule leaves the draws of the others as they were.
                rng: StdRng::seed_from_u64(seed.wrapping_add(i as u64)),
            })
            .collect();
        Active { seed, rules }
    }
}

/// The fault rules a running mockstack applies.
#[derive(Debug)]
pub struct Faults {
    active: Mutex<Active>,
}

/// What a request is, as far as rules can match it.
#[derive(Debug, Default)]
pub struct RequestFacts<'a> {
    pub service: Option<Service>,
    pub method: &'a str,
    /// Below the service's prefix.
    pub path: &'a str,
    pub project_id: Option<&'a str>,
    pub project_name: Option<&'a str>,
    pub resource_names: Vec<String>,
}

/// A rule that fired: its position and what it does.
#[derive(Debug, Clone)]
pub struct Firing {
    pub rule: usize,
    pub label: String,
    pub action: FaultAction,
}

impl FaultMatch {
    fn holds(&self, facts: &RequestFacts) -> bool {
        let Some(service) = facts.service else { return false };
        self.service.is_none_or(|s| s == ServiceName::of(service))
            && self.method.as_ref().is_none_or(|m| m.0 == facts.method)
            && self.path.as_ref().is_none_or(|p| p.matches(facts.path))
            && self
                .project
                .as_ref()
                .is_none_or(|p| facts.project_id == Some(p.as_str()) || facts.project_name == Some(p.as_str()))
            && self.resource_name.as_ref().is_none_or(|n| facts.resource_names.iter().any(|r| r == n))
    }

    fn needs_project(&self) -> bool {
        self.project.is_some()
    }

    fn needs_resource_name(&self) -> bool {
        self.resource_name.is_some()
    }
}

impl Faults {
    pub fn new(plan: &FaultPlan) -> Faults {
        Faults { active: Mutex::new(Active::new(plan)) }
    }

    /// Replaces every rule (counters and draws start again); a plan without a seed keeps the current one.
    pub fn replace(&self, mut plan: FaultPlan) {
        let mut active = self.active.lock().unwrap();
        plan.seed = plan.seed.or(Some(active.seed));
        *active = Active::new(&plan);
    }

    pub fn clear(&self) {
        let mut active = self.active.lock().unwrap();
        active.rules.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.active.lock().unwrap().rules.is_empty()
    }

    /// Whether some rule matches on the project, or on a resource name (worth looking up only then).
    fn needs(&self) -> (bool, bool) {
        let active = self.active.lock().unwrap();
        let project = active.rules.iter().any(|r| r.rule.matcher.needs_project());
        let name = active.rules.iter().any(|r| r.rule.matcher.needs_resource_name());
        (project, name)
    }

    /// The first `instance_error` rule for `step` that fires for an instance of `project` named `name` reaching it.
    pub fn decide_build(&self, step: BuildStep, project_id: &str, project_name: &str, name: &str) -> Option<Firing> {
        let facts = RequestFacts {
            service: Some(Service::Compute),
            project_id: Some(project_id),
            project_name: Some(project_name),
            resource_names: vec![name.to_string()],
            ..RequestFacts::default()
        };
        self.first_firing(&facts, |action| matches!(action, FaultAction::InstanceError { step: s, .. } if *s == step))
    }

    /// The first `snapshot_stuck` rule that fires for a snapshot of `project` whose image or server has one of `names`.
    pub fn decide_snapshot(&self, project_id: &str, project_name: &str, names: Vec<String>) -> Option<Firing> {
        let facts = RequestFacts {
            service: Some(Service::Compute),
            project_id: Some(project_id),
            project_name: Some(project_name),
            resource_names: names,
            ..RequestFacts::default()
        };
        self.first_firing(&facts, |action| matches!(action, FaultAction::SnapshotStuck))
    }

    /// The first rule that fires for a request, counted and drawn for.
    pub fn decide(&self, facts: &RequestFacts) -> Option<Firing> {
        self.first_firing(facts, |action| !action.is_lifecycle())
    }

    fn first_firing(&self, facts: &RequestFacts, concerns: impl Fn(&FaultAction) -> bool) -> Option<Firing> {
        let mut active = self.active.lock().unwrap();
        for (index, rule) in active.rules.iter_mut().enumerate() {
            if !concerns(&rule.rule.action) {
                continue;
            }
            if !rule.rule.matcher.holds(facts) {
                continue;
            }
            let match_index = rule.matched;
            rule.matched += 1;
            if !rule.rule.when.covers(match_index) {
                continue;
            }
            let probability = rule.rule.when.probability.0;
            // Drawn for every eligible match, whatever the probability, so that the stream stays aligned.
            let draw: f64 = rule.rng.random();
            if draw >= probability {
                continue;
            }
            rule.applied += 1;
            let label = match &rule.rule.name {
                Some(name) => format!("rule {index} ({name}): {}", rule.rule.action.kind()),
                None => format!("rule {index}: {}", rule.rule.action.kind()),
            };
            return Some(Firing { rule: index, label, action: rule.rule.action.clone() });
        }
        None
    }

    /// The seed and every rule with its counters, as `GET /mockstack/faults` shows them.
    pub fn report(&self) -> Value {
        let active = self.active.lock().unwrap();
        let rules: Vec<Value> = active
            .rules
            .iter()
            .map(|r| {
                let mut rule = serde_json::to_value(&r.rule).unwrap_or(Value::Null);
                if let Some(object) = rule.as_object_mut() {
                    object.insert("matched".into(), json!(r.matched));
                    object.insert("applied".into(), json!(r.applied));
                }
                rule
            })
            .collect();
        json!({ "seed": active.seed, "rules": rules })
    }
}

/// Set on a response whose connection must be closed without it (a `drop_connection` fault); the server's
/// connection loop sees it and closes the connection instead of writing the response.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// Set on a response a fault made or held: the journal names the rule.
#[derive(Debug, Clone)]
pub struct AppliedFault(pub String);

/// The middleware: finds the first rule that fires for the request and applies it.
pub async fn apply_faults(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let faults = state.faults();
    let Some(service) = request.extensions().get::<Service>().copied() else {
        return next.run(request).await;
    };
    if faults.is_empty() {
        return next.run(request).await;
    }
    let (need_project, need_name) = faults.needs();
    let full_path = request.uri().path().to_string();
    let path = crate::server::service_relative_path(&full_path).to_string();
    let method = request.method().as_str().to_string();
    let token = if need_project {
        request
            .headers()
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| state.tokens().validate(t, state.clock().now()))
    } else {
        None
    };
    let scope = token.as_ref().and_then(|t| t.project.as_ref());
    let (request, resource_names) =
        if need_name { resource_names(&state, service, &path, request).await } else { (request, Vec::new()) };
    let facts = RequestFacts {
        service: Some(service),
        method: &method,
        path: &path,
        project_id: scope.map(|p| p.id.as_str()),
        project_name: scope.map(|p| p.name.as_str()),
        resource_names,
    };
    let Some(firing) = faults.decide(&facts) else {
        return next.run(request).await;
    };
    let mut response = match &firing.action {
        FaultAction::HttpError { status, message } => {
            let message = message.clone().unwrap_or_else(|| status.0.canonical_reason().unwrap_or("Error").to_string());
            ApiError::new(service, status.0, message).into_response()
        }
        FaultAction::Throttle { status, retry_after } => {
            let message = match status.0 {
                StatusCode::TOO_MANY_REQUESTS => "This request was rate-limited.",
                _ => "The service is unavailable right now; try again later.",
            };
            let mut response = ApiError::new(service, status.0, message).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            response
        }
        FaultAction::Delay { seconds } => {
            hold(&state, seconds.0).await;
            next.run(request).await
        }
        // `decide` never picks one; answered normally should that change.
        FaultAction::InstanceError { .. } | FaultAction::SnapshotStuck => next.run(request).await,
        FaultAction::DropConnection => {
            let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            response.extensions_mut().insert(DropConnection);
            response
        }
    };
    response.extensions_mut().insert(AppliedFault(firing.label));
    response
}

/// Waits `seconds` of the mock's time (see [`FaultAction::Delay`]).
async fn hold(state: &AppState, seconds: f64) {
    match state.clock().mode() {
        ClockMode::Real => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
        ClockMode::Scaled(factor) => tokio::time::sleep(Duration::from_secs_f64(seconds / factor)).await,
        ClockMode::Manual { .. } => {
            // Never past what the clock can represent: a delay is at most minutes, the headroom a century.
            let by = Duration::from_secs_f64(seconds).min(state.clock().headroom());
            state.clock().advance(by);
        }
    }
}

/// The names of the resources a request concerns: a `name` in its JSON body (top level, or in a top-level object
/// as Nova's `server`), and the name of the image or server its path names. The body is taken whole only when it is
/// already buffered (every body but image data, which streams).
async fn resource_names(state: &AppState, service: Service, path: &str, request: Request) -> (Request, Vec<String>) {
    let mut names = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    match (service, segments.as_slice()) {
        (Service::Image, ["", "v2", "images", id, ..]) => {
            if let Some(name) = state.glance().image(id).and_then(|image| image.name) {
                names.push(name);
            }
        }
        (Service::Compute, ["", "v2.1", "servers", id, ..]) => {
            if let Some(server) = state.nova().server(id) {
                names.push(server.name);
            }
        }
        _ => {}
    }
    let streamed = path.ends_with("/file") || path.ends_with("/stage");
    if streamed {
        return (request, names);
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, crate::server::MAX_GLANCE_JSON_BODY).await.unwrap_or_default();
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        let mut push = |v: &Value| {
            if let Some(name) = v.get("name").and_then(Value::as_str) {
                names.push(name.to_string());
            }
        };
        push(&value);
        if let Some(object) = value.as_object() {
            object.values().filter(|v| v.is_object()).for_each(&mut push);
        }
    }
    (Request::from_parts(parts, axum::body::Body::from(bytes)), names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> PathGlob {
        PathGlob::try_from(text.to_string()).unwrap()
    }

    #[test]
    fn a_star_stays_in_its_segment_and_two_cross_segments() {
        assert!(glob("/v2/images/*").matches("/v2/images/abc"));
        assert!(!glob("/v2/images/*").matches("/v2/images/abc/file"));
        assert!(glob("/v2/images/*/file").matches("/v2/images/abc/file"));
        assert!(glob("/v2.1/servers/**").matches("/v2.1/servers/x/action"));
        assert!(!glob("/v2.1/servers").matches("/v2.1/serversX"), "the whole path must match");
        assert!(!glob("/v2.1/servers").matches("/v2a1/servers"), "a dot is a dot");
        assert!(PathGlob::try_from("v2/images".to_string()).is_err());
    }

    #[test]
    fn the_window_counts_matches_from_after_for_first() {
        let when = FaultWhen { probability: Probability(1.0), first: Some(2), after: 1 };
        let covered: Vec<u64> = (0..5).filter(|i| when.covers(*i)).collect();
        assert_eq!(covered, [1, 2]);
        assert!(FaultWhen::default().covers(1_000_000));
    }

    #[test]
    fn a_bad_value_is_located_in_the_file() {
        let text = "seed = 1\n[[rules]]\naction = { http_error = { status = 200 } }\n";
        let error = FaultPlan::from_toml_str(text, "f.toml").unwrap_err().to_string();
        assert!(error.starts_with("f.toml:3:"), "{error}");
        assert!(error.contains("from 400 to 599"), "{error}");
    }
}
