//! Glance v2 over HTTP against an in-process mockstack: status codes and error bodies, project isolation, pagination, sorting, patch rules, and streamed data with hashes, Range and the size cap.

use std::collections::HashMap;
use std::sync::Mutex;

use md5::Digest;
use mockstack::glance::ImageStatus;
use mockstack::{Config, MockStack};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PATCH: &str = "application/openstack-images-v2.1-json-patch";
const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";
const OCTETS: &str = "application/octet-stream";

struct Cloud {
    mock: MockStack,
    http: reqwest::Client,
    tokens: Mutex<HashMap<String, String>>,
}

/// What a request sends: a JSON body, raw bytes with a content type, or nothing.
enum Send {
    Nothing,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.bytes)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Which project each built-in user works in.
fn project_of(user: &str) -> &'static str {
    match user {
        "admin" => "admin",
        "alice" | "alpha-reader" => "alpha",
        "bob" => "beta",
        other => panic!("no project known for {other}"),
    }
}

impl Cloud {
    async fn start() -> Cloud {
        Cloud::with(Config::default()).await
    }

    async fn with(config: Config) -> Cloud {
        let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Cloud { mock, http: reqwest::Client::new(), tokens: Mutex::new(HashMap::new()) }
    }

    fn project_id(&self, name: &str) -> String {
        self.mock.state().identities().project_by_name(name).unwrap().id.clone()
    }

    async fn token(&self, user: &str) -> String {
        if let Some(t) = self.tokens.lock().unwrap().get(user) {
            return t.clone();
        }
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": format!("mockstack-{user}")}}},
            "scope": {"project": {"name": project_of(user), "domain": {"id": "default"}}}
        }});
        let r = self.http.post(self.mock.auth_url() + "/auth/tokens").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "token for {user}");
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        self.tokens.lock().unwrap().insert(user.to_string(), token.clone());
        token
    }

    /// `path` is relative to the image endpoint (`/v2/images`...).
    async fn call(&self, user: Option<&str>, method: Method, path: &str, send: Send) -> Reply {
        let url = format!("{}/image{}", self.mock.url(), path);
        // As the clients do: webob answers errors in JSON only to a client that asks for it.
        let mut req = self.http.request(method, url).header("accept", "application/json");
        if let Some(user) = user {
            req = req.header("x-auth-token", self.token(user).await);
        }
        req = match send {
            Send::Nothing => req,
            Send::Json(v) => req.header("content-type", "application/json").body(v.to_string()),
            Send::Raw(ct, bytes) => {
                let req = if ct.is_empty() { req } else { req.header("content-type", ct) };
                req.body(bytes)
            }
        };
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        Reply { status, headers, bytes }
    }

    async fn get(&self, user: &str, path: &str) -> Reply {
        self.call(Some(user), Method::GET, path, Send::Nothing).await
    }

    async fn create(&self, user: &str, body: Value) -> Value {
        let r = self.call(Some(user), Method::POST, "/v2/images", Send::Json(body.clone())).await;
        assert_eq!(r.status, 201, "create {body}: {}", String::from_utf8_lossy(&r.bytes));
        r.json()
    }

    async fn upload(&self, user: &str, id: &str, data: &[u8]) -> Reply {
        self.call(Some(user), Method::PUT, &format!("/v2/images/{id}/file"), Send::Raw(OCTETS, data.to_vec())).await
    }

    async fn patch(&self, user: &str, id: &str, changes: Value) -> Reply {
        self.call(
            Some(user),
            Method::PATCH,
            &format!("/v2/images/{id}"),
            Send::Raw(PATCH, changes.to_string().into_bytes()),
        )
        .await
    }
}

/// Asserts a reply's status and, for errors, Glance's webob body with a message containing `message`.
fn expect(what: &str, reply: &Reply, status: u16, message: Option<&str>) {
    assert_eq!(reply.status.as_u16(), status, "{what}: {}", String::from_utf8_lossy(&reply.bytes));
    if let Some(message) = message {
        let body = reply.json();
        // webob's names, RFC 2616's ("413 Request Entity Too Large").
        let reason = mockstack::webob::title(reply.status);
        assert_eq!(body["code"], format!("{status} {reason}"), "{what}: {body}");
        assert_eq!(body["title"], reason, "{what}: {body}");
        let got = body["message"].as_str().unwrap_or_default();
        assert!(got.contains(message), "{what}: message {got:?} does not contain {message:?}");
    }
}

/// One request and what Glance answers to it.
async fn check(cloud: &Cloud, user: &str, method: Method, path: &str, send: Send, status: u16, message: &str) {
    let what = format!("{user} {method} {path}");
    let reply = cloud.call(Some(user), method, path, send).await;
    expect(&what, &reply, status, (!message.is_empty()).then_some(message));
}

