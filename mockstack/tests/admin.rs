//! The mock-only admin API: the virtual clock can be moved, never into a state the services cannot represent.

use mockstack::{ClockMode, Config, MockStack};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn token(mock: &MockStack, user: &str, project: &str) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": format!("mockstack-{user}")}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}
    }});
    let r = reqwest::Client::new().post(mock.auth_url() + "/auth/tokens").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.headers()["x-subject-token"].to_str().unwrap().to_owned()
}

async fn advance(mock: &MockStack, token: &str, body: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/mockstack/clock/advance", mock.url()))
        .header("x-auth-token", token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_clock_moves_only_as_far_as_the_services_can_count_and_bad_amounts_are_refused() {
    let config = Config { clock: ClockMode::Manual { tick: std::time::Duration::ZERO }, ..Config::default() };
    let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let admin = token(&mock, "admin", "admin").await;
    for bad in [r#"{"seconds": 1e20}"#, r#"{"seconds": 1.8e19}"#, r#"{"seconds": 3.2e9}"#, r#"{"seconds": -1}"#] {
        let (status, body) = advance(&mock, &admin, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("seconds must be a number from 0 to 3153600000"), "{bad}: {body}");
    }
    for malformed in [r#"{"seconds": "soon"}"#, r#"{"minutes": 1}"#, "not json"] {
        assert_eq!(advance(&mock, &admin, malformed).await.0, StatusCode::BAD_REQUEST, "{malformed}");
    }
    assert_eq!(mock.state().clock().elapsed(), std::time::Duration::ZERO, "nothing moved the clock");
    let (status, body) = advance(&mock, &admin, r#"{"seconds": 1800}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["elapsed_ms"], 1_800_000);
    // A valid move keeps the cloud working: the admin's token is still good for half an hour.
    let alice = token(&mock, "alice", "alpha").await;
    assert_eq!(advance(&mock, &alice, r#"{"seconds": 1}"#).await.0, StatusCode::FORBIDDEN, "admins only");
    let r = reqwest::Client::new()
        .get(format!("{}/mockstack/clock", mock.url()))
        .header("x-auth-token", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    mock.shutdown().await.unwrap();
}
