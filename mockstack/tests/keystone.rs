//! Keystone v3 token API over HTTP against an in-process mockstack: who may check, validate and revoke whose token
//! (Keystone's default policy), and how long a token got with a token lives.

use mockstack::identity::IdentitySet;
use mockstack::{ClockMode, Config, MockStack};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The built-in identities plus a service user, as every real cloud has (`service` role in the `service` project).
const IDENTITIES: &str = r#"
[[projects]]
name = "admin"
[[projects]]
name = "alpha"
[[projects]]
name = "beta"
[[projects]]
name = "service"

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
name = "bob"
password = "mockstack-bob"
[users.roles]
beta = ["member"]

[[users]]
name = "nova"
password = "mockstack-nova"
[users.roles]
service = ["service"]
"#;

fn project_of(user: &str) -> &'static str {
    match user {
        "admin" => "admin",
        "alice" => "alpha",
        "bob" => "beta",
        "nova" => "service",
        other => panic!("no project for {other}"),
    }
}

async fn start() -> MockStack {
    let identities = IdentitySet::from_toml_str(IDENTITIES, "test identities").expect("valid identities");
    let config =
        Config { identities, clock: ClockMode::Manual { tick: std::time::Duration::ZERO }, ..Config::default() };
    MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn password_token(mock: &MockStack, user: &str) -> (String, Value) {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": format!("mockstack-{user}")}}},
        "scope": {"project": {"name": project_of(user), "domain": {"id": "default"}}}
    }});
    issue(mock, &body).await
}

async fn issue(mock: &MockStack, body: &Value) -> (String, Value) {
    let r = reqwest::Client::new().post(mock.auth_url() + "/auth/tokens").json(body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
    (token, r.json().await.unwrap())
}

/// `method` on /v3/auth/tokens as `caller` about `subject`: the status and the body (empty for HEAD and 204).
async fn on_token(mock: &MockStack, method: Method, caller: &str, subject: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .request(method, mock.auth_url() + "/auth/tokens")
        .header("x-auth-token", caller)
        .header("x-subject-token", subject)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn only_a_tokens_own_user_an_admin_or_a_service_may_look_at_it_and_only_its_user_or_an_admin_revoke_it() {
    let mock = start().await;
    let (alice, _) = password_token(&mock, "alice").await;
    let (alice_again, _) = password_token(&mock, "alice").await;
    let (bob, _) = password_token(&mock, "bob").await;
    let (admin, _) = password_token(&mock, "admin").await;
    let (nova, _) = password_token(&mock, "nova").await;

    // (method, caller, expected status), all about alice's token: Keystone 30's identity:check_token,
    // identity:validate_token and identity:revoke_token defaults.
    let table: &[(Method, &str, &str, StatusCode)] = &[
        (Method::GET, "bob", &bob, StatusCode::FORBIDDEN),
        (Method::HEAD, "bob", &bob, StatusCode::FORBIDDEN),
        (Method::DELETE, "bob", &bob, StatusCode::FORBIDDEN),
        (Method::GET, "alice (another token)", &alice_again, StatusCode::OK),
        (Method::HEAD, "alice (another token)", &alice_again, StatusCode::OK),
        (Method::GET, "admin", &admin, StatusCode::OK),
        (Method::HEAD, "admin", &admin, StatusCode::OK),
        (Method::GET, "service", &nova, StatusCode::OK),
        (Method::HEAD, "service", &nova, StatusCode::FORBIDDEN),
        (Method::DELETE, "service", &nova, StatusCode::FORBIDDEN),
    ];
    for (method, who, caller, expected) in table {
        let (status, body) = on_token(&mock, method.clone(), caller, &alice).await;
        assert_eq!(status, *expected, "{method} by {who}: {body}");
        if status == StatusCode::FORBIDDEN && *method != Method::HEAD {
            let action = match *method {
                Method::GET => "validate_token",
                Method::HEAD => "check_token",
                _ => "revoke_token",
            };
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                error["error"]["message"],
                format!("You are not authorized to perform the requested action: identity:{action}.")
            );
            assert!(!body.contains("alpha"), "a refusal shows nothing of the token: {body}");
        }
    }
    // Nobody's refusal touched the token; its own user's revocation ends it.
    assert_eq!(on_token(&mock, Method::GET, &alice, &alice).await.0, StatusCode::OK);
    assert_eq!(on_token(&mock, Method::DELETE, &alice_again, &alice).await.0, StatusCode::NO_CONTENT);
    assert_eq!(on_token(&mock, Method::GET, &admin, &alice).await.0, StatusCode::NOT_FOUND);
    // A token that does not exist is not found, whoever asks (Keystone reads it before its policy).
    assert_eq!(on_token(&mock, Method::GET, &bob, "gAAAAAnothing").await.0, StatusCode::NOT_FOUND);
    mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_got_with_a_token_expires_with_it() {
    let mock = start().await;
    let (first, first_body) = password_token(&mock, "alice").await;
    mock.state().clock().advance(std::time::Duration::from_secs(1800));
    let rescoped = json!({"auth": {
        "identity": {"methods": ["token"], "token": {"id": first}},
        "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}
    }});
    let (second, second_body) = issue(&mock, &rescoped).await;
    assert_eq!(second_body["token"]["expires_at"], first_body["token"]["expires_at"]);
    assert_eq!(second_body["token"]["methods"], json!(["token", "password"]));
    // And again from the second: never past the first one's expiry, however often renewed.
    mock.state().clock().advance(std::time::Duration::from_secs(1700));
    let again = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": second}}}});
    let (third, third_body) = issue(&mock, &again).await;
    assert_eq!(third_body["token"]["expires_at"], first_body["token"]["expires_at"]);
    mock.state().clock().advance(std::time::Duration::from_secs(101));
    assert_eq!(on_token(&mock, Method::GET, &third, &third).await.0, StatusCode::UNAUTHORIZED, "all three expired");
    mock.shutdown().await.unwrap();
}