fn hashes(data: &[u8]) -> (String, String) {
    (hex::encode(md5::Md5::digest(data)), hex::encode(sha2::Sha512::digest(data)))
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8).collect()
}

#[tokio::test]
async fn discovery_answers_without_a_token() {
    let cloud = Cloud::start().await;
    let image_url = format!("{}/image", cloud.mock.url());
    for (path, status) in [("/", 300), ("/versions", 200)] {
        let r = cloud.call(None, Method::GET, path, Send::Nothing).await;
        assert_eq!(r.status.as_u16(), status, "{path}");
        let versions = r.json()["versions"].as_array().unwrap().clone();
        let current: Vec<&Value> = versions.iter().filter(|v| v["status"] == "CURRENT").collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], "v2.17");
        assert!(versions.iter().all(|v| v["links"][0]["href"] == format!("{image_url}/v2/")));
    }
    let r = cloud.call(None, Method::GET, "/v2/images", Send::Nothing).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], 401);
    assert!(r.header("www-authenticate").is_some());
}

#[tokio::test]
async fn create_answers_like_glance() {
    let cloud = Cloud::start().await;
    let alpha = cloud.project_id("alpha");
    let r = cloud
        .call(
            Some("alice"),
            Method::POST,
            "/v2/images",
            Send::Json(json!({"name": "deb", "os_distro": "debian", "tags": ["x"]})),
        )
        .await;
    assert_eq!(r.status, 201);
    let image = r.json();
    let id = image["id"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("{}/image/v2/images/{id}", cloud.mock.url()).as_str()));
    for (key, want) in [
        ("status", json!("queued")),
        ("visibility", json!("shared")),
        ("owner", json!(alpha)),
        ("size", Value::Null),
        ("virtual_size", Value::Null),
        ("checksum", Value::Null),
        ("os_hash_algo", Value::Null),
        ("os_hash_value", Value::Null),
        ("disk_format", Value::Null),
        ("container_format", Value::Null),
        ("min_disk", json!(0)),
        ("min_ram", json!(0)),
        ("protected", json!(false)),
        ("os_hidden", json!(false)),
        ("os_distro", json!("debian")),
        ("tags", json!(["x"])),
        ("self", json!(format!("/v2/images/{id}"))),
        ("file", json!(format!("/v2/images/{id}/file"))),
        ("schema", json!("/v2/schemas/image")),
    ] {
        assert_eq!(image[key], want, "{key} in {image}");
    }

    let taken = "11111111-2222-3333-4444-555555555555";
    cloud.create("alice", json!({"id": taken})).await;
    let raw = |text: &str| Send::Raw("application/json", text.as_bytes().to_vec());
    let post = Method::POST;
    let path = "/v2/images";
    check(&cloud, "alice", post.clone(), path, raw("{\"name\": "), 400, "Malformed JSON in request body.").await;
    check(&cloud, "alice", post.clone(), path, raw(""), 400, "Body expected in request.").await;
    check(&cloud, "alice", post.clone(), path, raw("\"x\""), 400, "Unexpected body type. Expected list/dict.").await;
    let duplicate = format!("Image ID {taken} already exists!");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("alice", json!([]), 400, "Provided object does not match schema 'image': [] is not of type 'object'"),
        ("alice", json!({"name": 7}), 400, "7 is not of type 'null', 'string'"),
        ("alice", json!({"min_ram": "lots"}), 400, "'lots' is not of type 'integer'"),
        ("alice", json!({"protected": "yes"}), 400, "'yes' is not of type 'boolean'"),
        ("alice", json!({"disk_format": "floppy"}), 400, "'floppy' is not one of [None, 'ami'"),
        (
            "alice",
            json!({"visibility": "everyone"}),
            400,
            "'everyone' is not one of ['community', 'public', 'private', 'shared']",
        ),
        ("alice", json!({"hw_firmware_type": 1}), 400, "1 is not of type 'string'"),
        ("alice", json!({"id": "nope"}), 400, "'nope' does not match"),
        (
            "alice",
            json!({"min_disk": -2}),
            400,
            "Invalid value '-2' for parameter 'min_disk': Cannot be a negative value",
        ),
        ("alice", json!({"self": "/x"}), 403, "Attribute 'self' is read-only."),
        ("alice", json!({"file": "/x"}), 403, "Attribute 'file' is read-only."),
        ("alice", json!({"status": "active"}), 403, "Attribute 'status' is read-only."),
        ("alice", json!({"checksum": "abc"}), 403, "Attribute 'checksum' is read-only."),
        ("alice", json!({"size": 5}), 403, "Attribute 'size' is read-only."),
        ("alice", json!({"os_glance_import_task": "x"}), 403, "Attribute 'os_glance_import_task' is reserved."),
        ("alice", json!({"deleted_at": "x"}), 403, "Attribute 'deleted_at' is reserved."),
        ("alice", json!({"visibility": "public"}), 403, "You are not authorized to complete publicize_image action."),
        (
            "alice",
            json!({"owner": "someone-else"}),
            403,
            "You are not permitted to create images owned by 'someone-else'.",
        ),
        ("alpha-reader", json!({"name": "r"}), 403, "You are not authorized to complete add_image action."),
        ("alice", json!({"id": taken}), 409, &duplicate),
        ("admin", json!({"visibility": "public", "name": "pub"}), 201, ""),
        ("alice", json!({"visibility": "community"}), 201, ""),
    ];
    for (user, body, status, message) in cases {
        check(&cloud, user, post.clone(), path, Send::Json(body), status, message).await;
    }
}

