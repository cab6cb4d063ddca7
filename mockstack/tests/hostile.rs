//! What a client can provoke with a malformed request comes back as the real service answers it: its status, its
//! format. Expected bodies were captured from Keystone 30, Glance 33 and Nova 34 (webob 1.8, oslo.middleware's
//! sizelimit) on the local real cloud.

use mockstack::{Config, MockStack};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Cloud {
    mock: MockStack,
    token: String,
}

impl Cloud {
    async fn start() -> Cloud {
        let mock = MockStack::start(Config::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": "mockstack-admin"}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}
        }});
        let r = reqwest::Client::new().post(mock.auth_url() + "/auth/tokens").json(&body).send().await.unwrap();
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        Cloud { mock, token }
    }

    /// Sends `method path` with `body` and `accept`; returns status, content type and body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        accept: Option<&str>,
    ) -> (StatusCode, String, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.mock.url()))
            .header("x-auth-token", &self.token)
            .header("content-type", "application/json")
            .body(body);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, content_type, r.text().await.unwrap())
    }

    /// A POST whose chunked body stops in the middle of a chunk and the connection half-closes.
    async fn cut_off(&self, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.mock.addr()).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n10\r\n{{\"server\": {{\"na",
            self.token
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }
}

const NOT_COMPLIED: &str = "The server could not comply with the request since it is either malformed or otherwise \
                            incorrect. The client is assumed to be in error.";

