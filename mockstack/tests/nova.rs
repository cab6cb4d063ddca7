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
    /// A manual clock that moves only when a test advances it, so every transient state is seen; a patched host
    /// with no driver media configured (`[libvirt] virtio_win_image` unset), as these tests' Linux guests need none.
    async fn start() -> Cloud {
        Cloud::with_config(Config { clock: ClockMode::Manual { tick: Duration::ZERO }, ..no_driver_media() }).await
    }

    fn advance(&self, seconds: u64) {
        self.mock.state().clock().advance(Duration::from_secs(seconds));
    }

    /// Uploads a small ISO 9660 installer (a guest descriptor inside) as `who`; returns its id.
    async fn upload_iso(&self, who: &Session, name: &str, properties: Value) -> String {
        let mut body = json!({"name": name, "disk_format": "iso", "container_format": "bare", "min_ram": 512});
        for (k, v) in properties.as_object().unwrap() {
            body[k] = v.clone();
        }
        let url = format!("{}/image/v2/images", self.mock.url());
        let r = self.http.post(&url).header("x-auth-token", &who.token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let image: Value = r.json().await.unwrap();
        let id = image["id"].as_str().unwrap().to_string();
        let r = self
            .http
            .put(format!("{url}/{id}/file"))
            .header("x-auth-token", &who.token)
            .header("content-type", "application/octet-stream")
            .body(installer_iso())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        id
    }

    /// Boots `name` from a fresh installer ISO as `who`, with no network; returns the server's id (still building).
    async fn boot_installer(&self, who: &Session, name: &str) -> String {
        let image = self.upload_iso(who, "installer", json!({})).await;
        let create = json!({"server": {"name": name, "imageRef": image, "flavorRef": "d1", "networks": "none"}});
        let (_, _, created) = self.call(who, Method::POST, "/servers", Some("2.37"), Some(create)).await;
        created["server"]["id"].as_str().unwrap().to_string()
    }

    async fn image(&self, who: &Session, id: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}/image/v2/images/{id}", self.mock.url()))
            .header("x-auth-token", &who.token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn server(&self, who: &Session, id: &str, version: &str) -> Value {
        let (status, _, body) = self.call(who, Method::GET, &format!("/servers/{id}"), Some(version), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["server"].clone()
    }

    async fn action(&self, who: &Session, id: &str, version: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) =
            self.call(who, Method::POST, &format!("/servers/{id}/action"), Some(version), Some(body)).await;
        (status, body)
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

/// The default configuration with the driver-media options unset: an ISO boot on the patched host gets no driver
/// CD-ROM, rather than the fault an option naming a missing image gives.
fn no_driver_media() -> Config {
    Config { virtio_win_image: None, driver_floppy_image: None, ..Config::default() }
}

/// A Linux installer ISO as `isoharness media` writes them (a small guest descriptor inside).
fn installer_iso() -> Vec<u8> {
    let facts: guestsim::guest::GuestFacts = toml::from_str(
        r#"
name = "Ubuntu 24.04 LTS"
family = "linux"
release = "24.04"
distro = "ubuntu"
arch = "x86_64"
virtio_storage = "built-in"
firmware = "bios"
min_ram_mb = 512
min_disk_gb = 1
install_seconds = 60
boot_seconds = 10
agent = "cloud-init"
"#,
    )
    .unwrap();
    let mut out = Vec::new();
    guestsim::media::os_iso::os_installer_iso(&facts, &Default::default(), &mut out).unwrap();
    out
}

/// (status, vm_state, task_state, power_state) of a server view.
fn states(server: &Value) -> (String, String, Value, u64) {
    (
        server["status"].as_str().unwrap().to_string(),
        server["OS-EXT-STS:vm_state"].as_str().unwrap().to_string(),
        server["OS-EXT-STS:task_state"].clone(),
        server["OS-EXT-STS:power_state"].as_u64().unwrap(),
    )
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
    assert_eq!(v21["version"], "2.100");
    let r = cloud.http.get(cloud.compute("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["version"]["version"], "2.100");

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
    assert_eq!(headers["openstack-api-version"], "compute 2.100");

    let legacy = cloud
        .http
        .get(cloud.compute("/flavors"))
        .header("x-auth-token", &alice.token)
        .header("x-openstack-nova-api-version", "2.25")
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.headers()["openstack-api-version"], "compute 2.25");

    let (status, headers, _) = cloud.call(&alice, Method::GET, "/flavors", Some("2.100"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["openstack-api-version"], "compute 2.100");
    let (status, headers, body) = cloud.call(&alice, Method::GET, "/flavors", Some("2.101"), None).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_fault(
        &body,
        status,
        "computeFault",
        "Version 2.101 is not supported by the API. Minimum is 2.1 and maximum is 2.100.",
    );
    // Nova 34 echoes a well-formed refused version (seen on the local real cloud by the parity suite).
    assert_eq!(headers["openstack-api-version"], "compute 2.101");
    assert_eq!(headers["x-openstack-nova-api-version"], "2.101");
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

    // Pages: a full page carries a `next` link with the marker set to its last flavor.
    let (_, _, page) = cloud.call(&alice, Method::GET, "/flavors?limit=2", None, None).await;
    let ids: Vec<&str> = page["flavors"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2"], "flavors sort by flavorid");
    let next = page["flavors_links"][0]["href"].as_str().unwrap();
    assert_eq!(next, cloud.compute("/flavors?limit=2&marker=2"));
    let (_, _, page) =
        cloud.call(&alice, Method::GET, next.strip_prefix(&cloud.compute("")).unwrap(), None, None).await;
    assert_eq!(page["flavors"][0]["id"], "3");
    let (_, _, all) = cloud.call(&alice, Method::GET, "/flavors", None, None).await;
    assert!(all.get("flavors_links").is_none());

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
    // No route: nova-api's router answers with webob's own 404 body, not a Nova fault.
    let (status, _, body) = cloud.call(&alice, Method::GET, "/no-such-thing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "404 Not Found");
    assert_eq!(body["message"], "The resource could not be found.<br /><br />\n\n\n");
    let (status, _, _) = cloud.call(&alice, Method::PATCH, "/servers", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "routes match on method too");
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

#[tokio::test]
async fn a_server_goes_through_nova_states_on_the_virtual_clock() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    let image = cloud.upload_iso(&alice, "ubuntu-installer", json!({"os_type": "linux", "hw_cdrom_bus": "ide"})).await;

    let create = json!({"server": {"name": "install box", "imageRef": image, "flavorRef": "d1", "networks": "none"}});
    let (status, headers, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"].to_str().unwrap(), cloud.compute(&format!("/servers/{id}")));
    assert_eq!(created["server"]["security_groups"], json!([{"name": "default"}]));
    assert_eq!(created["server"]["OS-DCF:diskConfig"], "MANUAL");
    assert_eq!(created["server"]["adminPass"].as_str().unwrap().len(), 12);

    let expect = [
        (0, ("BUILD", "building", json!("scheduling"), 0)),
        (1, ("BUILD", "building", json!("block_device_mapping"), 0)),
        (1, ("BUILD", "building", json!("spawning"), 0)),
        (3, ("ACTIVE", "active", Value::Null, 1)),
    ];
    for (advance, (status, vm, task, power)) in expect {
        cloud.advance(advance);
        let server = cloud.server(&alice, &id, "2.96").await;
        assert_eq!(states(&server), (status.to_string(), vm.to_string(), task, power));
    }

    let mine = cloud.server(&alice, &id, "2.96").await;
    assert_eq!(mine["name"], "install box");
    assert_eq!(mine["image"]["id"], image.as_str());
    assert_eq!(mine["flavor"]["original_name"], "ds512M");
    assert_eq!(mine["flavor"]["disk"], 5);
    assert_eq!(mine["addresses"], json!({}));
    assert_eq!(mine["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(mine["OS-EXT-SRV-ATTR:hostname"], "install-box");
    assert_eq!(mine["pinned_availability_zone"], Value::Null);
    assert_eq!(mine["locked"], false);
    assert_eq!(mine["locked_reason"], Value::Null);
    assert_eq!(mine["tags"], json!([]));
    assert_eq!(mine["server_groups"], json!([]));
    assert!(mine["OS-SRV-USG:launched_at"].is_string());
    assert!(mine.get("OS-EXT-SRV-ATTR:host").is_none(), "extended attributes are admin-only");
    assert!(mine.get("host_status").is_none());
    let old = cloud.server(&alice, &id, "2.1").await;
    assert_eq!(old["flavor"]["id"], "d1");
    assert!(old.get("locked").is_none() && old.get("description").is_none());

    let seen_by_admin = cloud.server(&admin, &id, "2.96").await;
    assert_eq!(seen_by_admin["OS-EXT-SRV-ATTR:host"], "mockstack-compute");
    assert_eq!(seen_by_admin["OS-EXT-SRV-ATTR:hypervisor_hostname"], "mockstack-compute");
    assert!(seen_by_admin["OS-EXT-SRV-ATTR:instance_name"].as_str().unwrap().starts_with("instance-0000"));
    assert_eq!(seen_by_admin["host_status"], "UP");
    assert_eq!(seen_by_admin["OS-EXT-SRV-ATTR:root_device_name"], "/dev/vda");

    // Actions that do not fit the state are refused with Nova's wording.
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-start": null})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        &format!("Cannot 'start' instance {id} while it is in vm_state active"),
    );

    let (status, _) = cloud.action(&alice, &id, "2.96", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        states(&cloud.server(&alice, &id, "2.96").await),
        ("ACTIVE".into(), "active".into(), json!("powering-off"), 1)
    );
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"reboot": {"type": "HARD"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        &format!("Cannot 'reboot' instance {id} while it is in task_state powering-off"),
    );
    cloud.advance(2);
    assert_eq!(states(&cloud.server(&alice, &id, "2.96").await), ("SHUTOFF".into(), "stopped".into(), Value::Null, 4));
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        &format!("Cannot 'stop' instance {id} while it is in vm_state stopped"),
    );
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"reboot": {"type": "SOFT"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        &format!("Cannot 'reboot' instance {id} while it is in vm_state stopped"),
    );

    let (status, _) = cloud.action(&alice, &id, "2.96", json!({"os-start": null})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        states(&cloud.server(&alice, &id, "2.96").await),
        ("SHUTOFF".into(), "stopped".into(), json!("powering-on"), 4)
    );
    cloud.advance(2);
    assert_eq!(states(&cloud.server(&alice, &id, "2.96").await).0, "ACTIVE");

    let (status, _) = cloud.action(&alice, &id, "2.96", json!({"reboot": {"type": "soft"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for task in ["rebooting", "reboot_pending", "reboot_started"] {
        let server = cloud.server(&alice, &id, "2.96").await;
        assert_eq!((server["status"].as_str().unwrap(), &server["OS-EXT-STS:task_state"]), ("REBOOT", &json!(task)));
        cloud.advance(1);
    }
    assert_eq!(states(&cloud.server(&alice, &id, "2.96").await), ("ACTIVE".into(), "active".into(), Value::Null, 1));

    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"reboot": {"type": "sideways"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "Invalid input for field/attribute type. Value: sideways. 'sideways' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']",
    );
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-dance": null})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "There is no such action: os-dance");

    // Instance actions: newest first, with compute events for everyone from 2.51.
    let (_, _, actions) =
        cloud.call(&alice, Method::GET, &format!("/servers/{id}/os-instance-actions"), Some("2.84"), None).await;
    let names: Vec<&str> =
        actions["instanceActions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(names, ["reboot", "start", "stop", "create"]);
    let create_action = &actions["instanceActions"][3];
    assert_eq!(create_action["user_id"], cloud.mock.state().identities().user_by_name("alice").unwrap().id.as_str());
    assert_eq!(create_action["project_id"], alice.project_id.as_str());
    let request_id = create_action["request_id"].as_str().unwrap();
    assert!(request_id.starts_with("req-"));
    let path = format!("/servers/{id}/os-instance-actions/{request_id}");
    let (_, _, shown) = cloud.call(&alice, Method::GET, &path, Some("2.84"), None).await;
    let event = &shown["instanceAction"]["events"][0];
    assert_eq!(event["event"], "compute__do_build_and_run_instance");
    assert_eq!(event["result"], "Success");
    assert!(event.get("traceback").is_none() && event.get("host").is_none() && event["hostId"].is_string());
    let (_, _, shown) = cloud.call(&alice, Method::GET, &path, Some("2.50"), None).await;
    assert!(shown["instanceAction"].get("events").is_none());
    let (_, _, shown) = cloud.call(&admin, Method::GET, &path, Some("2.84"), None).await;
    assert_eq!(shown["instanceAction"]["events"][0]["host"], "mockstack-compute");

    // The mock's `virsh dumpxml`.
    let xml_url = format!("{}/mockstack/servers/{id}/domain.xml", cloud.mock.url());
    let r = cloud.http.get(&xml_url).header("x-auth-token", &admin.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let xml = r.text().await.unwrap();
    assert!(xml.contains(&format!("<uuid>{id}</uuid>")), "{xml}");
    assert_eq!(cloud.mock.state().nova().domain_xml(&id).as_deref(), Some(xml.as_str()));
    let r = cloud.http.get(&xml_url).header("x-auth-token", &alice.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Delete: deleting, then gone; its actions stay readable from 2.21.
    let (status, _, _) = cloud.call(&alice, Method::DELETE, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(cloud.server(&alice, &id, "2.96").await["OS-EXT-STS:task_state"], "deleting");
    cloud.advance(1);
    let (status, _, body) = cloud.call(&alice, Method::GET, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", &format!("Instance {id} could not be found."));
    let (status, _, actions) =
        cloud.call(&alice, Method::GET, &format!("/servers/{id}/os-instance-actions"), Some("2.21"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(actions["instanceActions"][0]["action"], "delete");
    let (status, _, _) =
        cloud.call(&alice, Method::GET, &format!("/servers/{id}/os-instance-actions"), Some("2.20"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn projects_are_isolated_and_admins_see_all() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let bob = cloud.login("bob", "beta").await;
    let reader = cloud.login("alpha-reader", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    let image = cloud.upload_iso(&alice, "private-installer", json!({})).await;

    let create = |image: &str, name: &str| json!({"server": {"name": name, "imageRef": image, "flavorRef": "1", "networks": "none"}});
    let (status, _, body) = cloud.call(&bob, Method::POST, "/servers", Some("2.37"), Some(create(&image, "b"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Can not find requested image");
    let (status, _, created) =
        cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create(&image, "web-1"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = created["server"]["id"].as_str().unwrap().to_string();

    let (status, _, _) = cloud.call(&bob, Method::GET, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = cloud.call(&bob, Method::DELETE, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = cloud.action(&bob, &id, "2.1", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, list) = cloud.call(&bob, Method::GET, "/servers", None, None).await;
    assert_eq!(list["servers"], json!([]));

    let (_, _, list) = cloud.call(&reader, Method::GET, "/servers?name=^web", None, None).await;
    assert_eq!(list["servers"][0]["id"], id.as_str());
    let (_, _, list) = cloud.call(&reader, Method::GET, "/servers?name=^db", None, None).await;
    assert_eq!(list["servers"], json!([]));
    let (status, _, body) = cloud.call(&reader, Method::DELETE, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(&body, status, "forbidden", "Policy doesn't allow os_compute_api:servers:delete to be performed.");

    let (_, _, mine) = cloud.call(&admin, Method::GET, "/servers/detail", None, None).await;
    assert_eq!(mine["servers"], json!([]), "without all_tenants an admin lists its own project");
    let (_, _, all) = cloud.call(&admin, Method::GET, "/servers/detail?all_tenants=True", Some("2.96"), None).await;
    assert_eq!(all["servers"][0]["id"], id.as_str());
    assert!(all["servers"][0]["OS-EXT-SRV-ATTR:instance_name"].is_string());
    assert!(all["servers"][0].get("server_groups").is_none(), "detail views leave server_groups out");
    let (_, _, by_status) = cloud.call(&admin, Method::GET, "/servers?all_tenants=1&status=ACTIVE", None, None).await;
    assert_eq!(by_status["servers"], json!([]), "still building");
    cloud.advance(5);
    let (_, _, by_status) = cloud.call(&admin, Method::GET, "/servers?all_tenants=1&status=ACTIVE", None, None).await;
    assert_eq!(by_status["servers"][0]["id"], id.as_str());
}

#[tokio::test]
async fn quotas_and_flavor_fit_are_checked() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let image = cloud.upload_iso(&alice, "installer", json!({"min_disk": 8})).await;
    let create = |flavor: &str, count: u32| json!({"server": {"name": "q", "imageRef": image, "flavorRef": flavor, "networks": "none", "min_count": count}});
    let (status, _, body) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create("d1", 1))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is 5368709120 bytes, minimum size is 8589934592 bytes.",
    );
    let (status, _, body) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create("42", 1))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Flavor's memory is too small for requested image.");
    // The largest min_disk Glance stores, in bytes, is far past 2^32: no product of sizes may wrap.
    let huge = cloud.upload_iso(&alice, "huge", json!({"min_disk": 2_147_483_647u64})).await;
    let fits = json!({"server": {"name": "h", "imageRef": huge, "flavorRef": "d1", "networks": "none"}});
    let (status, _, body) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(fits)).await;
    assert_fault(
        &body,
        status,
        "badRequest",
        "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is 5368709120 bytes, minimum size is 2305843008139952128 bytes.",
    );
    let (status, _, body) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create("5", 4))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Quota exceeded for cores, ram: Requested 32, 65536, but already used 0, 0 of 20, 51200 cores, ram",
    );
    let zone = |az: &str| json!({"server": {"name": "z", "imageRef": image, "flavorRef": "d2", "networks": "none", "availability_zone": az}});
    let (status, _, body) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(zone("mars"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "The requested availability zone is not available");
    let (status, _, body) =
        cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(zone("nova:mockstack-compute"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:servers:create:forced_host to be performed.",
    );
    let (status, _, _) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create("d2", 2))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, _, list) = cloud.call(&alice, Method::GET, "/servers", None, None).await;
    let mut names: Vec<&str> =
        list["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["q-1", "q-2"]);
}

#[tokio::test]
async fn create_image_makes_a_snapshot_record_in_glance() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let base = cloud
        .upload_iso(
            &alice,
            "installer",
            json!({"os_type": "linux", "hw_cdrom_bus": "ide", "img_signature": "sig", "min_disk": 2}),
        )
        .await;
    let create = json!({"server": {"name": "snap-me", "imageRef": base, "flavorRef": "d1", "networks": "none"}});
    let (_, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    let id = created["server"]["id"].as_str().unwrap().to_string();

    let (status, body) = cloud.action(&alice, &id, "2.45", json!({"createImage": {"name": "early"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        &format!("Cannot 'createImage' instance {id} while it is in vm_state building"),
    );
    cloud.advance(5);

    let (status, body) = cloud
        .action(&alice, &id, "2.45", json!({"createImage": {"name": "installed", "metadata": {"purpose": "test"}}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let image_id = body["image_id"].as_str().unwrap().to_string();
    let server = cloud.server(&alice, &id, "2.96").await;
    assert_eq!(server["OS-EXT-STS:task_state"], "image_snapshot_pending");
    let (status, body) = cloud.action(&alice, &id, "2.45", json!({"createImage": {"name": "second"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        &format!("Cannot 'createImage' instance {id} while it is in task_state image_snapshot_pending"),
    );

    let (status, image) = cloud.image(&alice, &image_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image["status"], "queued");
    assert_eq!(image["name"], "installed");
    assert_eq!(image["visibility"], "private");
    assert_eq!(image["owner"], alice.project_id.as_str());
    assert_eq!(image["min_disk"], 5, "the flavor's root disk is larger than the image's min_disk");
    assert_eq!(image["min_ram"], 512);
    assert_eq!(image["image_type"], "snapshot");
    assert_eq!(image["instance_uuid"], id.as_str());
    assert_eq!(image["base_image_ref"], base.as_str());
    assert_eq!(image["user_id"], cloud.mock.state().identities().user_by_name("alice").unwrap().id.as_str());
    assert_eq!(image["owner_user_name"], "alice");
    assert_eq!(image["owner_project_name"], "alpha");
    assert_eq!(image["os_type"], "linux");
    assert_eq!(image["hw_cdrom_bus"], "ide");
    assert_eq!(image["purpose"], "test");
    assert!(image.get("img_signature").is_none(), "signatures are never inherited");
    assert_eq!(image["disk_format"], Value::Null);

    for task in ["image_snapshot", "image_pending_upload", "image_uploading"] {
        cloud.advance(1);
        assert_eq!(cloud.server(&alice, &id, "2.96").await["OS-EXT-STS:task_state"], task);
    }
    let (_, uploading) = cloud.image(&alice, &image_id).await;
    assert_eq!(uploading["status"], "saving");
    assert_eq!(uploading["disk_format"], "qcow2");
    assert_eq!(uploading["container_format"], "bare");
    assert_eq!(uploading["image_location"], "snapshot");
    assert_eq!(uploading["owner_id"], alice.project_id.as_str());

    let (status, headers, body) = cloud
        .call(
            &alice,
            Method::POST,
            &format!("/servers/{id}/action"),
            Some("2.44"),
            Some(json!({"createImage": {"name": "old"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(headers.get("location").is_none());
}

#[tokio::test]
async fn a_build_the_host_cannot_do_ends_in_error_with_novas_fault() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    // libvirt refuses IDE on q35: a spawn error, which Nova reschedules until it runs out of hosts.
    let image = cloud.upload_iso(&alice, "q35-ide", json!({"hw_machine_type": "q35", "hw_cdrom_bus": "ide"})).await;
    let create = json!({"server": {"name": "doomed", "imageRef": image, "flavorRef": "d1", "networks": "none"}});
    let (_, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(2);
    let server = cloud.server(&alice, &id, "2.96").await;
    assert_eq!(states(&server), ("ERROR".into(), "error".into(), Value::Null, 0));
    assert_eq!(server["fault"]["code"], 500);
    assert_eq!(
        server["fault"]["message"],
        format!(
            "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {id}."
        )
    );
    assert!(server["fault"].get("details").is_none(), "details of a 500 fault are for admins");
    assert!(server["fault"]["created"].is_string());
    assert!(server.get("progress").is_none());
    let seen_by_admin = cloud.server(&admin, &id, "2.96").await;
    assert!(seen_by_admin["fault"]["details"].as_str().unwrap().contains("IDE controllers are unsupported"));
    assert_eq!(seen_by_admin["OS-EXT-SRV-ATTR:host"], Value::Null);

    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(&body, status, "conflictingRequest", &format!("Instance {id} is not ready"));
    let (status, _, _) = cloud.call(&alice, Method::DELETE, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = cloud.call(&alice, Method::GET, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a server on no host is deleted at once");

    // An invalid image property is a BuildAbortException: its reason is in the message.
    let image = cloud.upload_iso(&alice, "bad-bus", json!({"hw_disk_bus": "nvme-over-carrier-pigeon"})).await;
    let create = json!({"server": {"name": "aborted", "imageRef": image, "flavorRef": "d1", "networks": "none"}});
    let (_, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(2);
    let server = cloud.server(&alice, &id, "2.96").await;
    assert_eq!(server["status"], "ERROR");
    let message = server["fault"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("Build of instance {id} aborted: ")), "{message}");
}

#[tokio::test]
async fn consoles_follow_the_microversion_split_at_2_6() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let id = cloud.boot_installer(&alice, "console-box").await;
    let (status, body) = cloud.action(&alice, &id, "2.5", json!({"os-getVNCConsole": {"type": "novnc"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(&body, status, "conflictingRequest", &format!("Instance {id} is not ready"));
    cloud.advance(5);

    // The installer runs: its console is there, the last `length` lines of it.
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-getConsoleOutput": {"length": 5}})).await;
    assert_eq!(status, StatusCode::OK);
    let full = cloud.mock.state().nova().server(&id).unwrap().console_output(cloud.mock.state().clock().elapsed());
    assert!(!full.is_empty());
    assert_eq!(body["output"], mockstack::nova::server_actions::tail(&full, Some(5)).as_str());

    let (status, body) = cloud.action(&alice, &id, "2.5", json!({"os-getVNCConsole": {"type": "novnc"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["console"]["type"], "novnc");
    let vnc = body["console"]["url"].as_str().unwrap().to_string();
    assert!(vnc.starts_with(&format!("{}/mockstack/vnc_lite.html?path=%3Ftoken%3D", cloud.mock.url())), "{vnc}");
    let page = cloud.http.get(&vnc).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("console-box"));
    let forged = cloud
        .http
        .get(format!("{}/mockstack/vnc_lite.html?path=%3Ftoken%3Dforged", cloud.mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);

    // SPICE is not enabled on the compute host (Nova's default), so the manager refuses it.
    let (status, body) = cloud.action(&alice, &id, "2.5", json!({"os-getSPICEConsole": {"type": "spice-html5"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Unavailable console type spice-html5.");
    let (status, body) = cloud.action(&alice, &id, "2.5", json!({"os-getVNCConsole": {"type": "xvpvnc"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Invalid console type xvpvnc");
    let (status, _) = cloud.action(&alice, &id, "2.6", json!({"os-getVNCConsole": {"type": "novnc"}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the legacy actions end at 2.5");

    let path = format!("/servers/{id}/remote-consoles");
    let (status, _, _) = cloud
        .call(
            &alice,
            Method::POST,
            &path,
            Some("2.5"),
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = cloud
        .call(
            &alice,
            Method::POST,
            &path,
            Some("2.6"),
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["remote_console"]["protocol"], "vnc");
    assert_eq!(body["remote_console"]["type"], "novnc");
    let (status, _, body) = cloud
        .call(
            &alice,
            Method::POST,
            &path,
            Some("2.6"),
            Some(json!({"remote_console": {"protocol": "serial", "type": "serial"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Unavailable console type serial.");
    let (status, _, body) = cloud
        .call(
            &alice,
            Method::POST,
            &path,
            Some("2.6"),
            Some(json!({"remote_console": {"protocol": "mks", "type": "webmks"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "mks arrives in 2.8: {body}");
    let spice = |console_type: &str| json!({"remote_console": {"protocol": "spice", "type": console_type}});
    let (status, _, body) = cloud.call(&alice, Method::POST, &path, Some("2.98"), Some(spice("spice-direct"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "Invalid input for field/attribute type. Value: spice-direct. 'spice-direct' is not one of \
         ['novnc', 'xvpvnc', 'spice-html5', 'serial', 'rdp-html5', 'webmks']",
    );
    for (version, console_type) in [("2.6", "spice-html5"), ("2.99", "spice-html5"), ("2.99", "spice-direct")] {
        let (status, _, body) = cloud.call(&alice, Method::POST, &path, Some(version), Some(spice(console_type))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version} {console_type}");
        assert_fault(&body, status, "badRequest", &format!("Unavailable console type {console_type}."));
    }

    let (status, _) = cloud.action(&alice, &id, "2.96", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    cloud.advance(2);
    let (status, _, body) = cloud
        .call(
            &alice,
            Method::POST,
            &path,
            Some("2.96"),
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Unavailable console type vnc.");

    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-getConsoleOutput": {"length": "x"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "Invalid input for field/attribute length. Value: x. 'x' does not match '^-?[0-9]+$'",
    );
}

#[tokio::test]
async fn console_urls_live_for_the_token_ttl_and_die_with_their_server() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let id = cloud.boot_installer(&alice, "console-box").await;
    cloud.advance(5);
    let open = || async {
        let (status, body) = cloud.action(&alice, &id, "2.5", json!({"os-getVNCConsole": {"type": "novnc"}})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["console"]["url"].as_str().unwrap().to_string()
    };
    let http = cloud.http.clone();
    let page_status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };

    // Both tokens are taken while the installer runs (VNC needs a running domain), a minute apart; every request
    // ticks the manual clock a second, so the checks keep half a minute from the edges.
    let ttl = mockstack::nova::consoles::CONSOLE_TOKEN_TTL.as_secs();
    let first = open().await;
    cloud.advance(60);
    let second = open().await;
    cloud.advance(ttl - 60 - 30);
    assert_eq!(page_status(first.clone()).await, StatusCode::OK, "a token lives its whole TTL");
    cloud.advance(60);
    assert_eq!(page_status(first).await, StatusCode::NOT_FOUND, "a token is dead once its TTL has passed");
    assert_eq!(page_status(second.clone()).await, StatusCode::OK);

    let (status, _, _) = cloud.call(&alice, Method::DELETE, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    cloud.advance(5);
    assert_eq!(page_status(second).await, StatusCode::NOT_FOUND, "a deleted server's tokens die with it");
}

/// What one layout makes of an unattended Linux install: the snapshot's content and what a
/// server booted from it does.
struct LayoutCase {
    layout: guestsim::Layout,
    snapshot_is_installed: bool,
}

async fn install_snapshot_and_boot(case: &LayoutCase) {
    let config = Config { clock: ClockMode::Manual { tick: Duration::ZERO }, layout: case.layout, ..no_driver_media() };
    let cloud = Cloud::with_config(config).await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    // Stock Nova installs onto the ephemeral disk, so the flavor has one.
    let flavor = json!({"flavor": {"name": "install", "ram": 1024, "vcpus": 1, "disk": 2, "OS-FLV-EXT-DATA:ephemeral": 2, "id": "install"}});
    let (status, _, _) = cloud.call(&admin, Method::POST, "/flavors", None, Some(flavor)).await;
    assert_eq!(status, StatusCode::OK);
    let iso = cloud.upload_iso(&alice, "ubuntu-installer", json!({"os_type": "linux", "os_distro": "ubuntu"})).await;
    let create = json!({"server": {"name": "installer", "imageRef": iso, "flavorRef": "install", "networks": "none"}});
    let (_, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(5);
    assert_eq!(cloud.server(&alice, &id, "2.96").await["status"], "ACTIVE");

    // The guest's own timeline decides when it powers off; Nova notices 15 s later.
    let record = cloud.mock.state().nova().server(&id).unwrap();
    let off_after = record.guest.as_ref().unwrap().power_off_at.expect("an unattended install powers off");
    let started = record.run_started.unwrap();
    let now = cloud.mock.state().clock().elapsed();
    cloud.advance((started + off_after - now).as_secs() + 1);
    let server = cloud.server(&alice, &id, "2.96").await;
    assert_eq!(states(&server), ("ACTIVE".into(), "active".into(), Value::Null, 4), "shut down by itself");
    cloud.advance(15);
    assert_eq!(cloud.server(&alice, &id, "2.96").await["OS-EXT-STS:task_state"], "powering-off");
    cloud.advance(2);
    assert_eq!(states(&cloud.server(&alice, &id, "2.96").await), ("SHUTOFF".into(), "stopped".into(), Value::Null, 4));
    let (_, _, actions) =
        cloud.call(&alice, Method::GET, &format!("/servers/{id}/os-instance-actions"), None, None).await;
    assert_eq!(actions["instanceActions"][0]["action"], "stop");
    assert_eq!(actions["instanceActions"][0]["user_id"], Value::Null, "Nova's power sync acts as itself");
    // As on a libvirt host, a guest that is not running has no console to read.
    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"os-getConsoleOutput": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", "Guest does not have a console available.");

    let (status, body) = cloud.action(&alice, &id, "2.96", json!({"createImage": {"name": "after-install"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let snapshot = body["image_id"].as_str().unwrap().to_string();
    cloud.advance(4);
    assert_eq!(cloud.server(&alice, &id, "2.96").await["OS-EXT-STS:task_state"], Value::Null);
    let (_, image) = cloud.image(&alice, &snapshot).await;
    assert_eq!(image["status"], "active", "{image}");
    assert_eq!(image["disk_format"], "qcow2");
    assert_eq!(image["os_distro"], "ubuntu");
    let data = cloud.mock.state().glance().data_path(&snapshot).unwrap();
    let content = guestsim::hypervisor::inspect(&data).unwrap();
    if case.snapshot_is_installed {
        assert!(matches!(content, guestsim::hypervisor::DiskContent::Installed(_)), "{:?}: {content:?}", case.layout);
    } else {
        assert!(matches!(content, guestsim::hypervisor::DiskContent::Iso9660 { .. }), "{:?}: {content:?}", case.layout);
    }

    let boot =
        json!({"server": {"name": "from-snapshot", "imageRef": snapshot, "flavorRef": "install", "networks": "none"}});
    let (status, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(boot)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let booted = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(120);
    let shown = cloud.server(&alice, &booted, "2.96").await;
    let guest = cloud.mock.state().nova().server(&booted).unwrap().guest.unwrap_or_else(|| panic!("{shown}"));
    let os_running = matches!(guest.result, guestsim::hypervisor::GuestResult::OsRunning { .. });
    assert_eq!(os_running, case.snapshot_is_installed, "{:?}: {:?}", case.layout, guest.result);
}

#[tokio::test]
async fn the_layout_decides_what_a_snapshot_of_an_iso_install_holds() {
    for case in [
        LayoutCase { layout: guestsim::Layout::Stock, snapshot_is_installed: false },
        LayoutCase { layout: guestsim::Layout::Patched, snapshot_is_installed: true },
    ] {
        install_snapshot_and_boot(&case).await;
    }
}

/// Uploads the generated VirtIO-win ISO as a public image named `name`, as an operator publishes it; its id.
async fn publish_virtio_win_iso(cloud: &Cloud, admin: &Session, name: &str) -> String {
    let url = format!("{}/image/v2/images", cloud.mock.url());
    let body = json!({"name": name, "disk_format": "iso", "container_format": "bare", "visibility": "public"});
    let created: Value = cloud
        .http
        .post(&url)
        .header("x-auth-token", &admin.token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let virtio_id = created["id"].as_str().unwrap().to_string();
    let mut iso = Vec::new();
    guestsim::media::virtio_win::virtio_win_iso(&guestsim::media::virtio_win::VirtioWinSpec::current(), &mut iso)
        .unwrap();
    let r = cloud
        .http
        .put(format!("{url}/{virtio_id}/file"))
        .header("x-auth-token", &admin.token)
        .header("content-type", "application/octet-stream")
        .body(iso)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    virtio_id
}

#[tokio::test]
async fn a_patched_host_attaches_the_virtio_iso_its_option_names() {
    let config = Config {
        clock: ClockMode::Manual { tick: Duration::ZERO },
        layout: guestsim::Layout::Patched,
        ..Config::default()
    };
    let cloud = Cloud::with_config(config).await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;

    // The operator publishes the VirtIO-win ISO under a name of its choosing and points the host at it.
    let virtio_id = publish_virtio_win_iso(&cloud, &admin, "drivers-2026").await;
    let options_url = format!("{}/mockstack/compute/options", cloud.mock.url());
    let r = cloud
        .http
        .put(&options_url)
        .header("x-auth-token", &alice.token)
        .json(&json!({"virtio_win_image": "drivers-2026"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = cloud
        .http
        .put(&options_url)
        .header("x-auth-token", &admin.token)
        .json(&json!({"virtio_win_image": "drivers-2026"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let options: Value = r.json().await.unwrap();
    assert_eq!(
        options,
        json!({"layout": "patched", "virtio_win_image": "drivers-2026", "driver_floppy_image": "virtio-win-floppy"})
    );

    let image = cloud.upload_iso(&alice, "installer", json!({})).await;
    let boot = |name: &str| json!({"server": {"name": name, "imageRef": image, "flavorRef": "d1", "networks": "none"}});
    let (_, _, with) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(boot("with-drivers"))).await;
    let r = cloud
        .http
        .put(&options_url)
        .header("x-auth-token", &admin.token)
        .json(&json!({"virtio_win_image": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, _, without) =
        cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(boot("without-drivers"))).await;
    cloud.advance(5);
    let (_, _, _) = cloud.call(&alice, Method::GET, "/servers", None, None).await;
    let xml = |v: &Value| cloud.mock.state().nova().domain_xml(v["server"]["id"].as_str().unwrap()).unwrap();
    // The option is read when the instance is built, not when it was requested.
    assert!(!xml(&with).contains("disk.virtio"), "the option was unset before the build started");
    assert!(!xml(&without).contains("disk.virtio"));
    assert!(xml(&with).contains("disk.newos"));

    let r = cloud
        .http
        .put(&options_url)
        .header("x-auth-token", &admin.token)
        .json(&json!({"virtio_win_image": virtio_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, _, later) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(boot("later"))).await;
    cloud.advance(5);
    let (_, _, _) = cloud.call(&alice, Method::GET, "/servers", None, None).await;
    let later_xml = xml(&later);
    assert!(later_xml.contains("disk.virtio"), "{later_xml}");
    let r = cloud
        .http
        .put(&options_url)
        .header("x-auth-token", &admin.token)
        .json(&json!({"layout": "stock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// The patched Nova's `[libvirt] virtio_win_image`: an option naming an image the project cannot find fails the
/// build with a fault that names it (never a silent boot without drivers); a present image is attached as
/// `disk.virtio`; an unset option attaches nothing.
#[tokio::test]
async fn a_patched_host_faults_when_its_virtio_option_names_a_missing_image() {
    let config = Config {
        clock: ClockMode::Manual { tick: Duration::ZERO },
        layout: guestsim::Layout::Patched,
        virtio_win_image: Some("virtio-win-missing".into()),
        ..Config::default()
    };
    let cloud = Cloud::with_config(config).await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    let image = cloud.upload_iso(&alice, "installer", json!({})).await;
    let boot = |name: &str| json!({"server": {"name": name, "imageRef": image, "flavorRef": "d1", "networks": "none"}});
    let options_url = format!("{}/mockstack/compute/options", cloud.mock.url());
    let set_option = |value: Value| {
        let request = cloud.http.put(&options_url).header("x-auth-token", &admin.token);
        async move {
            let r = request.json(&json!({"virtio_win_image": value})).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    let build = |name: &'static str| {
        let body = boot(name);
        let (cloud, alice) = (&cloud, &alice);
        async move {
            let (status, _, created) = cloud.call(alice, Method::POST, "/servers", Some("2.37"), Some(body)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{created}");
            let id = created["server"]["id"].as_str().unwrap().to_string();
            cloud.advance(5);
            (id.clone(), cloud.server(alice, &id, "2.96").await)
        }
    };

    let (missing, server) = build("missing").await;
    assert_eq!(server["status"], "ERROR", "{server}");
    assert_eq!(
        server["fault"]["message"],
        format!(
            "Build of instance {missing} aborted: Image virtio-win-missing named by [libvirt] virtio_win_image was not \
             found."
        )
    );
    assert!(cloud.mock.state().nova().domain_xml(&missing).is_none(), "no domain was defined");

    // The same name once the image exists (public, as the operator publishes it): attached as disk.virtio.
    publish_virtio_win_iso(&cloud, &admin, "virtio-win-missing").await;
    let (present, server) = build("present").await;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let xml = cloud.mock.state().nova().domain_xml(&present).unwrap();
    assert!(xml.contains("disk.virtio"), "{xml}");
    // Like `virsh dumpxml`, the mock's admin route takes the instance name as well as the uuid.
    let instance = cloud.server(&admin, &present, "2.96").await["OS-EXT-SRV-ATTR:instance_name"].clone();
    let r = cloud
        .http
        .get(format!("{}/mockstack/servers/{}/domain.xml", cloud.mock.url(), instance.as_str().unwrap()))
        .header("x-auth-token", &admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), xml);

    // Unset: no driver CD-ROM, and no fault.
    set_option(Value::Null).await;
    let (unset, server) = build("unset").await;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let xml = cloud.mock.state().nova().domain_xml(&unset).unwrap();
    assert!(xml.contains("disk.newos") && !xml.contains("disk.virtio"), "{xml}");
}

/// Replaces what changes from run to run (ids, times, ports, host ids, passwords) with placeholders.
fn redact(value: &Value, base_url: &str) -> Value {
    let uuid = regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let hex_id = regex::Regex::new(r"^[0-9a-f]{32}$|^[0-9a-f]{56}$").unwrap();
    let time = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?$").unwrap();
    let request = regex::Regex::new(r"req-\[uuid\]").unwrap();
    let reservation = regex::Regex::new(r"^r-[0-9a-z]{8}$").unwrap();
    match value {
        Value::String(s) => {
            let s = s.replace(base_url, "http://mockstack");
            let s = uuid.replace_all(&s, "[uuid]").to_string();
            let s = request.replace_all(&s, "[request-id]").to_string();
            if reservation.is_match(&s) {
                json!("[reservation-id]")
            } else if hex_id.is_match(&s) {
                json!("[hex-id]")
            } else if time.is_match(&s) {
                json!("[time]")
            } else {
                json!(s)
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, base_url)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), redact(v, base_url))).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn server_views_per_microversion_and_role() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    let image = cloud.upload_iso(&alice, "installer", json!({"os_type": "linux"})).await;
    let create = json!({"server": {"name": "shape", "imageRef": image, "flavorRef": "d1", "networks": "none",
                                   "metadata": {"purpose": "snapshot test"}},
                        "os:scheduler_hints": {"build_near_host_ip": "192.0.2.1"}});
    let (_, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(5);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/nova"));
    settings.set_sort_maps(true);
    let base = cloud.mock.url().to_string();
    for (who, session, version) in [
        ("member", &alice, "2.1"),
        ("member", &alice, "2.47"),
        ("member", &alice, "2.96"),
        ("admin", &admin, "2.96"),
        ("member", &alice, "2.100"),
    ] {
        let server = cloud.server(session, &id, version).await;
        settings.bind(|| {
            insta::assert_json_snapshot!(format!("server_show_{who}_{version}"), redact(&server, &base));
        });
    }
    let (_, _, flavor) = cloud.call(&alice, Method::GET, "/flavors/d1", Some("2.96"), None).await;
    settings.bind(|| insta::assert_json_snapshot!("flavor_show_2.96", redact(&flavor, &base)));
    let (_, _, versions) = cloud.call(&alice, Method::GET, "/", None, None).await;
    settings.bind(|| insta::assert_json_snapshot!("version_v2.1", redact(&versions, &base)));
}

#[tokio::test]
async fn a_locked_server_refuses_its_owner_but_not_an_admin() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let admin = cloud.login("admin", "admin").await;
    let image = cloud.upload_iso(&alice, "installer", json!({})).await;
    let create = json!({"server": {"name": "locked", "imageRef": image, "flavorRef": "d1", "networks": "none"}});
    let (_, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(5);

    let (status, _) = cloud.action(&alice, &id, "2.73", json!({"lock": {"locked_reason": "installing"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let server = cloud.server(&alice, &id, "2.73").await;
    assert_eq!((server["locked"].clone(), server["locked_reason"].clone()), (json!(true), json!("installing")));
    let (status, body) = cloud.action(&alice, &id, "2.73", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(&body, status, "conflictingRequest", &format!("Instance {id} is locked"));
    let (status, _, _) = cloud.call(&alice, Method::DELETE, &format!("/servers/{id}"), None, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = cloud.action(&alice, &id, "2.72", json!({"lock": {"locked_reason": "x"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "locked_reason arrives in 2.73: {body}");

    let (status, _) = cloud.action(&admin, &id, "2.73", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "admins are not held by locks");
    let (status, _) = cloud.action(&alice, &id, "2.73", json!({"unlock": null})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let server = cloud.server(&alice, &id, "2.73").await;
    assert_eq!((server["locked"].clone(), server["locked_reason"].clone()), (json!(false), Value::Null));
}

/// Boots a server from a fresh installer image as `who` and waits until it is ACTIVE; returns its id.
async fn active_server(cloud: &Cloud, who: &Session, flavor: &str, extra: Value) -> String {
    let image = cloud.upload_iso(who, "installer", json!({})).await;
    let mut create = json!({"server": {"name": "box", "imageRef": image, "flavorRef": flavor, "networks": "none"}});
    for (k, v) in extra.as_object().unwrap() {
        create[k] = v.clone();
    }
    let (status, _, created) = cloud.call(who, Method::POST, "/servers", Some("2.37"), Some(create)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(5);
    assert_eq!(cloud.server(who, &id, "2.37").await["status"], "ACTIVE");
    id
}

/// Stops a server and waits until it is SHUTOFF.
async fn stop(cloud: &Cloud, who: &Session, id: &str) {
    let (status, body) = cloud.action(who, id, "2.37", json!({"os-stop": null})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    cloud.advance(5);
    assert_eq!(cloud.server(who, id, "2.37").await["status"], "SHUTOFF");
}

#[tokio::test]
async fn server_shares_arrive_in_2_97_and_find_no_manila() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let reader = cloud.login("alpha-reader", "alpha").await;
    let bob = cloud.login("bob", "beta").await;
    let admin = cloud.login("admin", "admin").await;
    let id = active_server(&cloud, &alice, "d1", json!({})).await;
    let shares = format!("/servers/{id}/shares");
    let share_id = "e8debdc0-447a-4376-a10a-4cd9122d7986";
    let share = format!("{shares}/{share_id}");
    let attach = json!({"share": {"share_id": share_id, "tag": "data"}});
    let call = |who: &'static str, method: Method, path: String, version: &'static str, body: Option<Value>| {
        let session = match who {
            "alice" => &alice,
            "reader" => &reader,
            "bob" => &bob,
            _ => &admin,
        };
        let cloud = &cloud;
        async move { cloud.call(session, method, &path, Some(version), body).await }
    };

    // Before 2.97 the routes exist but their methods do not: Nova's own 404 fault.
    for (method, path, body) in [
        (Method::GET, shares.clone(), None),
        (Method::POST, shares.clone(), Some(attach.clone())),
        (Method::GET, share.clone(), None),
        (Method::DELETE, share.clone(), None),
    ] {
        let (status, _, body) = call("alice", method.clone(), path.clone(), "2.96", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_fault(&body, status, "itemNotFound", "The resource could not be found.");
    }

    let (status, headers, body) = call("alice", Method::GET, shares.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"shares": []}));
    assert_eq!(headers["openstack-api-version"], "compute 2.97");
    let (status, _, body) = call("reader", Method::GET, shares.clone(), "2.97", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"shares": []})));
    let (status, _, body) = call("admin", Method::GET, shares.clone(), "2.100", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"shares": []})));
    let (status, _, body) = call("alice", Method::GET, format!("{shares}?limit=1"), "2.97", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(&body, status, "badRequest", "Additional properties are not allowed ('limit' was unexpected)");
    // The policy is checked against the server's project: another project's server is a 403, not a 404.
    let (status, _, body) = call("bob", Method::GET, shares.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:os-server-shares:index to be performed.",
    );
    let unknown = "0e44cc9c-e052-415d-afbf-469b0d384170";
    let (status, _, body) = call("alice", Method::GET, format!("/servers/{unknown}/shares"), "2.97", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", &format!("Instance {unknown} has no mapping to a cell."));
    let (status, _, body) = call("alice", Method::GET, share.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", &format!("Share {share_id} could not be found."));
    let (status, _, body) = call("bob", Method::GET, share.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:os-server-shares:show to be performed.",
    );

    // Attaching: the body first, then the policy, then the server's state.
    let (status, _, body) =
        call("alice", Method::POST, shares.clone(), "2.97", Some(json!({"share": {"share_id": "nope"}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "Invalid input for field/attribute share_id. Value: nope. 'nope' is not a 'uuid'",
    );
    let bad_tag = json!({"share": {"share_id": share_id, "tag": "a b"}});
    let (status, _, body) = call("alice", Method::POST, shares.clone(), "2.97", Some(bad_tag)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_fault(
        &body,
        status,
        "badRequest",
        "Invalid input for field/attribute tag. Value: a b. 'a b' does not match '^[a-zA-Z0-9-]*$'",
    );
    let (status, _, body) = call("reader", Method::POST, shares.clone(), "2.97", Some(attach.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:os-server-shares:create to be performed.",
    );
    let (status, _, body) = call("alice", Method::POST, shares.clone(), "2.97", Some(attach.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let active = format!("instance {id} while it is in vm_state active");
    assert_fault(&body, status, "conflictingRequest", &format!("Cannot 'create share' {active}"));
    let (status, _, body) = call("alice", Method::DELETE, share.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(&body, status, "conflictingRequest", &format!("Cannot 'delete share' {active}"));
    let (status, _, body) = call("reader", Method::DELETE, share.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_fault(
        &body,
        status,
        "forbidden",
        "Policy doesn't allow os_compute_api:os-server-shares:delete to be performed.",
    );

    // Stopped: the libvirt host has no file-backed memory, so the flavor must ask for huge pages.
    stop(&cloud, &alice, &id).await;
    let (status, _, body) = call("alice", Method::POST, shares.clone(), "2.97", Some(attach.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_fault(
        &body,
        status,
        "conflictingRequest",
        "Feature not supported because either compute or instance are not configured correctly.",
    );
    let (status, _, body) = call("alice", Method::DELETE, share.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", &format!("Share {share_id} could not be found."));

    // With huge pages Nova goes on to Manila, which is not in the catalog.
    let flavor = json!({"flavor": {"name": "pages", "id": "pages", "ram": 512, "vcpus": 1, "disk": 5}});
    let (status, _, body) = call("admin", Method::POST, "/flavors".into(), "2.97", Some(flavor)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let specs = json!({"extra_specs": {"hw:mem_page_size": "small"}});
    let (status, _, body) =
        call("admin", Method::POST, "/flavors/pages/os-extra_specs".into(), "2.97", Some(specs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paged = active_server(&cloud, &alice, "pages", json!({})).await;
    stop(&cloud, &alice, &paged).await;
    let (status, _, body) =
        call("alice", Method::POST, format!("/servers/{paged}/shares"), "2.97", Some(attach.clone())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_fault(
        &body,
        status,
        "computeFault",
        "Unexpected API Error. Please contact the administrator\n\
         <class 'keystoneauth1.exceptions.catalog.EndpointNotFound'>",
    );

    // A deleted server keeps its instance mapping: the instance itself is what is not found.
    let (status, _, _) = call("alice", Method::DELETE, format!("/servers/{id}"), "2.97", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    cloud.advance(5);
    let (status, _, body) = call("alice", Method::GET, shares.clone(), "2.97", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fault(&body, status, "itemNotFound", &format!("Instance {id} could not be found."));
}

#[tokio::test]
async fn servers_embed_image_properties_from_2_98_and_scheduler_hints_from_2_100() {
    let cloud = Cloud::start().await;
    let alice = cloud.login("alice", "alpha").await;
    let properties = json!({"os_type": "linux", "architecture": "x86_64", "hw_firmware_type": "bios",
                            "os_distro": "ubuntu", "isoharness_family": "linux"});
    let image = cloud.upload_iso(&alice, "installer", properties).await;
    let near = "48e6a9f6-30af-47e0-bc04-acaed113bb4e";
    let create = json!({
        "server": {"name": "hinted", "imageRef": image, "flavorRef": "d1", "networks": "none"},
        "os:scheduler_hints": {"same_host": [near], "build_near_host_ip": "192.0.2.1", "count": 3, "ratio": 1.5,
                               "strict": true, "mixed": ["a", 2], "_nova_check_type": "rebuild"},
    });
    let (status, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.100"), Some(create)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["server"]["id"].as_str().unwrap().to_string();
    cloud.advance(5);

    // The standard properties only (a legacy name like `architecture` too), as strings.
    let standard =
        json!({"architecture": "x86_64", "hw_firmware_type": "bios", "os_distro": "ubuntu", "os_type": "linux"});
    // Every value becomes a list of strings as Python's str() writes it; `_nova…` hints are dropped.
    let hints = json!({"same_host": [near], "build_near_host_ip": ["192.0.2.1"], "count": ["3"], "ratio": ["1.5"],
                       "strict": ["True"], "mixed": ["a", "2"]});
    let check = |server: &Value, minor: u32| {
        let (properties, scheduler_hints) = (server["image"].get("properties"), server.get("scheduler_hints"));
        assert_eq!(server["image"]["id"], image.as_str(), "2.{minor}");
        assert_eq!(properties, (minor >= 98).then_some(&standard), "2.{minor}");
        assert_eq!(scheduler_hints, (minor >= 100).then_some(&hints), "2.{minor}");
    };
    for minor in 96..=100 {
        let version = format!("2.{minor}");
        let version = version.as_str();
        check(&cloud.server(&alice, &id, version).await, minor);
        let (status, _, list) = cloud.call(&alice, Method::GET, "/servers/detail", Some(version), None).await;
        assert_eq!(status, StatusCode::OK);
        check(&list["servers"][0], minor);
        let rename = json!({"server": {"name": format!("hinted-{version}")}});
        let (status, _, updated) =
            cloud.call(&alice, Method::PUT, &format!("/servers/{id}"), Some(version), Some(rename)).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        check(&updated["server"], minor);
    }
    let (_, _, index) = cloud.call(&alice, Method::GET, "/servers", Some("2.100"), None).await;
    assert_eq!(index["servers"][0].as_object().unwrap().len(), 3, "id, name and links only: {index}");

    // The properties are those the server booted with: changing the image later changes nothing.
    let r = cloud
        .http
        .patch(format!("{}/image/v2/images/{image}", cloud.mock.url()))
        .header("x-auth-token", &alice.token)
        .header("content-type", "application/openstack-images-v2.1-json-patch")
        .json(&json!([{"op": "replace", "path": "/os_type", "value": "windows"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(cloud.server(&alice, &id, "2.98").await["image"]["properties"], standard);

    // The legacy key name of the hints, and none at all.
    let boot = |hints: Option<(&str, Value)>| {
        let mut body = json!({"server": {"name": "plain", "imageRef": image, "flavorRef": "d1", "networks": "none"}});
        if let Some((key, hints)) = hints {
            body[key] = hints;
        }
        body
    };
    for (hints, shown) in [
        (None, json!({})),
        (Some(("OS-SCH-HNT:scheduler_hints", json!({"target_cell": "cell1"}))), json!({"target_cell": ["cell1"]})),
        (Some(("os:scheduler_hints", json!({"different_cell": []}))), json!({"different_cell": []})),
    ] {
        let (status, _, created) = cloud.call(&alice, Method::POST, "/servers", Some("2.100"), Some(boot(hints))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        let server = cloud.server(&alice, created["server"]["id"].as_str().unwrap(), "2.100").await;
        assert_eq!(server["scheduler_hints"], shown);
    }

    // Hints Nova checks or cannot store.
    // (A value the request spec cannot hold escapes nova-api as a ValueError, after the quota check.)
    let value_error = "Unexpected API Error. Please contact the administrator\n<class 'ValueError'>";
    let refused = [
        (
            json!({"build_near_host_ip": "nowhere"}),
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Invalid input for field/attribute build_near_host_ip. Value: nowhere. \
             'nowhere' is not valid under any of the given schemas"
                .to_string(),
        ),
        (
            json!({"group": near}),
            StatusCode::BAD_REQUEST,
            "badRequest",
            format!("Instance group {near} could not be found."),
        ),
        (json!({"query": {"k": "v"}}), StatusCode::INTERNAL_SERVER_ERROR, "computeFault", value_error.to_string()),
        (json!({"anything": null}), StatusCode::INTERNAL_SERVER_ERROR, "computeFault", value_error.to_string()),
        (json!({"nested": [["a"]]}), StatusCode::INTERNAL_SERVER_ERROR, "computeFault", value_error.to_string()),
    ];
    let before = cloud.mock.state().nova().server_ids().len();
    for (hints, status, fault, message) in refused {
        let body = boot(Some(("os:scheduler_hints", hints.clone())));
        let (got, _, body) = cloud.call(&alice, Method::POST, "/servers", Some("2.100"), Some(body)).await;
        assert_eq!(got, status, "{hints}: {body}");
        assert_fault(&body, status, fault, &message);
    }
    assert_eq!(cloud.mock.state().nova().server_ids().len(), before, "no refused request made a server");
}