#[tokio::test]
async fn projects_are_isolated() {
    let cloud = Cloud::start().await;
    let mut ids = HashMap::new();
    for (user, vis) in
        [("alice", "private"), ("alice", "shared"), ("alice", "community"), ("admin", "public"), ("bob", "private")]
    {
        let img = cloud.create(user, json!({"name": format!("{user}-{vis}"), "visibility": vis})).await;
        ids.insert(format!("{user}-{vis}"), img["id"].as_str().unwrap().to_string());
    }
    let names = |r: Reply| -> Vec<String> {
        let mut n: Vec<String> =
            r.json()["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let cases: [(&str, &str, &[&str]); 7] = [
        ("alice", "", &["admin-public", "alice-community", "alice-private", "alice-shared"]),
        ("alpha-reader", "", &["admin-public", "alice-community", "alice-private", "alice-shared"]),
        ("bob", "", &["admin-public", "bob-private"]),
        ("bob", "?visibility=community", &["alice-community"]),
        ("admin", "", &["admin-public", "alice-private", "alice-shared", "bob-private"]),
        (
            "admin",
            "?visibility=all",
            &["admin-public", "alice-community", "alice-private", "alice-shared", "bob-private"],
        ),
        ("alice", "?visibility=private", &["alice-private"]),
    ];
    for (user, query, expected) in cases {
        assert_eq!(names(cloud.get(user, &format!("/v2/images{query}")).await), expected, "{user} lists {query}");
    }
    let alice_private = &ids["alice-private"];
    let alice_shared = &ids["alice-shared"];
    let get = Method::GET;
    let missing = format!("No image found with ID {alice_private}");
    check(&cloud, "bob", get.clone(), &format!("/v2/images/{alice_private}"), Send::Nothing, 404, &missing).await;
    check(&cloud, "bob", get.clone(), &format!("/v2/images/{alice_private}/file"), Send::Nothing, 404, &missing).await;
    check(
        &cloud,
        "bob",
        Method::DELETE,
        &format!("/v2/images/{alice_private}"),
        Send::Nothing,
        404,
        "Failed to find image",
    )
    .await;
    check(&cloud, "admin", get.clone(), &format!("/v2/images/{alice_private}"), Send::Nothing, 200, "").await;
    check(&cloud, "alpha-reader", get.clone(), &format!("/v2/images/{alice_private}"), Send::Nothing, 200, "").await;
    check(&cloud, "bob", get.clone(), &format!("/v2/images/{}", ids["admin-public"]), Send::Nothing, 200, "").await;
    let r = cloud.patch("bob", &ids["admin-public"], json!([{"op": "add", "path": "/k", "value": "v"}])).await;
    expect("bob patches a public image", &r, 403, Some("You are not authorized to complete modify_image action."));
    let r = cloud.patch("alpha-reader", alice_private, json!([{"op": "add", "path": "/k", "value": "v"}])).await;
    expect("a reader patches", &r, 403, Some("You are not authorized to complete modify_image action."));
    check(
        &cloud,
        "alpha-reader",
        Method::DELETE,
        &format!("/v2/images/{alice_private}"),
        Send::Nothing,
        403,
        "delete_image",
    )
    .await;
    check(
        &cloud,
        "alpha-reader",
        Method::PUT,
        &format!("/v2/images/{alice_private}/tags/t"),
        Send::Nothing,
        403,
        "modify_image",
    )
    .await;

    // Sharing: bob sees the shared image once a member, lists it once he accepts.
    let members = format!("/v2/images/{alice_shared}/members");
    let beta = cloud.project_id("beta");
    check(&cloud, "bob", get.clone(), &format!("/v2/images/{alice_shared}"), Send::Nothing, 404, "No image found")
        .await;
    check(&cloud, "alice", Method::POST, &members, Send::Json(json!({"member": beta})), 200, "").await;
    check(&cloud, "alice", Method::POST, &members, Send::Json(json!({"member": beta})), 409, "is duplicated for image")
        .await;
    check(&cloud, "alice", Method::POST, &members, Send::Json(json!({})), 400, "Member to be added not specified")
        .await;
    check(
        &cloud,
        "alice",
        Method::POST,
        &format!("/v2/images/{alice_private}/members"),
        Send::Json(json!({"member": beta})),
        403,
        "Only shared images have members.",
    )
    .await;
    check(&cloud, "bob", get.clone(), &format!("/v2/images/{alice_shared}"), Send::Nothing, 200, "").await;
    assert_eq!(names(cloud.get("bob", "/v2/images").await), ["admin-public", "bob-private"]);
    assert_eq!(
        names(cloud.get("bob", "/v2/images?member_status=pending").await),
        ["admin-public", "alice-shared", "bob-private"]
    );
    let me = format!("{members}/{beta}");
    check(&cloud, "alice", Method::PUT, &me, Send::Json(json!({"status": "accepted"})), 403, "modify_member").await;
    check(&cloud, "bob", Method::PUT, &me, Send::Json(json!({"status": "maybe"})), 400, "Status must be").await;
    check(&cloud, "bob", Method::PUT, &me, Send::Json(json!({"status": "accepted"})), 200, "").await;
    assert_eq!(names(cloud.get("bob", "/v2/images").await), ["admin-public", "alice-shared", "bob-private"]);
    let listed = cloud.get("bob", &members).await.json();
    assert_eq!(listed["members"][0]["status"], "accepted");
    assert_eq!(listed["schema"], "/v2/schemas/members");
    let mounted = cloud.mock.state().glance().find_visible("alice-shared", &beta).map(|i| i.id);
    assert_eq!(mounted, None, "find_visible wants an active image");
    check(&cloud, "alice", Method::DELETE, &me, Send::Nothing, 204, "").await;
    check(&cloud, "bob", get, &format!("/v2/images/{alice_shared}"), Send::Nothing, 404, "No image found").await;
}

#[tokio::test]
async fn listing_filters_paginates_and_sorts() {
    let cloud = Cloud::start().await;
    let specs = [
        ("delta", "iso", "bare", &["dvd"][..]),
        ("alpha", "qcow2", "bare", &["disk", "linux"][..]),
        ("charlie", "iso", "ova", &["dvd", "linux"][..]),
        ("bravo", "raw", "bare", &[][..]),
        ("echo", "qcow2", "bare", &["disk"][..]),
    ];
    for (name, disk, container, tags) in specs {
        cloud
            .create("alice", json!({"name": name, "disk_format": disk, "container_format": container, "tags": tags}))
            .await;
    }
    let echo = cloud.get("alice", "/v2/images?name=echo").await.json()["images"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(cloud.upload("alice", &echo, b"0123456789").await.status, 204);
    let names = |body: &Value| -> Vec<String> {
        body["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
    };
    let alpha = cloud.project_id("alpha");
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("".into(), vec!["echo", "bravo", "charlie", "alpha", "delta"]),
        ("sort_key=name&sort_dir=asc".into(), vec!["alpha", "bravo", "charlie", "delta", "echo"]),
        ("sort=name:desc".into(), vec!["echo", "delta", "charlie", "bravo", "alpha"]),
        ("sort=disk_format:asc,name:desc".into(), vec!["delta", "charlie", "echo", "alpha", "bravo"]),
        ("sort_key=created_at&sort_dir=asc".into(), vec!["delta", "alpha", "charlie", "bravo", "echo"]),
        ("sort_key=size&sort_dir=desc&sort_key=name".into(), vec!["echo", "delta", "charlie", "bravo", "alpha"]),
        ("name=charlie".into(), vec!["charlie"]),
        ("disk_format=iso&sort=name:asc".into(), vec!["charlie", "delta"]),
        ("container_format=ova".into(), vec!["charlie"]),
        ("tag=linux&tag=dvd".into(), vec!["charlie"]),
        ("tag=disk&sort=name:asc".into(), vec!["alpha", "echo"]),
        ("status=active".into(), vec!["echo"]),
        ("status=queued&sort=name:asc&limit=2".into(), vec!["alpha", "bravo"]),
        (format!("owner={alpha}&visibility=shared&name=bravo"), vec!["bravo"]),
        ("owner=nobody".into(), vec![]),
        ("size_min=5".into(), vec!["echo"]),
        ("visibility=private".into(), vec![]),
    ];
    for (query, expected) in cases {
        let body = cloud.get("alice", &format!("/v2/images?{query}")).await.json();
        assert_eq!(names(&body), expected, "?{query}");
    }

    // Follow `next` links page by page, as clients do.
    let mut seen = Vec::new();
    let mut path = "/v2/images?limit=2&sort=name:asc".to_string();
    let mut pages = 0;
    loop {
        let body = cloud.get("alice", &path).await.json();
        pages += 1;
        assert_eq!(body["first"], "/v2/images?limit=2&sort=name%3Aasc");
        assert_eq!(body["schema"], "/v2/schemas/images");
        seen.extend(names(&body));
        match body.get("next").and_then(Value::as_str) {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(pages, 3, "two full pages, then the last one without next");

    let get = Method::GET;
    let bad_cases = [
        ("limit=x", "limit param must be an integer"),
        ("limit=-1", "limit param must be positive"),
        ("sort_key=owner", "Invalid sort key: owner. It must be one of the following:"),
        ("sort_dir=sideways", "Invalid sort direction: sideways"),
        ("sort=name:asc&sort_key=name", "Old and new sorting syntax cannot be combined"),
        ("visibility=everyone", "Invalid visibility value: everyone"),
        ("member_status=maybe", "Invalid status: maybe"),
        ("marker=00000000-0000-0000-0000-000000000000", "No image found with ID 00000000-0000-0000-0000-000000000000"),
        ("changes-since=2020-01-01", "The \"changes-since\" filter is no longer available on v2."),
        ("os_hidden=perhaps", "Invalid value 'perhaps' for 'os_hidden' filter."),
        ("protected=perhaps", "Invalid value 'perhaps' for 'protected' filter."),
    ];
    for (query, message) in bad_cases {
        check(&cloud, "alice", get.clone(), &format!("/v2/images?{query}"), Send::Nothing, 400, message).await;
    }
    let bobs = cloud.create("bob", json!({"name": "bobs", "visibility": "private"})).await;
    let marker = bobs["id"].as_str().unwrap();
    check(&cloud, "alice", get, &format!("/v2/images?marker={marker}"), Send::Nothing, 403, "not visible").await;
}

#[tokio::test]
async fn patch_follows_glance_rules() {
    let cloud = Cloud::start().await;
    let img = cloud
        .create("alice", json!({"name": "p", "disk_format": "raw", "container_format": "bare", "extra": "1"}))
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let path = format!("/v2/images/{id}");

    for (ct, status) in [("application/json", 415), ("", 415), ("application/json-patch+json", 415)] {
        let r = cloud.call(Some("alice"), Method::PATCH, &path, Send::Raw(ct, b"[]".to_vec())).await;
        expect(
            &format!("PATCH as {ct:?}"),
            &r,
            status,
            Some(
                "Image PATCH expects Content-Type one of: application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch",
            ),
        );
        assert_eq!(
            r.header("accept-patch"),
            Some("application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch")
        );
    }
    let r = cloud.call(Some("alice"), Method::PATCH, &path, Send::Raw(PATCH, b"[{".to_vec())).await;
    expect("malformed patch", &r, 400, Some("Malformed JSON in request body."));

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"op": "add"}), 400, "Request body must be a JSON array of operation objects."),
        (
            json!([{"op": "copy", "path": "/name"}]),
            400,
            "Invalid operation: `copy`. It must be one of the following: add, remove, replace.",
        ),
        (json!([{"op": "add", "path": "/a/b", "value": "x"}]), 400, "Invalid JSON pointer for this resource: '/a/b'"),
        (json!([{"op": "add", "path": "/k"}]), 400, "Operation \"add\" requires a member named \"value\"."),
        (json!([{"op": "replace", "path": "/min_ram", "value": "big"}]), 400, "'big' is not of type 'integer'"),
        (json!([{"op": "add", "path": "/k", "value": 3}]), 400, "3 is not of type 'string'"),
        (json!([{"op": "replace", "path": "/min_disk", "value": -1}]), 400, "Cannot be a negative value"),
        (json!([{"op": "replace", "path": "/id", "value": "x"}]), 403, "Attribute 'id' is read-only."),
        (json!([{"op": "replace", "path": "/status", "value": "active"}]), 403, "Attribute 'status' is read-only."),
        (json!([{"op": "replace", "path": "/checksum", "value": "x"}]), 403, "Attribute 'checksum' is read-only."),
        (json!([{"op": "replace", "path": "/size", "value": 1}]), 403, "Attribute 'size' is read-only."),
        (
            json!([{"op": "add", "path": "/os_glance_stage_host", "value": "x"}]),
            403,
            "Attribute 'os_glance_stage_host' is reserved.",
        ),
        (json!([{"op": "replace", "path": "/owner", "value": "x"}]), 403, "Owner can't be updated by non admin."),
        (json!([{"op": "replace", "path": "/visibility", "value": "public"}]), 403, "publicize_image"),
        (json!([{"op": "remove", "path": "/name"}]), 403, "Property name may not be removed."),
        (json!([{"op": "replace", "path": "/missing", "value": "x"}]), 409, "Property missing does not exist."),
        (json!([{"op": "remove", "path": "/missing"}]), 409, "Property missing does not exist."),
        (
            json!([{"op": "add", "path": "/locations/-", "value": {"url": "http://x", "metadata": {}}}]),
            403,
            "It's not allowed to add locations if locations are invisible.",
        ),
        // A failing change leaves the earlier ones unapplied.
        (
            json!([{"op": "replace", "path": "/name", "value": "half"}, {"op": "remove", "path": "/missing"}]),
            409,
            "Property missing does not exist.",
        ),
    ];
    for (changes, status, message) in cases {
        let r = cloud.patch("alice", &id, changes.clone()).await;
        expect(&format!("PATCH {changes}"), &r, status, Some(message));
    }
    assert_eq!(cloud.get("alice", &path).await.json()["name"], "p");

    let r = cloud
        .patch(
            "alice",
            &id,
            json!([
                {"op": "replace", "path": "/name", "value": "renamed"},
                {"op": "add", "path": "/hw_cdrom_bus", "value": "sata"},
                {"op": "replace", "path": "/extra", "value": "2"},
                {"op": "add", "path": "/tags", "value": ["b", "a"]},
                {"op": "replace", "path": "/min_ram", "value": 512},
                {"op": "replace", "path": "/protected", "value": true},
                {"op": "replace", "path": "/visibility", "value": "private"}
            ]),
        )
        .await;
    expect("good patch", &r, 200, None);
    let body = r.json();
    for (key, want) in [
        ("name", json!("renamed")),
        ("hw_cdrom_bus", json!("sata")),
        ("extra", json!("2")),
        ("tags", json!(["a", "b"])),
        ("min_ram", json!(512)),
        ("protected", json!(true)),
        ("visibility", json!("private")),
    ] {
        assert_eq!(body[key], want, "{key}");
    }
    let r = cloud.patch("alice", &id, json!([{"op": "remove", "path": "/hw_cdrom_bus"}])).await;
    assert!(r.json().get("hw_cdrom_bus").is_none());
    // The v2.0 dialect refuses to add what exists.
    let r = cloud
        .call(
            Some("alice"),
            Method::PATCH,
            &path,
            Send::Raw(PATCH_V20, json!([{"add": "/extra", "value": "3"}]).to_string().into_bytes()),
        )
        .await;
    expect("v2.0 add of an existing property", &r, 409, Some("Property extra already present."));
    let r = cloud
        .call(
            Some("alice"),
            Method::PATCH,
            &path,
            Send::Raw(PATCH_V20, json!([{"replace": "/extra", "value": "3"}]).to_string().into_bytes()),
        )
        .await;
    expect("v2.0 replace", &r, 200, None);

    // Protected images refuse deletion; tags come and go.
    check(
        &cloud,
        "alice",
        Method::DELETE,
        &path,
        Send::Nothing,
        403,
        &format!("Image {id} is protected and cannot be deleted."),
    )
    .await;
    check(&cloud, "alice", Method::PUT, &format!("{path}/tags/fresh"), Send::Nothing, 204, "").await;
    check(&cloud, "alice", Method::DELETE, &format!("{path}/tags/fresh"), Send::Nothing, 204, "").await;
    check(
        &cloud,
        "alice",
        Method::DELETE,
        &format!("{path}/tags/fresh"),
        Send::Nothing,
        404,
        "The resource could not be found.",
    )
    .await;
    assert_eq!(
        cloud.patch("alice", &id, json!([{"op": "replace", "path": "/protected", "value": false}])).await.status,
        200
    );
    check(&cloud, "alice", Method::DELETE, &path, Send::Nothing, 204, "").await;
    check(&cloud, "alice", Method::GET, &path, Send::Nothing, 404, &format!("No image found with ID {id}")).await;
    check(
        &cloud,
        "alice",
        Method::PUT,
        &format!("{path}/tags/x"),
        Send::Nothing,
        404,
        &format!("Image {id} not found."),
    )
    .await;
}

