//! Nova v2.1 against a running mockstack over HTTP: versions and microversions, flavors, server create validation, lifecycle, actions, snapshots, consoles, isolation.

use std::time::Duration;

use mockstack::{ClockMode, Config, MockStack};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// A mockstack on a manual clock (1 s per request) and a client logged in as some users.
struct Cloud {
    mock: MockStack,
    http: Client,
}

struct Session {
    token: String,
    project_id: String,
}

impl Cloud {
    async fn start() -> Cloud {
        Cloud::with_config(Config { clock: ClockMode::Manual { tick: Duration::from_secs(1) }, ..Config::default() })
            .await
    }

    async fn with_config(config: Config) -> Cloud {
        let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Cloud { mock, http: Client::new() }
    }

    fn compute(&self, path: &str) -> String {
        format!("{}/compute/v2.1{path}", self.mock.url())
    }

    async fn login(&self, user: &str, project: &str) -> Session {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": format!("mockstack-{user}")
            }}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}
        }});
        let r = self.http.post(self.mock.auth_url() + "/auth/tokens").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "login {user}");
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        let v: Value = r.json().await.unwrap();
        Session { token, project_id: v["token"]["project"]["id"].as_str().unwrap().to_string() }
    }

    /// Calls the compute API at `version` (None: no microversion header).
    async fn call(
        &self,
        who: &Session,
        method: Method,
        path: &str,
        version: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, self.compute(path)).header("x-auth-token", &who.token);
        if let Some(v) = version {
            req = req.header("openstack-api-version", format!("compute {v}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, headers, value)
    }
}

/// Asserts a Nova fault body with `name`, `code` and `message`.
fn assert_fault(body: &Value, status: StatusCode, name: &str, message: &str) {
    assert_eq!(body[name]["code"], status.as_u16(), "{body}");
    assert_eq!(body[name]["message"], message, "{body}");
}

#[tokio::test]
async fn version_documents_and_microversion_negotiation() {
    let cloud = Cloud::start().await;
    let root: Value =
        cloud.http.get(format!("{}/compute/", cloud.mock.url())).send().await.unwrap().json().await.unwrap();
    let v21 = &root["versions"][1];
    assert_eq!(v21["id"], "v2.1");
    assert_eq!(v21["min_version"], "2.1");
    assert_eq!(v21["version"], "2.96");
    let r = cloud.http.get(cloud.compute("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["version"]["version"], "2.96");

    let alice = cloud.login("alice", "alpha").await;
    let (status, headers, _) = cloud.call(&alice, Method::GET, "/flavors", Some("2.60"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["openstack-api-version"], "compute 2.60");
    assert_eq!(headers["x-openstack-nova-api-version"], "2.60");
    let vary: Vec<&str> = headers.get_all("vary").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(vary, ["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]);

    let (status, headers, _) = cloud.call(&alice, Method::GET, "/flavors", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["openstack-api-version"], "compute 2.1");
    let (_, headers, _) = cloud.call(&alice, Method::GET, "/flavors", Some("latest"), None).await;
    assert_eq!(headers["openstack-api-version"], "compute 2.96");

    let legacy = cloud
        .http
        .get(cloud.compute("/flavors"))
        .header("x-auth-token", &alice.token)
        .header("x-openstack-nova-api-version", "2.25")
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.headers()["openstack-api-version"], "compute 2.25");

    let (status, headers, body) = cloud.call(&alice, Method::GET, "/flavors", Some("2.97"), None).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_fault(
        &body,
        status,
        "computeFault",
        "Version 2.97 is not supported by the API. Minimum is 2.1 and maximum is 2.96.",
    );
    assert!(headers.get("openstack-api-version").is_none(), "Nova sets no version on a refused version");
    let (status, _, body) = cloud.call(&alice, Method::GET, "/flavors", Some("2.x"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "API Version String 2.x is of invalid format. Must be of format MajorNum.MinorNum.",
    );
}

#[tokio::test]
async fn flavors_are_listed_per_microversion_and_managed_by_admins_only() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;

    let (_, _, list) = cloud.call(&alice, Method::GET, "/flavors", None, None).await;
    let names: Vec<&str> = list["flavors"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"m1.tiny") && names.contains(&"ds512M"), "{names:?}");
    assert!(list["flavors"][0].get("description").is_none());

    let (_, _, old) = cloud.call(&alice, Method::GET, "/flavors/1", Some("2.1"), None).await;
    assert_eq!(old["flavor"]["swap"], "");
    assert!(old["flavor"].get("extra_specs").is_none());
    let (_, _, new) = cloud.call(&alice, Method::GET, "/flavors/1", Some("2.75"), None).await;
    assert_eq!(new["flavor"]["swap"], 0);
    assert_eq!(new["flavor"]["description"], Value::Null);
    assert_eq!(new["flavor"]["extra_specs"], json!({}));
    assert_eq!(new["flavor"]["OS-FLV-EXT-DATA:ephemeral"], 0);
    assert_eq!(new["flavor"]["os-flavor-access:is_public"], true);

    let body = json!({"flavor": {"name": "win-install", "ram": 2048, "vcpus": 2, "disk": 40,
                                 "OS-FLV-EXT-DATA:ephemeral": 10, "id": "win-flavor"}});
    let (status, _, denied) = cloud.call(&alice, Method::POST, "/flavors", Some("2.75"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &denied,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.",
    );

    let (status, _, created) = cloud.call(&admin, Method::POST, "/flavors", Some("2.75"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["flavor"]["id"], "win-flavor");
    assert_eq!(created["flavor"]["OS-FLV-EXT-DATA:ephemeral"], 10);
    assert_eq!(created["flavor"]["swap"], 0);
    let (status, _, again) = cloud.call(&admin, Method::POST, "/flavors", Some("2.75"), Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(&again, status, "conflictingRequest", "Flavor with name win-install already exists.");

    let bad = json!({"flavor": {"name": "x", "ram": 0, "vcpus": 1, "disk": 1}});
    let (status, _, err) = cloud.call(&admin, Method::POST, "/flavors", None, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &err,
        status,
        "badRequest",
        "Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1",
    );

    let specs = json!({"extra_specs": {"hw:cpu_policy": "shared"}});
    let (status, _, _) =
        cloud.call(&alice, Method::POST, "/flavors/win-flavor/os-extra_specs", None, Some(specs.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) =
        cloud.call(&admin, Method::POST, "/flavors/win-flavor/os-extra_specs", None, Some(specs)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, shown) = cloud.call(&alice, Method::GET, "/flavors/win-flavor", Some("2.61"), None).await;
    assert_eq!(shown["flavor"]["extra_specs"]["hw:cpu_policy"], "shared");

    let (status, _, _) = cloud.call(&alice, Method::DELETE, "/flavors/win-flavor", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = cloud.call(&admin, Method::DELETE, "/flavors/win-flavor", None, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, gone) = cloud.call(&alice, Method::GET, "/flavors/win-flavor", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&gone, status, "itemNotFound", "Flavor win-flavor could not be found.");

    let (status, _, err) = cloud.call(&alice, Method::GET, "/flavors?bogus=1", Some("2.75"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&err, status, "badRequest", "Additional properties are not allowed ('bogus' was unexpected)");
}

/// One server-create request and the 400/403 Nova answers it with.
async fn check_create(cloud: &Cloud, who: &Session, version: &str, server: Value, status: StatusCode, message: &str) {
    let (got, _, body) =
        cloud.call(who, Method::POST, "/servers", Some(version), Some(json!({ "server": server }))).await;
    assert_eq!(got, status, "{server} -> {body}");
    let name = if status == StatusCode::FORBIDDEN { "forbidden" } else { "badRequest" };
    assert_fault(&body, status, name, message);
}

#[tokio::test]
async fn server_create_is_validated_like_nova() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let reader = cloud.login("alpha-reader", "alpha").await;
    let image = "11111111-1111-1111-1111-111111111111";
    let ok = StatusCode::BAD_REQUEST;
    let cases = [
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image}), ok,
         format!("Invalid input for field/attribute server. Value: {{'name': 'a', 'flavorRef': '1', 'imageRef': '{image}'}}. 'networks' is a required property")),
        ("2.36", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "none"}), ok,
         "Invalid input for field/attribute networks. Value: none. 'none' is not of type 'array'".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "nothing"}), ok,
         "Invalid input for field/attribute networks. Value: nothing. 'nothing' is not valid under any of the given schemas".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": "cirros", "networks": "none"}), ok,
         "Invalid input for field/attribute imageRef. Value: cirros. 'cirros' is not valid under any of the given schemas".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "networks": "none"}), ok, "Missing imageRef attribute".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "auto"}), ok,
         format!("Unable to automatically allocate a network for project {}", alice.project_id)),
        ("2.37", json!({"name": "a", "flavorRef": "nope", "imageRef": image, "networks": "none"}), ok,
         "Flavor nope could not be found.".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "none"}), ok,
         "Can not find requested image".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "none", "block_device_mapping_v2": [
            {"source_type": "blank", "uuid": image, "destination_type": "local", "boot_index": 0}]}), ok,
         "Block Device Mapping is Invalid: Invalid device UUID.".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "none", "block_device_mapping_v2": [
            {"source_type": "image", "uuid": image, "destination_type": "local", "boot_index": 2}]}), ok,
         "Block Device Mapping is Invalid: Mapping image to local is not supported.".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "networks": "none", "min_count": 2, "max_count": 1,
                        "imageRef": image}), ok, "min_count must be <= max_count".into()),
        ("2.37", json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "none", "user": "x"}), ok,
         format!("Invalid input for field/attribute server. Value: {{'name': 'a', 'flavorRef': '1', 'imageRef': '{image}', 'networks': 'none', 'user': 'x'}}. Additional properties are not allowed ('user' was unexpected)")),
    ];
    for (version, server, status, message) in cases {
        check_create(&cloud, &alice, version, server, status, &message).await;
    }
    check_create(
        &cloud,
        &reader,
        "2.37",
        json!({"name": "a", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        StatusCode::FORBIDDEN,
        "Policy doesn't allow os_compute_api:servers:create to be performed.",
    )
    .await;

    let raw = cloud
        .http
        .post(cloud.compute("/servers"))
        .header("x-auth-token", &alice.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_fault(&raw.json().await.unwrap(), StatusCode::BAD_REQUEST, "badRequest", "Malformed request body");

    let (status, _, body) = cloud.call(&alice, Method::GET, "/servers/nope", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", "Instance nope could not be found.");
    let (status, _, body) = cloud.call(&alice, Method::GET, "/no-such-thing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", "The resource could not be found.");
    let (status, _, body) = cloud.call(&alice, Method::GET, "/servers?all_tenants=1", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.",
    );
    let (status, _, body) = cloud.call(&alice, Method::GET, "/servers/detail?status=WRONG", Some("2.38"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Invalid status value");
}
