//! The cloud client against a real (in-process) mockstack: configuration from OS_* variables, Keystone password
//! auth with catalog, endpoint selection, wrong credentials, and token revocation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harness::cloud::config::{ConfigEnv, ConfigRequest, resolve};
use harness::cloud::{ClientOptions, Cloud, CloudConfig, CloudError};

fn env_config(auth_url: &str, user: &str, password: &str, project: &str) -> CloudConfig {
    let vars: BTreeMap<String, String> = [
        ("OS_AUTH_URL", auth_url),
        ("OS_USERNAME", user),
        ("OS_PASSWORD", password),
        ("OS_PROJECT_NAME", project),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_IDENTITY_API_VERSION", "3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let env = ConfigEnv { vars, current_dir: PathBuf::from("/nonexistent"), home_dir: None };
    let no_files = |_: &Path| None;
    resolve(&ConfigRequest::default(), &env, &no_files).unwrap_or_else(|e| panic!("config: {e}"))
}

#[tokio::test]
async fn keystone_auth_catalog_and_revoke_against_mockstack() -> Result<(), Box<dyn std::error::Error>> {
    let mock = mockstack::MockStack::start(mockstack::Config::default(), "127.0.0.1:0".parse()?).await?;
    let config = env_config(&mock.auth_url(), "alice", "mockstack-alice", "alpha");
    let cloud = Cloud::connect(config, ClientOptions::default()).await?;

    let token = cloud.token().await?;
    assert_eq!(token.project_name.as_deref(), Some("alpha"));
    let state = mock.state();
    let info = state.tokens().validate(token.value.expose(), state.clock().now());
    assert_eq!(info.map(|i| i.user_name), Some("alice".to_string()), "mockstack knows the token");

    let image = cloud.endpoint("image").await?;
    let compute = cloud.endpoint("compute").await?;
    assert!(image.starts_with(mock.url()) && image.contains("/image"), "{image}");
    assert!(compute.starts_with(mock.url()) && compute.contains("/compute"), "{compute}");

    cloud.revoke_token().await?;
    assert!(state.tokens().validate(token.value.expose(), state.clock().now()).is_none(), "the token was revoked");

    let records = cloud.call_log().records();
    let calls: Vec<(String, Option<u16>)> = records.iter().map(|r| (r.method.clone(), r.status)).collect();
    assert_eq!(calls, [("POST".to_string(), Some(201)), ("DELETE".to_string(), Some(204))]);
    assert!(records.iter().all(|r| r.request_id.as_deref().is_some_and(|id| id.starts_with("req-"))));
    mock.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn wrong_password_against_mockstack_is_unauthorized() -> Result<(), Box<dyn std::error::Error>> {
    let mock = mockstack::MockStack::start(mockstack::Config::default(), "127.0.0.1:0".parse()?).await?;
    let config = env_config(&mock.auth_url(), "alice", "not-her-password", "alpha");
    match Cloud::connect(config, ClientOptions::default()).await {
        Err(e @ CloudError::Unauthorized(_)) => {
            assert!(e.request_id().is_some(), "{e}");
            assert!(!e.to_string().contains("not-her-password"), "{e}");
        }
        Err(e) => panic!("expected Unauthorized, got {e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    mock.shutdown().await?;
    Ok(())
}