#[tokio::test]
async fn data_round_trips_with_hashes_and_ranges() {
    let cloud = Cloud::start().await;
    let img = cloud.create("alice", json!({"name": "d", "disk_format": "iso", "container_format": "bare"})).await;
    let id = img["id"].as_str().unwrap().to_string();
    let file = format!("/v2/images/{id}/file");

    let r = cloud.get("alice", &file).await;
    assert_eq!(r.status, 204, "a queued image has no data");
    for ct in ["application/json", "text/plain", ""] {
        let r = cloud.call(Some("alice"), Method::PUT, &file, Send::Raw(ct, b"abc".to_vec())).await;
        expect(&format!("upload as {ct:?}"), &r, 415, Some("Invalid content type"));
    }
    let bare = cloud.create("alice", json!({"name": "no formats"})).await;
    let r = cloud.upload("alice", bare["id"].as_str().unwrap(), b"abc").await;
    expect(
        "upload without formats",
        &r,
        400,
        Some("Properties disk_format, container_format must be set prior to saving data."),
    );
    let r = cloud.upload("alpha-reader", &id, b"abc").await;
    expect("a reader uploads", &r, 403, Some("You are not authorized to complete upload_image action."));
    let r = cloud.upload("bob", &id, b"abc").await;
    expect("another project uploads", &r, 404, Some("No image found with ID"));

    let data = pattern(5 * 1024 * 1024 + 77, 1);
    let (md5, sha512) = hashes(&data);
    assert_eq!(cloud.upload("alice", &id, &data).await.status, 204);
    let shown = cloud.get("alice", &format!("/v2/images/{id}")).await.json();
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["size"], data.len() as u64);
    assert_eq!(shown["checksum"], md5.as_str());
    assert_eq!(shown["os_hash_algo"], "sha512");
    assert_eq!(shown["os_hash_value"], sha512.as_str());
    let r = cloud.upload("alice", &id, b"again").await;
    expect("second upload", &r, 409, Some("Image status transition from active to saving is not allowed"));

    let r = cloud.get("alice", &file).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCTETS));
    assert_eq!(r.header("content-md5"), Some(md5.as_str()));
    assert_eq!(r.header("content-length"), Some(data.len().to_string().as_str()));
    assert!(r.bytes == data, "downloaded bytes differ");

    let n = data.len();
    /// The bytes `start..end` a satisfiable range returns.
    type Slice = Option<(usize, usize)>;
    let ranges: Vec<(String, u16, Slice)> = vec![
        ("bytes=0-9".into(), 206, Some((0, 10))),
        ("bytes=100-".into(), 206, Some((100, n))),
        ("bytes=-16".into(), 206, Some((n - 16, n))),
        (format!("bytes={}-{}", n - 5, n + 100), 206, Some((n - 5, n))),
        (format!("bytes={n}-"), 416, None),
        ("bytes=9-2".into(), 416, None),
    ];
    for (range, status, slice) in ranges {
        let r = cloud
            .http
            .get(format!("{}/image{file}", cloud.mock.url()))
            .header("x-auth-token", cloud.token("alice").await)
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{range}");
        if let Some((start, end)) = slice {
            let content_range = format!("bytes {}-{}/{}", start, end - 1, n);
            assert_eq!(r.headers()["content-range"].to_str().unwrap(), content_range, "{range}");
            assert!(r.bytes().await.unwrap()[..] == data[start..end], "{range} body");
        }
    }

    // An empty image: Glance serves a suffix range as the whole (empty) image and names its last byte -1; several
    // ranges at once are a 400.
    let empty = cloud.create("alice", json!({"name": "empty", "disk_format": "raw", "container_format": "bare"})).await;
    let empty_id = empty["id"].as_str().unwrap().to_string();
    assert_eq!(cloud.upload("alice", &empty_id, &[]).await.status, 204);
    let empty_file = format!("{}/image/v2/images/{empty_id}/file", cloud.mock.url());
    let ranged = |range: &'static str| {
        let request = cloud.http.get(&empty_file).header("range", range);
        async { request.header("x-auth-token", cloud.token("alice").await).send().await.unwrap() }
    };
    let r = ranged("bytes=-5").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0--1/0");
    assert_eq!(r.headers()["content-length"], "0");
    assert_eq!(ranged("bytes=0-1,3-4").await.status(), 400);
    assert_eq!(ranged("bytes=0-").await.status(), 416);

    // The in-process API sees the same data.
    let glance = cloud.mock.state().glance();
    assert_eq!(std::fs::read(glance.data_path(&id).unwrap()).unwrap(), data);
    assert_eq!(glance.find_visible("d", &cloud.project_id("alpha")).map(|i| i.id), Some(id.clone()));
    assert_eq!(glance.find_visible(&id, &cloud.project_id("beta")), None);

    // Deactivated images refuse downloads to non-admins.
    check(&cloud, "alice", Method::POST, &format!("/v2/images/{id}/actions/deactivate"), Send::Nothing, 204, "").await;
    check(&cloud, "alice", Method::GET, &file, Send::Nothing, 403, "The requested image has been deactivated.").await;
    assert_eq!(cloud.get("admin", &file).await.status, 200);
    check(&cloud, "alice", Method::POST, &format!("/v2/images/{id}/actions/reactivate"), Send::Nothing, 204, "").await;
    check(&cloud, "alice", Method::DELETE, &format!("/v2/images/{id}"), Send::Nothing, 204, "").await;
    assert!(glance.data_path(&id).is_none());
}

