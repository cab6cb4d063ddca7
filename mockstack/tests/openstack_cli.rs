//! Acceptance: the real `openstack` CLI (python-openstackclient) drives mockstack unchanged.
//!
//! `cargo xtask test` installs the CLI into `.venv/` and points `ISOHARNESS_OPENSTACK_CLI` at it.

use std::path::PathBuf;
use std::process::{Command, Output};

use mockstack::{Config, MockStack};

fn openstack_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("ISOHARNESS_OPENSTACK_CLI") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/openstack");
    if venv.is_file() {
        return venv;
    }
    panic!(
        "the openstack CLI is not installed: run `cargo xtask test` (it installs python-openstackclient \
         into .venv/) or set ISOHARNESS_OPENSTACK_CLI"
    );
}

/// Runs `openstack ARGS` as `user` (password `mockstack-<user>`) on `project` against the mock.
fn openstack(mock: &MockStack, user: &str, password: &str, project: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(openstack_cli());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .env("OS_AUTH_URL", mock.auth_url())
        .env("OS_IDENTITY_API_VERSION", "3")
        .env("OS_USERNAME", user)
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", project)
        .env("OS_USER_DOMAIN_ID", "default")
        .env("OS_PROJECT_DOMAIN_ID", "default")
        .env("OS_REGION_NAME", "RegionOne")
        .env("OS_INTERFACE", "public");
    cmd.output().expect("the openstack CLI runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn start() -> MockStack {
    MockStack::start(Config::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issue_and_wrong_password() {
    let mock = start().await;
    let m = &mock;
    let ok = tokio::task::block_in_place(|| {
        openstack(m, "alice", "mockstack-alice", "alpha", &["token", "issue", "-f", "json"])
    });
    assert!(ok.status.success(), "token issue failed: {}", stderr(&ok));
    let token: serde_json::Value = serde_json::from_str(&stdout(&ok)).unwrap();
    let alpha = mock.state().identities().project_by_name("alpha").unwrap().id.clone();
    assert_eq!(token["project_id"], alpha.as_str());
    assert!(token["id"].as_str().unwrap().starts_with("gAAAAA"));
    assert!(token["expires"].as_str().is_some());

    let bad =
        tokio::task::block_in_place(|| openstack(m, "alice", "wrong", "alpha", &["token", "issue", "-f", "json"]));
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert!(err.contains("The request you have made requires authentication. (HTTP 401)"), "{err}");
}
