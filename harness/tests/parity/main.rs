//! The parity suite: the same requests to mockstack and to real Keystone/Glance/Placement/Nova, compared call by call (one trial per call).
//!
//! The real cloud is the one `cargo xtask realstack up` runs; `cargo xtask test` exports
//! `ISOHARNESS_REALSTACK_CLOUDS` (its clouds.yaml, cloud `realstack`). Without that variable
//! the per-call trials are listed as ignored, with the reason printed, and only the
//! comparator's own checks run. mockstack runs in-process with the `stock` layout (the real
//! cloud runs stock Nova) and a manual clock. Differences that cannot be fixed in mockstack are
//! listed with their reasons in `allow.toml` beside this file, and printed.

mod script;
mod shape;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;
use serde_json::json;

use script::{Call, Session, Waiting};
use shape::{Body, Comparison, Difference, Recorded, compare};

const ENV: &str = "ISOHARNESS_REALSTACK_CLOUDS";

#[derive(Debug, Deserialize)]
struct AllowList {
    #[serde(default)]
    allow: Vec<Allowed>,
}

/// A difference that stays, and why.
#[derive(Debug, Clone, Deserialize)]
struct Allowed {
    /// The call's trial name, or `*` for every call.
    call: String,
    /// A field path, or a prefix of one ending in `*`.
    field: String,
    /// When given, only this value on mockstack's side (as the suite prints it).
    mock: Option<String>,
    /// When given, only this value on the real side.
    real: Option<String>,
    reason: String,
}

impl Allowed {
    fn covers(&self, call: &str, difference: &Difference) -> bool {
        let call_ok = self.call == "*" || self.call == call;
        let field_ok = match self.field.strip_suffix('*') {
            Some(prefix) => difference.field.starts_with(prefix),
            None => difference.field == self.field,
        };
        let values_ok = self.mock.as_ref().is_none_or(|m| *m == difference.mock)
            && self.real.as_ref().is_none_or(|r| *r == difference.real);
        call_ok && field_ok && values_ok
    }
}

fn allow_list() -> Result<Vec<Allowed>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/allow.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str::<AllowList>(&text).map(|l| l.allow).map_err(|e| format!("{}: {e}", path.display()))
}

/// The installer ISO both clouds boot: what `isoharness media` writes for a small Linux guest.
fn installer_iso(dir: &Path) -> Result<Vec<u8>, String> {
    let facts = "name = \"Parity Linux\"\nfamily = \"linux\"\nrelease = \"1\"\ndistro = \"ubuntu\"\narch = \"x86_64\"\n\
                 virtio_storage = \"built-in\"\nfirmware = \"bios\"\nmin_ram_mb = 512\nmin_disk_gb = 1\n\
                 install_seconds = 60\nboot_seconds = 20\n";
    let guest: guestsim::guest::GuestFacts = toml::from_str(facts).map_err(|e| e.to_string())?;
    let path = dir.join("parity-linux.iso");
    guestsim::media::os_iso::os_installer_iso_to_file(&guest, &Default::default(), &path).map_err(|e| e.to_string())?;
    std::fs::read(&path).map_err(|e| e.to_string())
}

async fn run_mock(iso: &[u8]) -> Result<(Vec<Call>, script::Endpoints), (Vec<Call>, String)> {
    let embedded = harness::target::Embedded::start(guestsim::Layout::Stock, "virtio-win")
        .await
        .map_err(|e| (Vec::new(), format!("cannot start mockstack: {e:#}")))?;
    let state = embedded.mock.state();
    let admin = state.identities().user_by_name("admin").ok_or((Vec::new(), "mockstack has no admin".to_string()))?;
    let mut session = Session::new(
        "mockstack",
        &embedded.mock.auth_url(),
        &admin.name,
        &admin.password,
        "admin",
        Waiting::Virtual(state.clock().clone()),
    );
    let result = script::run(&mut session, iso).await;
    let _ = embedded.mock.shutdown().await;
    match result {
        Ok(()) => Ok((session.calls, session.endpoints)),
        Err(e) => Err((session.calls, e)),
    }
}

/// The admin credentials of cloud `realstack` in the clouds.yaml at `path`.
fn real_credentials(path: &Path) -> Result<(String, String, String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let auth = &doc["clouds"]["realstack"]["auth"];
    let field = |key: &str| {
        auth[key]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("{}: no clouds.realstack.auth.{key}", path.display()))
    };
    Ok((field("auth_url")?, field("username")?, field("password")?, field("project_name")?))
}