#[tokio::test]
async fn size_cap_refuses_and_restores_queued() {
    let cloud = Cloud::with(Config { image_size_cap: 1024 * 1024, ..Config::default() }).await;
    let img = cloud.create("alice", json!({"name": "big", "disk_format": "raw", "container_format": "bare"})).await;
    let id = img["id"].as_str().unwrap().to_string();
    let data = pattern(1024 * 1024 + 1, 2);
    let r = cloud.upload("alice", &id, &data).await;
    expect("upload past the cap", &r, 413, Some("The incoming image is too large: The provided image is too large."));
    // Unknown length (chunked): the cap is noticed while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = cloud
        .http
        .put(format!("{}/image/v2/images/{id}/file", cloud.mock.url()))
        .header("x-auth-token", cloud.token("alice").await)
        .header("content-type", OCTETS)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    let image = cloud.mock.state().glance().image(&id).unwrap();
    assert_eq!(image.status, ImageStatus::Queued);
    assert_eq!(image.size, None);
    let leftovers: Vec<_> = std::fs::read_dir(cloud.mock.state().data_dir().join("images")).unwrap().collect();
    assert!(leftovers.is_empty(), "partial files remain: {leftovers:?}");
    let exact = pattern(1024 * 1024, 3);
    assert_eq!(cloud.upload("alice", &id, &exact).await.status, 204, "an upload of exactly the cap fits");
}

