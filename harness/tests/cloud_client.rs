//! The cloud client against wiremock: re-authentication, retries, error mapping, timeouts, malformed bodies,
//! version discovery and microversion negotiation, streaming upload and download, typed calls' wire format.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::cloud::config::{
    AuthMethod, CloudConfig, ConfigOrigin, DomainRef, Interface, ProjectRef, Scope, TlsVerify, UserRef,
};
use harness::cloud::glance::{ImageQuery, NewImage, PatchOp};
use harness::cloud::nova::NewServer;
use harness::cloud::transfer::{CHUNK_SIZE, Progress};
use harness::cloud::{ClientOptions, Cloud, CloudError, HttpOptions, RetryPolicy, Secret, SessionOptions};
use md5::Digest;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN_A: &str = "gAAAAA-token-a";
const TOKEN_B: &str = "gAAAAA-token-b";
const PASSWORD: &str = "wiremock-password";

/// Keystone's token response (our own fixture, shaped like Keystone 30's), with a catalog pointing at `base`.
fn token_body(base: &str, expires_at: &str, services: &[&str]) -> Value {
    let entry = |kind: &str, url: String| {
        json!({
            "type": kind, "name": kind, "id": format!("svc-{kind}"),
            "endpoints": [
                {"id": format!("{kind}-pub"), "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": url},
                {"id": format!("{kind}-int"), "interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": format!("{url}-internal")}
            ]
        })
    };
    let mut catalog = vec![entry("identity", format!("{base}/identity"))];
    if services.contains(&"image") {
        catalog.push(entry("image", format!("{base}/image")));
    }
    if services.contains(&"compute") {
        catalog.push(entry("compute", format!("{base}/compute/v2.1")));
    }
    json!({"token": {
        "methods": ["password"], "expires_at": expires_at, "issued_at": "2026-11-06T08:00:00.000000Z",
        "user": {"id": "u-alice", "name": "alice", "domain": {"id": "default", "name": "Default"}},
        "project": {"id": "p-alpha", "name": "alpha", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "member"}],
        "catalog": catalog
    }})
}

fn far_future() -> String {
    "2099-01-01T00:00:00.000000Z".to_string()
}

fn token_response(base: &str, token: &str, expires_at: &str, services: &[&str]) -> ResponseTemplate {
    ResponseTemplate::new(201)
        .insert_header("x-subject-token", token)
        .insert_header("x-openstack-request-id", "req-keystone-1")
        .set_body_json(token_body(base, expires_at, services))
}

fn config(base: &str) -> CloudConfig {
    CloudConfig {
        name: "wiremock".into(),
        origin: ConfigOrigin::Environment,
        auth_url: format!("{base}/identity"),
        auth: AuthMethod::Password {
            user: UserRef::Name { name: "alice".into(), domain: DomainRef::Id("default".into()) },
            password: Secret::new(PASSWORD),
            scope: Scope::Project(ProjectRef::Name { name: "alpha".into(), domain: DomainRef::Id("default".into()) }),
        },
        region_name: Some("RegionOne".into()),
        interface: Interface::Public,
        tls: TlsVerify::System,
        api_timeout: None,
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        http: HttpOptions {
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
                max_retry_after: Duration::from_secs(5),
            },
            ..HttpOptions::default()
        },
        session: SessionOptions::default(),
    }
}

fn glance_versions(base: &str) -> ResponseTemplate {
    ResponseTemplate::new(300).set_body_json(json!({"versions": [
        {"id": "v2.17", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]},
        {"id": "v2.1", "status": "SUPPORTED", "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]}
    ]}))
}

fn nova_version(base: &str, min: &str, max: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"version": {
        "id": "v2.1", "status": "CURRENT", "version": max, "min_version": min, "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}]
    }}))
}

/// A wiremock cloud with Keystone (one token for ever), Glance's and Nova's version documents.
async fn fake_cloud(nova_max: &str) -> MockServer {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_A, &far_future(), &["image", "compute"]))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/image/")).respond_with(glance_versions(&base)).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/"))
        .respond_with(nova_version(&base, "2.1", nova_max))
        .mount(&server)
        .await;
    server
}

