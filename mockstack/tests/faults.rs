//! Faults on demand over real HTTP: each action as a client meets it (the service's own error body, `Retry-After`, a
//! connection closed without an answer, a held request), matching by project and resource name, the seeded
//! probability replaying, the `after`/`first` window, the admin-only API, and bad faults files located.

use std::time::{Duration, Instant};

use mockstack::faults::FaultPlan;
use mockstack::{ClockMode, Config, MockStack};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(config: Config) -> MockStack {
    MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

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

/// Replaces the mock's rules through the admin API, expecting success.
async fn put_faults(mock: &MockStack, admin: &str, plan: Value) -> Value {
    let (status, body) = admin_call(mock, admin, reqwest::Method::PUT, Some(plan)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn admin_call(
    mock: &MockStack,
    token: &str,
    method: reqwest::Method,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/mockstack/faults", mock.url()))
        .header("x-auth-token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// A call as a client makes it, on a fresh connection (so that a dropped one is never retried by the pool).
async fn call(
    mock: &MockStack,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", mock.url()))
        .header("x-auth-token", token)
        .header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await
}

async fn get_status(mock: &MockStack, token: &str, path: &str) -> u16 {
    call(mock, token, reqwest::Method::GET, path, None).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_http_error_comes_in_each_services_own_body_and_is_journaled() {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    let alice = token(&mock, "alice", "alpha").await;
    put_faults(
        &mock,
        &admin,
        json!({"seed": 1, "rules": [
            {"name": "nova down", "match": {"service": "compute", "method": "get", "path": "/v2.1/servers/**"},
             "action": {"http_error": {"status": 500, "message": "nova is down"}}},
            {"match": {"service": "image", "path": "/v2/images"},
             "action": {"http_error": {"status": 503, "message": "glance is down"}}},
            {"match": {"service": "identity", "path": "/v3/auth/tokens", "method": "POST"},
             "action": {"http_error": {"status": 401}}},
        ]}),
    )
    .await;

    let r = call(&mock, &alice, reqwest::Method::GET, "/compute/v2.1/servers/detail", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.headers().contains_key("x-compute-request-id"), "a faulted answer still has its request id");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"computeFault": {"code": 500, "message": "nova is down"}}));
    // The glob's `**` needs the segment separator: the list itself is not under it.
    assert_eq!(get_status(&mock, &alice, "/compute/v2.1/servers").await, 200);

    let r = call(&mock, &alice, reqwest::Method::GET, "/image/v2/images", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    // webob's JSON page, as Glance writes any error, line breaks included.
    assert_eq!(body["message"], "glance is down<br /><br />\n\n\n", "{body}");
    assert_eq!(body["code"], "503 Service Unavailable", "{body}");

    let r = reqwest::Client::new().post(mock.auth_url() + "/auth/tokens").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401, "{body}");
    assert_eq!(body["error"]["message"], "Unauthorized", "no message: the status's reason: {body}");

    let journal = mock.state().journal().entries();
    let faulted: Vec<_> = journal.iter().filter_map(|e| e.fault.as_deref()).collect();
    assert_eq!(faulted, ["rule 0 (nova down): http_error", "rule 1: http_error", "rule 2: http_error"]);
    let report = admin_call(&mock, &admin, reqwest::Method::GET, None).await.1;
    let applied: Vec<&Value> = report["rules"].as_array().unwrap().iter().map(|r| &r["applied"]).collect();
    assert_eq!(applied, [&json!(1), &json!(1), &json!(1)], "{report}");
    mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn throttling_answers_with_retry_after() {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    put_faults(
        &mock,
        &admin,
        json!({"rules": [{"match": {"service": "compute"}, "action": {"throttle": {"status": 429, "retry_after": 30}}},
                          {"match": {"service": "image"}, "action": {"throttle": {"status": 503, "retry_after": 5}}}]}),
    )
    .await;
    let r = call(&mock, &admin, reqwest::Method::GET, "/compute/v2.1/flavors", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "30");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["overLimit"]["code"], 429, "{body}");
    let r = call(&mock, &admin, reqwest::Method::GET, "/image/v2/images", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5", "webob's page keeps the header");
    mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_a_connection_error_and_the_next_request_is_served() {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    put_faults(
        &mock,
        &admin,
        json!({"rules": [{"match": {"path": "/v2.1/flavors"}, "action": "drop_connection", "when": {"first": 1}}]}),
    )
    .await;
    let error = call(&mock, &admin, reqwest::Method::GET, "/compute/v2.1/flavors", None).await.unwrap_err();
    assert!(!error.is_timeout() && error.status().is_none(), "closed without an answer: {error:?}");
    assert_eq!(get_status(&mock, &admin, "/compute/v2.1/flavors").await, 200, "only the first match is dropped");
    let journal = mock.state().journal().entries();
    assert!(journal.iter().any(|e| e.fault.as_deref() == Some("rule 0: drop_connection")), "{journal:?}");
    mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delay_holds_the_request_on_a_real_clock_and_moves_a_manual_one() {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    put_faults(
        &mock,
        &admin,
        json!({"rules": [{"match": {"path": "/v2.1/flavors"}, "action": {"delay": {"seconds": 0.4}}}]}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(get_status(&mock, &admin, "/compute/v2.1/flavors").await, 200, "a delay answers normally");
    assert!(started.elapsed() >= Duration::from_millis(400), "held for {:?}", started.elapsed());
    mock.shutdown().await.unwrap();

    let manual = Config { clock: ClockMode::Manual { tick: Duration::ZERO }, ..Config::default() };
    let mock = start(manual).await;
    let admin = token(&mock, "admin", "admin").await;
    put_faults(
        &mock,
        &admin,
        json!({"rules": [{"match": {"path": "/v2.1/flavors"}, "action": {"delay": {"seconds": 120}}}]}),
    )
    .await;
    let before = mock.state().clock().elapsed();
    let started = Instant::now();
    assert_eq!(get_status(&mock, &admin, "/compute/v2.1/flavors").await, 200);
    assert!(started.elapsed() < Duration::from_secs(60), "a manual clock never waits");
    assert_eq!(mock.state().clock().elapsed() - before, Duration::from_secs(120));
    mock.shutdown().await.unwrap();
}

/// The statuses of `count` flavor lists on a mock whose one rule fails half of them, with `seed`.
async fn coin_flips(seed: u64, count: usize) -> Vec<u16> {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    put_faults(
        &mock,
        &admin,
        json!({"seed": seed, "rules": [{"match": {"path": "/v2.1/flavors"},
            "action": {"http_error": {"status": 500}}, "when": {"probability": 0.5}}]}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(get_status(&mock, &admin, "/compute/v2.1/flavors").await);
    }
    mock.shutdown().await.unwrap();
    statuses
}

#[tokio::test]
async fn a_seeded_probability_replays_the_same_faults() {
    let first = coin_flips(7, 40).await;
    assert!(first.contains(&200) && first.contains(&500), "half of them fail: {first:?}");
    assert_eq!(coin_flips(7, 40).await, first, "the same seed faults the same requests");
    assert_ne!(coin_flips(8, 40).await, first, "another seed, other requests");
}

#[tokio::test]
async fn after_and_first_pick_a_window_of_matches() {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    put_faults(
        &mock,
        &admin,
        json!({"rules": [{"match": {"path": "/v2.1/flavors"}, "action": {"http_error": {"status": 502}},
                          "when": {"after": 2, "first": 3}}]}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get_status(&mock, &admin, "/compute/v2.1/flavors").await);
    }
    assert_eq!(statuses, [200, 200, 502, 502, 502, 200, 200, 200]);
    // Requests the rule does not match are not counted.
    assert_eq!(get_status(&mock, &admin, "/compute/v2.1/servers").await, 200);
    let report = admin_call(&mock, &admin, reqwest::Method::GET, None).await.1;
    assert_eq!(report["rules"][0]["matched"], 8, "{report}");
    assert_eq!(report["rules"][0]["applied"], 3, "{report}");
    assert_eq!(report["rules"][0]["when"], json!({"probability": 1.0, "first": 3, "after": 2}), "{report}");
    mock.shutdown().await.unwrap();
}

async fn create_image(mock: &MockStack, token: &str, name: &str) -> reqwest::Result<reqwest::Response> {
    call(mock, token, reqwest::Method::POST, "/image/v2/images", Some(json!({"name": name}))).await
}

#[tokio::test]
async fn rules_from_a_file_match_by_project_and_resource_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faults.toml");
    std::fs::write(
        &path,
        r#"
seed = 3

[[rules]]
name = "alpha's doomed images"
match = { service = "image", method = "POST", path = "/v2/images", project = "alpha", resource_name = "doomed" }
action = { http_error = { status = 418, message = "no images called doomed in alpha" } }
"#,
    )
    .unwrap();
    let config = Config { faults: FaultPlan::load(&path).unwrap(), ..Config::default() };
    let mock = start(config).await;
    let admin = token(&mock, "admin", "admin").await;
    let alice = token(&mock, "alice", "alpha").await;
    let r = create_image(&mock, &alice, "doomed").await.unwrap();
    assert_eq!(r.status().as_u16(), 418);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with("no images called doomed in alpha<br />"), "{body}");
    assert_eq!(create_image(&mock, &alice, "fine").await.unwrap().status(), StatusCode::CREATED, "another name");
    assert_eq!(create_image(&mock, &admin, "doomed").await.unwrap().status(), StatusCode::CREATED, "another project");
    let report = admin_call(&mock, &admin, reqwest::Method::GET, None).await.1;
    assert_eq!(report["seed"], 3);
    assert_eq!(report["rules"][0]["matched"], 1, "{report}");
    mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_the_admin_may_see_or_change_the_rules_and_bad_rules_are_refused() {
    let mock = start(Config::default()).await;
    let admin = token(&mock, "admin", "admin").await;
    let alice = token(&mock, "alice", "alpha").await;
    for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE] {
        let (status, _) = admin_call(&mock, &alice, method.clone(), Some(json!({"rules": []}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
    }
    let bad = [
        (json!({"rules": [{"action": {"http_error": {"status": 200}}}]}), "from 400 to 599"),
        (json!({"rules": [{"action": "explode"}]}), "unknown variant"),
        (json!({"rules": [{"action": "drop_connection", "when": {"probability": 1.5}}]}), "from 0 to 1"),
        (json!({"rules": [{"action": "drop_connection", "match": {"path": "v2/images"}}]}), "must start with '/'"),
        (json!({"rules": [{"action": "drop_connection", "match": {"service": "network"}}]}), "unknown variant"),
        (json!({"rules": [{"action": {"delay": {"seconds": 86400}}}]}), "seconds must be from 0 to 600"),
        (json!({"rules": [{"action": "drop_connection", "match": {"method": "FETCH"}}]}), "method must be one of"),
    ];
    for (plan, expected) in bad {
        let (status, body) = admin_call(&mock, &admin, reqwest::Method::PUT, Some(plan.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{plan}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{plan}: {message}");
    }
    put_faults(&mock, &admin, json!({"rules": [{"match": {"service": "compute"}, "action": "drop_connection"}]})).await;
    let (status, _) = admin_call(&mock, &admin, reqwest::Method::DELETE, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(get_status(&mock, &admin, "/compute/v2.1/flavors").await, 200, "cleared");
    let report = admin_call(&mock, &admin, reqwest::Method::GET, None).await.1;
    assert_eq!(report["rules"], json!([]));
    mock.shutdown().await.unwrap();
}

#[test]
fn a_bad_faults_file_is_located_at_the_bad_value() {
    let cases = [
        ("[[rules]]\naction = \"explode\"\n", "f.toml:2:10:", "unknown variant"),
        ("[[rules]]\naction = \"drop_connection\"\nwhen = { probability = -0.1 }\n", "f.toml:3:", "from 0 to 1"),
        ("[[rules]]\naction = \"drop_connection\"\nmatch = { path = \"images\" }\n", "f.toml:3:", "start with '/'"),
        ("[[rules]]\naction = \"drop_connection\"\nmatch = { colour = \"red\" }\n", "f.toml:3:", "unknown field"),
        ("[[rules]]\nmatch = { service = \"image\" }\n", "f.toml:1:", "missing field `action`"),
        ("seed = \"lucky\"\n", "f.toml:1:8:", "invalid type"),
        ("[[rules]\n", "f.toml:1:", ""),
    ];
    for (text, location, message) in cases {
        let error = FaultPlan::from_toml_str(text, "f.toml").unwrap_err().to_string();
        assert!(error.starts_with(location), "{text:?}: {error}");
        assert!(error.contains(message), "{text:?}: {error}");
    }
    let missing = FaultPlan::load(std::path::Path::new("/nonexistent/faults.toml")).unwrap_err().to_string();
    assert!(missing.contains("/nonexistent/faults.toml"), "{missing}");
}

async fn show_server(mock: &MockStack, token: &str, id: &str) -> Value {
    let path = format!("/compute/v2.1/servers/{id}");
    call(mock, token, reqwest::Method::GET, &path, None).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn instance_error_and_snapshot_stuck_rules_hold_back_the_named_resources() {
    let manual = Config { clock: ClockMode::Manual { tick: Duration::ZERO }, ..Config::default() };
    let mock = start(manual).await;
    let admin = token(&mock, "admin", "admin").await;
    let alice = token(&mock, "alice", "alpha").await;
    let (status, body) = admin_call(
        &mock,
        &admin,
        reqwest::Method::PUT,
        Some(json!({"rules": [{"match": {"path": "/v2.1/servers"}, "action": {"instance_error": {"step": "spawning"}}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a build is not a request: {body}");
    put_faults(
        &mock,
        &admin,
        json!({"rules": [{"match": {"project": "alpha", "resource_name": "doomed"},
            "action": {"instance_error": {"step": "block_device_mapping", "message": "No valid host was found."}}}]}),
    )
    .await;
    let body = json!({"name": "disk", "disk_format": "raw", "container_format": "bare"});
    let r = call(&mock, &alice, reqwest::Method::POST, "/image/v2/images", Some(body)).await.unwrap();
    let image = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let r = reqwest::Client::new()
        .put(format!("{}/image/v2/images/{image}/file", mock.url()))
        .header("x-auth-token", &alice)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut servers = Vec::new();
    for name in ["doomed", "fine"] {
        let body = json!({"server": {"name": name, "imageRef": image, "flavorRef": "1"}});
        let r = call(&mock, &alice, reqwest::Method::POST, "/compute/v2.1/servers", Some(body)).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{name}");
        servers.push(r.json::<Value>().await.unwrap()["server"]["id"].as_str().unwrap().to_string());
    }
    mock.state().clock().advance(Duration::from_secs(600));
    let doomed: Value = show_server(&mock, &alice, &servers[0]).await;
    assert_eq!(doomed["server"]["status"], "ERROR", "{doomed}");
    assert_eq!(doomed["server"]["fault"]["message"], "No valid host was found.", "{doomed}");
    assert_eq!(doomed["server"]["fault"]["code"], 500, "{doomed}");
    let fine: Value = show_server(&mock, &alice, &servers[1]).await;
    assert!(fine["server"].get("fault").is_none(), "another name builds: {fine}");
    assert_eq!(fine["server"]["status"], "ACTIVE", "{fine}");

    // A snapshot that never finishes: only the one named so.
    put_faults(&mock, &admin, json!({"rules": [{"match": {"resource_name": "stuck"}, "action": "snapshot_stuck"}]}))
        .await;
    for (name, task, image_status) in [("done", Value::Null, "active"), ("stuck", json!("image_uploading"), "saving")] {
        let path = format!("/compute/v2.1/servers/{}/action", servers[1]);
        let body = json!({"createImage": {"name": name}});
        let r = call(&mock, &alice, reqwest::Method::POST, &path, Some(body)).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{name}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let snapshot = location.rsplit('/').next().unwrap().to_string();
        mock.state().clock().advance(Duration::from_secs(900));
        let server = show_server(&mock, &alice, &servers[1]).await;
        assert_eq!(server["server"]["OS-EXT-STS:task_state"], task, "{name}: {server}");
        let image = mock.state().glance().image(&snapshot).unwrap();
        assert_eq!(image.status.to_string(), image_status, "{name}");
    }
    let report = admin_call(&mock, &admin, reqwest::Method::GET, None).await.1;
    assert_eq!(report["rules"][0]["applied"], 1, "the snapshot rule held one: {report}");
    mock.shutdown().await.unwrap();
}