async fn run_real(path: &Path, iso: &[u8]) -> (Vec<Call>, script::Endpoints, Option<String>) {
    let (auth_url, user, password, project) = match real_credentials(path) {
        Ok(c) => c,
        Err(e) => return (Vec::new(), script::Endpoints::default(), Some(e)),
    };
    let mut session = Session::new("realstack", &auth_url, &user, &password, &project, Waiting::Real);
    let result = script::run(&mut session, iso).await;
    (session.calls, session.endpoints, result.err())
}

/// The comparator's own checks: they run with or without a real cloud.
fn comparator_trials() -> Vec<Trial> {
    fn recorded(status: u16, body: serde_json::Value) -> Recorded {
        let headers = BTreeMap::from([
            ("content-type".to_string(), "application/json; charset=UTF-8".to_string()),
            ("x-openstack-request-id".to_string(), "req-2f6b1c8e-8d4e-4f7a-9a51-0c2a7d1e9b11".to_string()),
        ]);
        Recorded { status, headers, body: Body::Json(body) }
    }
    let same = |u: &str| u.to_string();
    let cases: Vec<(&str, Recorded, Recorded, Vec<&str>)> = vec![
        (
            "ids, times and URLs are normalised",
            recorded(
                200,
                json!({"server": {"id": "a", "updated": "2026-01-01T00:00:00Z", "links": [{"href": "http://x/1", "rel": "self"}]}}),
            ),
            recorded(
                200,
                json!({"server": {"id": "b", "updated": "2020-01-01T00:00:00Z", "links": [{"href": "http://y/2", "rel": "self"}]}}),
            ),
            vec![],
        ),
        (
            "status codes, enums, nullability and missing keys differ",
            recorded(
                200,
                json!({"server": {"status": "ACTIVE", "OS-EXT-STS:task_state": null, "locked": false, "extra": 1}}),
            ),
            recorded(202, json!({"server": {"status": "SHUTOFF", "OS-EXT-STS:task_state": "x", "locked": true}})),
            vec![
                "status",
                "body.server.OS-EXT-STS:task_state",
                "body.server.extra",
                "body.server.locked",
                "body.server.status",
            ],
        ),
        (
            "elements with the same name compare by value",
            recorded(200, json!({"flavors": [{"name": "m1.tiny", "disk": 1}, {"name": "f", "disk": 1, "ram": 512}]})),
            recorded(200, json!({"flavors": [{"name": "f", "disk": 2, "ram": 512}]})),
            vec!["body.flavors[].disk"],
        ),
        (
            "value types and array element shapes differ",
            recorded(200, json!({"images": [{"size": 1, "tags": []}], "n": 1})),
            recorded(200, json!({"images": [{"size": "1", "tags": ["a"]}, {"size": 2}], "n": 1.5})),
            vec!["body.images[].size", "body.images[].tags[]", "body.n"],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, mock, real, expected)| {
            Trial::test(format!("comparator: {name}"), move || {
                let mut found: Vec<String> =
                    compare(&mock, &real, &same).differences.into_iter().map(|d| d.field).collect();
                found.sort();
                let mut expected = expected.clone();
                expected.sort();
                if found == expected {
                    Ok(())
                } else {
                    Err(format!("expected differences {expected:?}, found {found:?}").into())
                }
            })
        })
        .chain(std::iter::once(Trial::test("comparator: headers are compared by form", || {
            let mut mock = recorded(201, json!({}));
            let mut real = recorded(201, json!({}));
            mock.headers
                .insert("location".into(), "http://m/compute/v2.1/servers/1f0e6a52-9d0b-4a8e-8a63-1c9a1f3b7d10".into());
            real.headers.insert("location".into(), "http://r/v2.1/servers/7a7d9e2b-2c4b-4b89-9d1e-5b0f8a6c4e21".into());
            real.headers.insert("x-openstack-request-id".into(), "42".into());
            real.headers.insert("openstack-api-version".into(), "compute 2.100".into());
            let normalise = |u: &str| {
                let u = u.replace("http://m/compute", "{compute}").replace("http://r", "{compute}");
                regex::Regex::new("[0-9a-f-]{36}").expect("regex").replace_all(&u, "{uuid}").into_owned()
            };
            let found: Vec<String> =
                compare(&mock, &real, &normalise).differences.into_iter().map(|d| d.field).collect();
            let expected = ["header.openstack-api-version", "header.x-openstack-request-id"];
            if found == expected { Ok(()) } else { Err(format!("expected {expected:?}, found {found:?}").into()) }
        })))
        .collect()
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut trials = comparator_trials();
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let iso = match installer_iso(scratch.path()) {
        Ok(iso) => iso,
        Err(e) => {
            trials.push(Trial::test("parity: the installer ISO", move || Err(Failed::from(e.clone()))));
            return libtest_mimic::run(&args, trials).exit_code();
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let started = std::time::Instant::now();
    let (mock_calls, mock_endpoints, mock_error) = match runtime.block_on(run_mock(&iso)) {
        Ok((calls, endpoints)) => (calls, endpoints, None),
        Err((calls, e)) => (calls, script::Endpoints::default(), Some(e)),
    };
    let mock_seconds = started.elapsed().as_secs_f64();
    trials.push(Trial::test("parity: mockstack answers the whole sequence", {
        let error = mock_error.clone();
        move || error.clone().map_or(Ok(()), |e| Err(e.into()))
    }));

    let Some(clouds) = std::env::var_os(ENV).map(PathBuf::from) else {
        println!(
            "parity: {ENV} is not set, so the {} per-call trials are ignored: bring the local real cloud up \
             (`cargo xtask realstack up`) and point {ENV} at its clouds.yaml, or run `cargo xtask test`",
            mock_calls.len()
        );
        for call in &mock_calls {
            trials.push(
                Trial::test(call.name.clone(), || Ok(())).with_kind(format!("needs {ENV}")).with_ignored_flag(true),
            );
        }
        return libtest_mimic::run(&args, trials).exit_code();
    };

    let started = std::time::Instant::now();
    let (real_calls, real_endpoints, real_error) = runtime.block_on(run_real(&clouds, &iso));
    println!(
        "parity: mockstack ran the sequence in {mock_seconds:.1} s, the real cloud in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let allowed = match allow_list() {
        Ok(list) => list,
        Err(e) => {
            trials.push(Trial::test("parity: the allow-list parses", move || Err(e.clone().into())));
            Vec::new()
        }
    };
    let real_by_name: BTreeMap<&str, &Recorded> = real_calls.iter().map(|c| (c.name.as_str(), &c.response)).collect();
    let (mut fields, mut differing, mut tolerated) = (0usize, 0usize, 0usize);
    let mut used = vec![false; allowed.len()];
    for call in &mock_calls {
        let Some(real) = real_by_name.get(call.name.as_str()) else {
            let why = format!(
                "the real cloud never got this call: {}",
                real_error.clone().unwrap_or_else(|| "the sequence took another path there".into())
            );
            trials.push(Trial::test(call.name.clone(), move || Err(why.clone().into())));
            continue;
        };
        let normalise = |url: &str| script::normalise_url(url, &[&mock_endpoints, &real_endpoints]);
        let Comparison { fields: n, differences } = compare(&call.response, real, &normalise);
        fields += n;
        let mut failing = Vec::new();
        for d in differences {
            match allowed.iter().position(|a| a.covers(&call.name, &d)) {
                Some(i) => {
                    used[i] = true;
                    tolerated += 1;
                    println!(
                        "parity: allowed by allow.toml entry {}: {} {}: mock {} / real {}",
                        i + 1,
                        call.name,
                        d.field,
                        d.mock,
                        d.real
                    );
                }
                None => failing.push(d),
            }
        }
        differing += failing.len();
        let report: Vec<String> =
            failing.iter().map(|d| format!("{}: mockstack {} / real {}", d.field, d.mock, d.real)).collect();
        trials.push(Trial::test(call.name.clone(), move || {
            if report.is_empty() { Ok(()) } else { Err(report.join("\n").into()) }
        }));
    }
    if let Some(e) = real_error.clone() {
        trials.push(Trial::test("parity: the real cloud answers the whole sequence", move || Err(e.clone().into())));
    }
    for (n, (entry, used)) in allowed.iter().zip(&used).enumerate() {
        let state = if *used { "used" } else { "never needed" };
        println!("parity: allow.toml entry {} ({state}): {} / {}: {}", n + 1, entry.call, entry.field, entry.reason);
    }
    println!(
        "parity: compared {} calls and {fields} fields: {differing} differences, {tolerated} allowed by allow.toml",
        mock_calls.len()
    );
    libtest_mimic::run(&args, trials).exit_code()
}