async fn connect(server: &MockServer) -> Cloud {
    match Cloud::connect(config(&server.uri()), options()).await {
        Ok(cloud) => cloud,
        Err(e) => panic!("connect failed: {e}"),
    }
}

fn image_json(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "status": "active", "disk_format": "iso", "container_format": "bare",
           "size": 10, "checksum": null, "visibility": "private", "min_disk": 0, "min_ram": 0, "protected": false,
           "tags": [], "os_type": "linux", "self": format!("/v2/images/{id}"), "file": format!("/v2/images/{id}/file")})
}

#[tokio::test]
async fn password_auth_sends_keystone_v3_body_and_never_logs_the_secret() {
    let server = fake_cloud("2.96").await;
    let cloud = connect(&server).await;
    let requests = server.received_requests().await.unwrap_or_default();
    let auth: Value = serde_json::from_slice(&requests[0].body).unwrap_or_default();
    assert_eq!(
        auth,
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "domain": {"id": "default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}}})
    );
    let token = cloud.token().await.map(|t| t.project_id.clone());
    assert_eq!(token.ok().flatten().as_deref(), Some("p-alpha"));
    let log = format!("{:?}", cloud.call_log().records());
    assert!(log.contains("req-keystone-1"), "the request id is logged: {log}");
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN_A), "no secrets in the call log: {log}");
}

#[tokio::test]
async fn token_refused_mid_run_is_replaced_once_and_the_call_retried() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_A, &far_future(), &["image"]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_B, &far_future(), &["image"]))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/image/")).respond_with(glance_versions(&base)).mount(&server).await;
    // Token A expires (as far as Glance is concerned) after discovery.
    Mock::given(method("GET"))
        .and(path("/image/v2/images/img-1"))
        .and(header("x-auth-token", TOKEN_A))
        .respond_with(ResponseTemplate::new(401).set_body_string(
            "<html><body><h1>401 Unauthorized</h1>This server could not verify that you are authorized.</body></html>",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/img-1"))
        .and(header("x-auth-token", TOKEN_B))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("img-1", "iso")))
        .expect(1)
        .mount(&server)
        .await;

    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("discovery: {e}"));
    let image = glance.get_image("img-1").await.unwrap_or_else(|e| panic!("get after reauth: {e}"));
    assert_eq!(image.property("os_type"), Some("linux"));
    assert_eq!(cloud.session().tokens_issued(), 2);
    let statuses: Vec<Option<u16>> = cloud.call_log().records().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(201), Some(300), Some(401), Some(201), Some(200)]);
}

#[tokio::test]
async fn token_refused_twice_is_an_unauthorized_error() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_A, &far_future(), &["image"]))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/image/")).respond_with(glance_versions(&base)).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/img-1"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(glance.get_image("img-1").await, Err(CloudError::Unauthorized(_))));
}

#[tokio::test]
async fn token_close_to_expiry_is_replaced_before_use() {
    let server = MockServer::start().await;
    let base = server.uri();
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(20))
        .map(|t| t.to_string())
        .unwrap_or_default();
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_A, &soon, &["image"]))
        .expect(2)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    // 20 s left is inside the 60 s margin: the next use issues a new token.
    let _ = cloud.token().await;
    assert_eq!(cloud.session().tokens_issued(), 2);
}