#[tokio::test]
async fn client_disconnect_mid_upload_restores_queued() {
    use tokio::io::AsyncWriteExt;
    let cloud = Cloud::start().await;
    let img = cloud.create("alice", json!({"name": "cut", "disk_format": "raw", "container_format": "bare"})).await;
    let id = img["id"].as_str().unwrap().to_string();
    let token = cloud.token("alice").await;
    let mut socket = tokio::net::TcpStream::connect(cloud.mock.addr()).await.unwrap();
    let head = format!(
        "PUT /image/v2/images/{id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&pattern(256 * 1024, 4)).await.unwrap();
    let glance = cloud.mock.state().glance();
    let mut saw_saving = false;
    for _ in 0..200 {
        if glance.image(&id).unwrap().status == ImageStatus::Saving {
            saw_saving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(saw_saving, "the upload started");
    drop(socket);
    let mut restored = false;
    for _ in 0..500 {
        if glance.image(&id).unwrap().status == ImageStatus::Queued {
            restored = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(restored, "the image went back to queued");
    let leftovers: Vec<_> = std::fs::read_dir(cloud.mock.state().data_dir().join("images")).unwrap().collect();
    assert!(leftovers.is_empty(), "partial files remain: {leftovers:?}");
    assert_eq!(cloud.upload("alice", &id, b"second try").await.status, 204, "the upload can be retried");
}

#[tokio::test]
async fn schemas_info_and_unknown_routes() {
    let cloud = Cloud::start().await;
    let image = cloud.get("alice", "/v2/schemas/image").await.json();
    assert_eq!(image["name"], "image");
    assert_eq!(image["additionalProperties"], json!({"type": "string"}));
    for key in
        ["id", "name", "status", "visibility", "checksum", "os_hash_value", "disk_format", "tags", "self", "file"]
    {
        assert!(image["properties"].get(key).is_some(), "schema lacks {key}");
    }
    assert_eq!(image["properties"]["status"]["readOnly"], true);
    let images = cloud.get("alice", "/v2/schemas/images").await.json();
    assert_eq!(images["properties"]["images"]["items"], image);
    let members = cloud.get("alice", "/v2/schemas/members").await.json();
    assert_eq!(members["name"], "members");
    let import = cloud.get("alice", "/v2/info/import").await.json();
    assert_eq!(import["import-methods"]["type"], "array");
    check(
        &cloud,
        "alice",
        Method::GET,
        "/v2/info/stores",
        Send::Nothing,
        404,
        "Multi backend is not supported at this site.",
    )
    .await;
    check(&cloud, "alice", Method::GET, "/v2/nothing", Send::Nothing, 404, "The resource could not be found.").await;
    check(
        &cloud,
        "alice",
        Method::POST,
        "/v2/schemas/image",
        Send::Nothing,
        405,
        "The method POST is not allowed for this resource.",
    )
    .await;
}