#[tokio::test]
async fn ids_that_are_not_utf8_are_looked_up_as_the_services_decode_them() {
    let cloud = Cloud::start().await;
    let (status, ct, body) = cloud.send("GET", "/compute/v2.1/servers/%FF", vec![], None).await;
    assert_eq!((status, ct.as_str()), (StatusCode::NOT_FOUND, "application/json"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"itemNotFound": {"code": 404, "message": "Instance \u{ff} could not be found."}})
    );
    let (status, _, body) = cloud.send("GET", "/identity/v3/projects/%FF", vec![], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["message"],
        "Could not find project: \u{fffd}."
    );
    let (status, ct, body) = cloud.send("GET", "/image/v2/images/%FF", vec![], Some("application/json")).await;
    assert_eq!((status, ct.as_str()), (StatusCode::NOT_FOUND, "application/json"));
    assert!(body.contains("\u{ff}"), "{body}");
    // Valid escapes are left alone.
    assert_eq!(mockstack::server::readable_path("/compute/v2.1/servers/caf%C3%A9%2Fx"), None);
    assert_eq!(
        mockstack::server::readable_path("/identity/v3/users/a%FFb%C3").as_deref(),
        Some("/identity/v3/users/a%EF%BF%BDb%EF%BF%BD")
    );
    assert_eq!(
        mockstack::server::readable_path("/image/v2/images/%E9t%E9").as_deref(),
        Some("/image/v2/images/%C3%A9t%C3%A9")
    );
    cloud.mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_past_sizelimit_get_its_413_page_in_the_format_accept_asks_for() {
    let cloud = Cloud::start().await;
    let big = vec![b'a'; 200_000];
    for path in ["/identity/v3/auth/tokens", "/compute/v2.1/servers"] {
        let (status, ct, body) = cloud.send("POST", path, big.clone(), Some("*/*")).await;
        assert_eq!((status, ct.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "text/html; charset=UTF-8"), "{path}");
        assert!(body.contains("<h1>413 Request Entity Too Large</h1>\n  Request is too large. Larger than max_request_body_size (%s).<br /><br />"), "{body}");
        // Neither HTML nor JSON acceptable (or no Accept at all, which reqwest never sends): plain text.
        let (status, ct, body) = cloud.send("POST", path, big.clone(), Some("text/plain")).await;
        assert_eq!((status, ct.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "text/plain; charset=UTF-8"), "{path}");
        assert_eq!(
            body,
            "413 Request Entity Too Large\n\nRequest is too large. Larger than max_request_body_size (%s).\n\n   "
        );
    }
    // Glance has no such limit: it reads the body, and it is not JSON.
    let (status, ct, body) = cloud.send("POST", "/image/v2/images", big.clone(), Some("text/plain")).await;
    assert_eq!((status, ct.as_str()), (StatusCode::BAD_REQUEST, "text/plain; charset=UTF-8"));
    assert_eq!(body, "400 Bad Request\n\nMalformed JSON in request body.\n\n   ");
    let (_, ct, body) = cloud.send("POST", "/image/v2/images", big, Some("application/json")).await;
    assert_eq!(ct, "application/json");
    assert_eq!(
        body,
        r#"{"message": "Malformed JSON in request body.<br /><br />\n\n\n", "code": "400 Bad Request", "title": "Bad Request"}"#
    );
    cloud.mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_cut_off_midway_is_read_as_the_services_read_it() {
    let cloud = Cloud::start().await;
    let keystone = cloud.cut_off("/identity/v3/auth/tokens").await;
    assert!(keystone.starts_with("HTTP/1.1 400"), "{keystone}");
    assert!(keystone.contains(&format!("Expecting to find auth in request body. {NOT_COMPLIED}")), "{keystone}");
    let nova = cloud.cut_off("/compute/v2.1/servers").await;
    assert!(nova.starts_with("HTTP/1.1 400"), "{nova}");
    assert!(
        nova.contains(r#""message":"None is not of type 'object'""#)
            || nova.contains(r#""message": "None is not of type 'object'""#),
        "{nova}"
    );
    let glance = cloud.cut_off("/image/v2/images").await;
    assert!(glance.starts_with("HTTP/1.1 500"), "{glance}");
    assert!(glance.ends_with("500 Internal Server Error\n\nThe server has either erred or is incapable of performing the requested operation.\n\n   "), "{glance}");
    cloud.mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn keystone_reads_an_empty_body_as_an_empty_object_and_refuses_what_is_not_one() {
    let cloud = Cloud::start().await;
    for (body, expected) in [
        ("", "Expecting to find auth in request body."),
        (r#"{"x": 1}"#, "Expecting to find auth in request body."),
        ("garbage", "Expecting to find valid JSON in request body."),
        ("[]", "Expecting to find valid JSON in request body."),
    ] {
        let (status, _, reply) = cloud.send("POST", "/identity/v3/auth/tokens", body.into(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = serde_json::from_str::<serde_json::Value>(&reply).unwrap()["error"]["message"].clone();
        assert_eq!(message, format!("{expected} {NOT_COMPLIED}"), "{body}");
    }
    cloud.mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn server_list_queries_and_extra_spec_values_are_checked_as_nova_checks_them() {
    let owned = Cloud::start().await;
    let cloud = &owned;
    let get = |query: &str| {
        let path = format!("/compute/v2.1/servers{query}");
        async move { cloud.send("GET", &path, vec![], None).await }
    };
    let message = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["badRequest"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (status, _, body) = get("?changes-since=garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "Invalid input for query parameters changes-since. Value: garbage. 'garbage' is not a 'date-time'"
    );
    assert_eq!(get("?changes-since=2026-01-01").await.0, StatusCode::OK, "a date is a date-time to Nova's parser");
    assert_eq!(get("?changes-before=2026-01-01T10:00:00Z").await.0, StatusCode::OK);
    let (status, _, body) = get("/detail?sort_key=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).starts_with("Invalid input for query parameters sort_key. Value: bogus. 'bogus' is not one of ['access_ip_v4', 'access_ip_v6',"), "{body}");
    assert!(message(&body).ends_with("'vcpus', 'vm_mode']"), "{body}");
    assert_eq!(get("?sort_key=display_name&sort_dir=asc").await.0, StatusCode::OK);
    let (status, _, body) = get("?sort_key=display_name&sort_dir=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "Invalid input received: Unknown sort direction, must be 'desc' or 'asc'");
    for (value, shown) in [(json!(true), "True"), (json!(null), "None"), (json!(["x"]), "['x']")] {
        let spec = json!({"extra_specs": {"hw:cpu_policy": value}}).to_string().into_bytes();
        let (status, _, body) = cloud.send("POST", "/compute/v2.1/flavors/1/os-extra_specs", spec, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            message(&body),
            format!(
                "Invalid input for field/attribute hw:cpu_policy. Value: {shown}. {shown} is not of type 'string', 'number'"
            )
        );
    }
    let spec = json!({"extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": 1}}).to_string().into_bytes();
    assert_eq!(cloud.send("POST", "/compute/v2.1/flavors/1/os-extra_specs", spec, None).await.0, StatusCode::OK);
    owned.mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn glance_takes_a_json_patch_path_of_a_lone_slash_as_the_property_named_nothing_as_glance_does() {
    // Glance 33 answers 200 and shows a property "" (its pointer checks let "/" through): the mock does the same.
    let cloud = Cloud::start().await;
    let create = json!({"name": "p", "disk_format": "raw", "container_format": "bare"}).to_string().into_bytes();
    let (_, _, body) = cloud.send("POST", "/image/v2/images", create, Some("application/json")).await;
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let patch = json!([{"op": "add", "path": "/", "value": "x"}]).to_string().into_bytes();
    let r = reqwest::Client::new()
        .patch(format!("{}/image/v2/images/{id}", cloud.mock.url()))
        .header("x-auth-token", &cloud.token)
        .header("content-type", "application/openstack-images-v2.1-json-patch")
        .header("accept", "application/json")
        .body(patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()[""], "x");
    cloud.mock.shutdown().await.unwrap();
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_cut_off_after_the_header_read_timeout() {
    let config = Config { header_read_timeout: std::time::Duration::from_millis(300), ..Config::default() };
    let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut half_sent = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
        stream.write_all(b"GET /identity/v3 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ").await.unwrap();
        half_sent.push(stream);
    }
    // The bound is generous: the test fails on a connection held forever, not on a slow machine.
    let all_closed = async {
        for mut stream in half_sent {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            assert!(answer.is_empty(), "no response to half a request: {}", String::from_utf8_lossy(&answer));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all_closed)
        .await
        .expect("every half-sent request is cut off, not held open");

    // A client that sends its request in pieces, within the time, is answered.
    let mut stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    stream.write_all(b"GET /identity/v3 HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stream.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[tokio::test]
async fn glance_tests_a_member_for_truth_as_python_does_and_echoes_it_as_given() {
    // Glance 33: `{"member": 5}` is a 200 whose answer says `"member_id": 5`; what it stores, and later shows, is
    // "5". Values Python takes for false are "Member can't be empty".
    let cloud = Cloud::start().await;
    let create = json!({"name": "m", "disk_format": "raw", "container_format": "bare", "visibility": "shared"});
    let (_, _, body) = cloud.send("POST", "/image/v2/images", create.to_string().into_bytes(), None).await;
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let members = format!("/image/v2/images/{id}/members");
    let (status, _, body) =
        cloud.send("POST", &members, json!({"member": 5}).to_string().into_bytes(), Some("application/json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["member_id"], json!(5));
    let (_, _, body) = cloud.send("GET", &format!("{members}/5"), Vec::new(), Some("application/json")).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["member_id"], json!("5"));
    for falsy in [json!(0), json!(""), json!([]), json!({}), json!(false), json!(null)] {
        let request = json!({ "member": falsy }).to_string().into_bytes();
        let (status, _, body) = cloud.send("POST", &members, request, Some("application/json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{falsy}: {body}");
        assert!(body.contains("Member can't be empty"), "{falsy}: {body}");
    }
    cloud.mock.shutdown().await.unwrap();
}