#[tokio::test]
async fn wrong_password_is_unauthorized_with_keystones_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("x-openstack-request-id", "req-badpw")
                .set_body_json(json!({"error": {"code": 401, "title": "Unauthorized",
                    "message": "The request you have made requires authentication."}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    match Cloud::connect(config(&server.uri()), options()).await {
        Err(e @ CloudError::Unauthorized(_)) => {
            assert_eq!(e.request_id(), Some("req-badpw"));
            let text = e.to_string();
            assert!(text.contains("requires authentication") && !text.contains(PASSWORD), "{text}");
        }
        Err(e) => panic!("expected Unauthorized, got {e}"),
        Ok(_) => panic!("expected Unauthorized, got a connection"),
    }
}

#[tokio::test]
async fn service_unavailable_with_retry_after_is_retried_even_for_post() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/flavors"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1").set_body_string("busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/flavors"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"flavor": {
            "id": "f1", "name": "isoharness-build", "ram": 2048, "vcpus": 2, "disk": 10,
            "OS-FLV-EXT-DATA:ephemeral": 10, "os-flavor-access:is_public": false}})))
        .with_priority(2)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let flavor = nova
        .create_flavor(&harness::cloud::nova::NewFlavor {
            name: "isoharness-build".into(),
            ram: 2048,
            vcpus: 2,
            disk: 10,
            ephemeral: 10,
            swap: 0,
            is_public: false,
            id: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(flavor.ephemeral, 10);
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After was honoured");
    let posts: Vec<_> =
        cloud.call_log().records().into_iter().filter(|r| r.method == "POST" && r.url.ends_with("/flavors")).collect();
    assert_eq!(posts.iter().map(|r| (r.status, r.attempt)).collect::<Vec<_>>(), [(Some(503), 1), (Some(200), 2)]);
}

#[tokio::test]
async fn server_error_on_get_is_retried() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/img-1"))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/img-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("img-1", "iso")))
        .with_priority(2)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(glance.get_image("img-1").await.is_ok());
}

#[tokio::test]
async fn server_error_on_post_is_not_retried() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("x-openstack-request-id", "req-boom")
                .set_body_json(json!({"computeFault": {"code": 500, "message": "Unexpected API Error."}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
    let new = NewServer { name: "s".into(), image_ref: "i".into(), flavor_ref: "f".into(), ..NewServer::default() };
    match nova.create_server(&new).await {
        Err(e @ CloudError::Server(_)) => {
            assert_eq!(e.request_id(), Some("req-boom"));
            assert!(e.to_string().contains("Unexpected API Error."));
        }
        other => panic!("expected a Server error, got {:?}", other.map(|s| s.id)),
    }
}

#[tokio::test]
async fn conflict_carries_novas_message_and_request_id() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers/srv-1/action"))
        .and(body_json(json!({"os-stop": null})))
        .respond_with(
            ResponseTemplate::new(409)
                .insert_header("x-compute-request-id", "req-4f1c")
                .insert_header("x-openstack-request-id", "req-4f1c")
                .set_body_json(json!({"conflictingRequest": {"code": 409,
                    "message": "Cannot 'stop' instance srv-1 while it is in vm_state stopped"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
    match nova.stop_server("srv-1").await {
        Err(CloudError::Conflict(failure)) => {
            assert_eq!(failure.status, 409);
            assert_eq!(failure.request_id.as_deref(), Some("req-4f1c"));
            assert_eq!(failure.message, "Cannot 'stop' instance srv-1 while it is in vm_state stopped");
            assert!(failure.url.ends_with("/compute/v2.1/servers/srv-1/action"));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/slow"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(image_json("slow", "x")).set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let mut opts = options();
    opts.http.request_timeout = Duration::from_millis(200);
    opts.http.retry.max_retries = 1;
    let cloud = Cloud::connect(config(&server.uri()), opts).await.unwrap_or_else(|e| panic!("{e}"));
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    match glance.get_image("slow").await {
        Err(CloudError::Timeout { method, url, timeout }) => {
            assert_eq!(method, "GET");
            assert!(url.ends_with("/image/v2/images/slow"));
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let attempts = cloud.call_log().records().into_iter().filter(|r| r.url.ends_with("/slow")).count();
    assert_eq!(attempts, 2, "a GET that timed out is retried once (max_retries = 1)");
}

#[tokio::test]
async fn malformed_body_is_a_decode_error_with_json_path() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/srv-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-openstack-request-id", "req-bad-body")
                .set_body_json(json!({"server": {"id": "srv-1", "status": "ACTIVE", "OS-EXT-STS:power_state": "on"}})),
        )
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
    match nova.get_server("srv-1").await {
        Err(CloudError::Decode { path, request_id, .. }) => {
            assert_eq!(path, "server.OS-EXT-STS:power_state");
            assert_eq!(request_id.as_deref(), Some("req-bad-body"));
        }
        other => panic!("expected a Decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn microversion_is_the_lower_of_the_two_maxima_and_shapes_requests() {
    for (cloud_max, expected, sends_networks_none) in
        [("2.30", "2.30", false), ("2.60", "2.60", true), ("2.96", "2.96", true), ("2.104", "2.100", true)]
    {
        let server = fake_cloud(cloud_max).await;
        Mock::given(method("POST"))
            .and(path("/compute/v2.1/servers"))
            .and(header("openstack-api-version", format!("compute {expected}").as_str()))
            .respond_with(
                ResponseTemplate::new(202).set_body_json(json!({"server": {"id": "srv-9", "adminPass": "x"}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let cloud = connect(&server).await;
        let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nova.microversion().map(|m| m.to_string()).as_deref(), Some(expected));
        let new = NewServer {
            name: "s".into(),
            image_ref: "i".into(),
            flavor_ref: "f".into(),
            no_network: true,
            ..NewServer::default()
        };
        let created = nova.create_server(&new).await.unwrap_or_else(|e| panic!("cloud max {cloud_max}: {e}"));
        assert_eq!(created.id, "srv-9");
        let requests = server.received_requests().await.unwrap_or_default();
        let post = requests.iter().find(|r| r.method.as_str() == "POST" && r.url.path() == "/compute/v2.1/servers");
        let body: Value = post.map(|r| serde_json::from_slice(&r.body).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            body["server"].get("networks") == Some(&json!("none")),
            sends_networks_none,
            "cloud max {cloud_max}: {body}"
        );
    }
}

#[tokio::test]
async fn cloud_minimum_above_ours_is_a_clear_error() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_A, &far_future(), &["compute"]))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/"))
        .respond_with(nova_version(&base, "2.101", "2.120"))
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    match cloud.nova().await {
        Err(e @ CloudError::Microversion { .. }) => assert!(e.to_string().contains("2.101..=2.120"), "{e}"),
        Err(e) => panic!("expected a microversion error, got {e}"),
        Ok(_) => panic!("expected a microversion error"),
    }
}

#[tokio::test]
async fn catalog_without_image_endpoint_is_a_clear_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&server.uri(), TOKEN_A, &far_future(), &["compute"]))
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    match cloud.glance().await {
        Err(e @ CloudError::Discovery { .. }) => {
            let text = e.to_string();
            assert!(text.contains("no \"image\" service") && text.contains("identity, compute"), "{text}");
        }
        Err(e) => panic!("expected a discovery error, got {e}"),
        Ok(_) => panic!("expected a discovery error"),
    }
    let mut internal_in_other_region = config(&server.uri());
    internal_in_other_region.region_name = Some("RegionTwo".into());
    let cloud = Cloud::connect(internal_in_other_region, options()).await.unwrap_or_else(|e| panic!("{e}"));
    let error = cloud.endpoint("compute").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("region \"RegionTwo\"") && error.contains("public in RegionOne"), "{error}");
}

#[tokio::test]
async fn glance_without_v2_is_a_clear_error() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_response(&base, TOKEN_A, &far_future(), &["image"]))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/"))
        .respond_with(
            ResponseTemplate::new(300).set_body_json(json!({"versions": [{"id": "v1.1", "status": "DEPRECATED"}]})),
        )
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let error = cloud.glance().await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("no usable v2 API") && error.contains("v1.1 (DEPRECATED)"), "{error}");
}

#[tokio::test]
async fn image_list_follows_next_links() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .and(query_param("name", "ubuntu.iso"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "images": [image_json("i1", "ubuntu.iso")], "first": "/v2/images?name=ubuntu.iso",
            "next": "/v2/images?name=ubuntu.iso&marker=i1", "schema": "/v2/schemas/images"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .and(query_param("marker", "i1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "images": [image_json("i2", "ubuntu.iso")], "first": "/v2/images?name=ubuntu.iso", "schema": "/v2/schemas/images"})))
        .with_priority(1)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    let query = ImageQuery { name: Some("ubuntu.iso".into()), ..ImageQuery::default() };
    let images = glance.list_images(&query).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(images.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["i1", "i2"]);
}

#[tokio::test]
async fn image_create_and_json_patch_update_use_glances_formats() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("POST"))
        .and(path("/image/v2/images"))
        .and(body_json(json!({"name": "n", "disk_format": "iso", "container_format": "bare", "visibility": "private",
                              "tags": ["isoharness-run-1"], "isoharness_run": "run-1"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(image_json("new-1", "n")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/image/v2/images/new-1"))
        .and(header("content-type", "application/openstack-images-v2.1-json-patch"))
        .and(body_json(json!([
            {"op": "replace", "path": "/os_type", "value": "windows"},
            {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
            {"op": "replace", "path": "/min_disk", "value": 20}
        ])))
        .respond_with(ResponseTemplate::new(200).set_body_json(image_json("new-1", "n")))
        .expect(1)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    let new = NewImage {
        name: "n".into(),
        disk_format: Some("iso".into()),
        container_format: Some("bare".into()),
        visibility: Some("private".into()),
        tags: vec!["isoharness-run-1".into()],
        properties: BTreeMap::from([("isoharness_run".to_string(), "run-1".to_string())]),
        ..NewImage::default()
    };
    let image = glance.create_image(&new).await.unwrap_or_else(|e| panic!("{e}"));
    let ops = [
        PatchOp::set(&image, "os_type", "windows"),
        PatchOp::set(&image, "hw_disk_bus", "virtio"),
        PatchOp::set(&image, "min_disk", 20),
    ];
    glance.update_image(&image.id, &ops).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Records the body wiremock received for the upload.
struct Capture(Arc<Mutex<Option<Request>>>);

impl Respond for Capture {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(request.clone());
        }
        ResponseTemplate::new(204)
    }
}

fn test_bytes(len: usize) -> Vec<u8> {
    // Not all zero, not periodic at the chunk size: a byte out of place changes the hashes.
    (0..len).map(|i| ((i * 7919) % 251) as u8 ^ (i >> 16) as u8).collect()
}

#[tokio::test]
async fn upload_streams_the_exact_bytes_with_length_progress_and_hashes() {
    let server = fake_cloud("2.96").await;
    let captured = Arc::new(Mutex::new(None));
    Mock::given(method("PUT"))
        .and(path("/image/v2/images/img-up/file"))
        .and(header("content-type", "application/octet-stream"))
        .respond_with(Capture(captured.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("installer.iso");
    let data = test_bytes(CHUNK_SIZE * 12 + 12345);
    std::fs::write(&file, &data).unwrap_or_else(|e| panic!("{e}"));

    let calls: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let sink = calls.clone();
    let progress: Progress = Arc::new(move |done, total| {
        if let Ok(mut c) = sink.lock() {
            c.push((done, total));
        }
    });
    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    let digest = glance.upload_file("img-up", &file, Some(progress)).await.unwrap_or_else(|e| panic!("{e}"));

    let request = captured.lock().ok().and_then(|r| r.clone()).unwrap_or_else(|| panic!("no upload received"));
    assert_eq!(request.body.len(), data.len());
    assert!(request.body == data, "the uploaded bytes differ from the file");
    assert_eq!(
        request.headers.get("content-length").and_then(|v| v.to_str().ok()),
        Some(data.len().to_string().as_str())
    );
    assert!(request.headers.get("transfer-encoding").is_none(), "sent with a known length, not chunked");

    assert_eq!(digest.bytes, data.len() as u64);
    assert_eq!(digest.md5, Some(hex::encode(md5::Md5::digest(&data))));
    assert_eq!(digest.sha512, Some(hex::encode(sha2::Sha512::digest(&data))));

    // The body is produced chunk by chunk from the file, never as one buffer the size of the file.
    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(calls.last(), Some(&(data.len() as u64, data.len() as u64)), "progress reaches the total");
    assert!(calls.len() >= 13, "{} progress calls for 13 chunks", calls.len());
    let mut previous = 0;
    for (done, total) in &calls {
        assert_eq!(*total, data.len() as u64);
        assert!(*done > previous && *done - previous <= CHUNK_SIZE as u64, "step {previous} → {done}");
        previous = *done;
    }
}

#[tokio::test]
async fn download_streams_into_a_writer_with_hashes() {
    let server = fake_cloud("2.96").await;
    let data = test_bytes(CHUNK_SIZE * 3 + 7);
    Mock::given(method("GET"))
        .and(path("/image/v2/images/img-down/file"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-md5", hex::encode(md5::Md5::digest(&data)).as_str())
                .set_body_raw(data.clone(), "application/octet-stream"),
        )
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let glance = cloud.glance().await.unwrap_or_else(|e| panic!("{e}"));
    let mut written: Vec<u8> = Vec::new();
    let last = Arc::new(Mutex::new((0, 0)));
    let sink = last.clone();
    let progress: Progress = Arc::new(move |done, total| {
        if let Ok(mut l) = sink.lock() {
            *l = (done, total);
        }
    });
    let digest = glance.download("img-down", &mut written, Some(progress)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(written == data);
    assert_eq!(digest.md5, Some(hex::encode(md5::Md5::digest(&data))));
    assert_eq!(digest.sha512, Some(hex::encode(sha2::Sha512::digest(&data))));
    assert_eq!(last.lock().map(|l| *l).unwrap_or_default(), (data.len() as u64, data.len() as u64));
}

#[tokio::test]
async fn create_image_reads_body_from_2_45_and_location_before() {
    for (cloud_max, with_body) in [("2.44", false), ("2.45", true)] {
        let server = fake_cloud(cloud_max).await;
        let base = server.uri();
        let mut response =
            ResponseTemplate::new(202).insert_header("location", format!("{base}/image/v2/images/snap-1").as_str());
        if with_body {
            response = response.set_body_json(json!({"image_id": "snap-1"}));
        }
        Mock::given(method("POST"))
            .and(path("/compute/v2.1/servers/srv-1/action"))
            .and(body_json(json!({"createImage": {"name": "snap", "metadata": {"isoharness_run": "r1"}}})))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        let cloud = connect(&server).await;
        let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
        let metadata = BTreeMap::from([("isoharness_run".to_string(), "r1".to_string())]);
        let id = nova.create_image("srv-1", "snap", &metadata).await.unwrap_or_else(|e| panic!("{cloud_max}: {e}"));
        assert_eq!(id, "snap-1");
    }
}

#[tokio::test]
async fn server_fields_remote_console_and_delete_wait() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/srv-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"server": {
            "id": "srv-1", "name": "isoharness-r1", "status": "ERROR", "OS-EXT-STS:task_state": null,
            "OS-EXT-STS:vm_state": "error", "OS-EXT-STS:power_state": 0,
            "fault": {"code": 500, "message": "No valid host was found.", "created": "2026-11-06T08:00:00Z"},
            "image": {"id": "img-1", "links": []}, "flavor": {"original_name": "m1", "ram": 512, "vcpus": 1, "disk": 1, "ephemeral": 1},
            "OS-EXT-SRV-ATTR:instance_name": "instance-00000001", "metadata": {"isoharness_run": "r1"}}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/srv-1"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"itemNotFound": {"code": 404, "message": "Instance srv-1 could not be found."}})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/compute/v2.1/servers/srv-1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/compute/v2.1/servers/srv-1/remote-consoles"))
        .and(body_json(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"remote_console": {
            "protocol": "vnc", "type": "novnc", "url": "http://127.0.0.1:6080/vnc_auto.html?path=%3Ftoken%3Dabc"}})))
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    let nova = cloud.nova().await.unwrap_or_else(|e| panic!("{e}"));
    let srv = nova.get_server("srv-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(srv.status, "ERROR");
    assert_eq!(srv.fault.as_ref().map(|f| f.message.as_str()), Some("No valid host was found."));
    assert_eq!(srv.image_id(), Some("img-1"));
    assert_eq!(srv.instance_name.as_deref(), Some("instance-00000001"));
    let console = nova.vnc_console("srv-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(console.console_type, "novnc");
    nova.delete_server("srv-1").await.unwrap_or_else(|e| panic!("{e}"));
    nova.wait_server_deleted("srv-1", Duration::from_secs(5), Duration::from_millis(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn revoke_sends_the_token_as_subject() {
    let server = fake_cloud("2.96").await;
    Mock::given(method("DELETE"))
        .and(path("/identity/v3/auth/tokens"))
        .and(header("x-auth-token", TOKEN_A))
        .and(header("x-subject-token", TOKEN_A))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let cloud = connect(&server).await;
    cloud.revoke_token().await.unwrap_or_else(|e| panic!("{e}"));
    cloud.revoke_token().await.unwrap_or_else(|e| panic!("a second revoke is a no-op: {e}"));
}
