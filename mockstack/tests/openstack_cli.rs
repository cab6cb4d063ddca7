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

/// Runs `openstack ARGS -f json` as alice on alpha and decodes the output, failing with the CLI's stderr.
fn alice_json(mock: &MockStack, args: &[&str]) -> serde_json::Value {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-f", "json"]);
    let out = tokio::task::block_in_place(|| openstack(mock, "alice", "mockstack-alice", "alpha", &full));
    assert!(out.status.success(), "openstack {args:?} failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("openstack {args:?} printed no JSON ({e}): {}", stdout(&out)))
}

fn alice_ok(mock: &MockStack, args: &[&str]) {
    let out = tokio::task::block_in_place(|| openstack(mock, "alice", "mockstack-alice", "alpha", args));
    assert!(out.status.success(), "openstack {args:?} failed: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_lifecycle_through_the_cli() {
    use md5::Digest;
    let mock = start().await;
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("disc.iso");
    // A few MiB, not a multiple of any chunk size, so streaming and hashing see ragged chunks.
    let data: Vec<u8> = (0..(3 * 1024 * 1024 + 4321u32)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&iso, &data).unwrap();
    let md5 = hex::encode(md5::Md5::digest(&data));
    let sha512 = hex::encode(sha2::Sha512::digest(&data));
    let iso_arg = iso.to_str().unwrap();

    let created = alice_json(
        &mock,
        &["image", "create", "--disk-format", "iso", "--container-format", "bare", "--file", iso_arg, "cli-image"],
    );
    let id = created["id"].as_str().expect("image create prints the id").to_string();
    assert_eq!(created["name"], "cli-image");
    assert_eq!(created["disk_format"], "iso");
    assert_eq!(created["container_format"], "bare");
    assert_eq!(created["visibility"], "shared");

    let record = mock.state().glance().image(&id).expect("the image exists in the mock");
    assert_eq!(record.status, mockstack::glance::ImageStatus::Active);
    assert_eq!(record.size, Some(data.len() as u64));
    assert_eq!(record.checksum.as_deref(), Some(md5.as_str()));
    assert_eq!(record.os_hash_value.as_deref(), Some(sha512.as_str()));

    let listed = alice_json(&mock, &["image", "list"]);
    let row = listed.as_array().unwrap().iter().find(|r| r["ID"] == id.as_str()).expect("image list shows the image");
    assert_eq!(row["Name"], "cli-image");
    assert_eq!(row["Status"], "active");

    let shown = alice_json(&mock, &["image", "show", "cli-image"]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["checksum"], md5.as_str());
    assert_eq!(shown["size"], data.len() as u64);
    assert_eq!(shown["owner"], mock.state().identities().project_by_name("alpha").unwrap().id.as_str());

    alice_ok(&mock, &["image", "set", "--property", "os_distro=debian", "--property", "hw_cdrom_bus=sata", &id]);
    let shown = alice_json(&mock, &["image", "show", &id]);
    assert_eq!(shown["properties"]["os_distro"], "debian", "{shown}");
    assert_eq!(shown["properties"]["hw_cdrom_bus"], "sata", "{shown}");

    alice_ok(&mock, &["image", "unset", "--property", "hw_cdrom_bus", &id]);
    let shown = alice_json(&mock, &["image", "show", &id]);
    assert!(shown["properties"].get("hw_cdrom_bus").is_none(), "{shown}");
    assert_eq!(shown["properties"]["os_distro"], "debian");

    let saved = dir.path().join("saved.iso");
    alice_ok(&mock, &["image", "save", "--file", saved.to_str().unwrap(), &id]);
    assert!(std::fs::read(&saved).unwrap() == data, "image save wrote different bytes");

    // Another project cannot see alice's (shared, unaccepted) image.
    let m = &mock;
    let bob = tokio::task::block_in_place(|| openstack(m, "bob", "mockstack-bob", "beta", &["image", "show", &id]));
    assert!(!bob.status.success());
    assert!(stderr(&bob).contains("No Image found for"), "{}", stderr(&bob));

    alice_ok(&mock, &["image", "delete", &id]);
    assert!(mock.state().glance().image(&id).is_none());
    let listed = alice_json(&mock, &["image", "list"]);
    assert!(listed.as_array().unwrap().iter().all(|r| r["ID"] != id.as_str()));
}

/// openstacksdk, used as a library (the way Ansible and other tools drive Glance), round-trips image data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_uploads_and_downloads() {
    let mock = start().await;
    let python = openstack_cli().with_file_name("python");
    let script = r#"
import hashlib, sys
import openstack
conn = openstack.connect(
    auth_url=sys.argv[1], username="alice", password="mockstack-alice", project_name="alpha",
    user_domain_id="default", project_domain_id="default", region_name="RegionOne",
)
data = bytes(range(256)) * 4099
image = conn.image.create_image(name="sdk-image", disk_format="raw", container_format="bare", data=data,
                                 meta={"os_distro": "fedora"}, wait=True)
got = conn.image.get_image(image.id)
assert got.status == "active", got.status
assert got.checksum == hashlib.md5(data).hexdigest(), got.checksum
assert got.hash_algo == "sha512" and got.hash_value == hashlib.sha512(data).hexdigest()
assert got.os_distro == "fedora", got
assert conn.image.download_image(got).content == data  # the sdk also verifies os_hash_value
conn.image.update_image(got, min_ram=512)
assert conn.image.get_image(got.id).min_ram == 512
assert [i.id for i in conn.image.images(name="sdk-image")] == [got.id]
conn.image.delete_image(got)
print("ok")
"#;
    let auth_url = mock.auth_url();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(&python).arg("-c").arg(script).arg(&auth_url).output().expect("the venv python runs")
    });
    assert!(out.status.success(), "openstacksdk script failed: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "ok");
}

/// A mockstack whose clock runs 100 times faster than the wall clock, so `--wait` loops finish
/// within the CLI's own 5 s poll. Its patched host has no driver media configured (the Linux guest needs none): an
/// option naming an image nobody uploaded would fault the build.
async fn start_fast() -> MockStack {
    let config = Config {
        clock: mockstack::ClockMode::Scaled(100.0),
        virtio_win_image: None,
        driver_floppy_image: None,
        ..Config::default()
    };
    MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// Writes an installer ISO whose install waits at the console for a person (so the server stays up).
fn attended_installer_iso(path: &std::path::Path) {
    let facts: guestsim::guest::GuestFacts = toml::from_str(
        r#"
name = "Debian 12"
family = "linux"
release = "12"
distro = "debian"
arch = "x86_64"
virtio_storage = "built-in"
firmware = "bios"
min_ram_mb = 256
min_disk_gb = 1
install_seconds = 300
boot_seconds = 10
unattended = false
"#,
    )
    .unwrap();
    guestsim::media::os_iso::os_installer_iso_to_file(&facts, &Default::default(), path).unwrap();
}

/// Runs `openstack ARGS` as alice and returns stdout, failing with the CLI's stderr.
fn alice_text(mock: &MockStack, args: &[&str]) -> String {
    let out = tokio::task::block_in_place(|| openstack(mock, "alice", "mockstack-alice", "alpha", args));
    assert!(out.status.success(), "openstack {args:?} failed: {}", stderr(&out));
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flavor_list_and_admin_only_flavor_create() {
    let mock = start().await;
    let flavors = alice_json(&mock, &["flavor", "list"]);
    let names: Vec<&str> = flavors.as_array().unwrap().iter().map(|f| f["Name"].as_str().unwrap()).collect();
    assert!(names.contains(&"m1.small") && names.contains(&"ds1G"), "{names:?}");
    let tiny = flavors.as_array().unwrap().iter().find(|f| f["Name"] == "m1.tiny").unwrap();
    assert_eq!((tiny["RAM"].as_u64(), tiny["Disk"].as_u64(), tiny["VCPUs"].as_u64()), (Some(512), Some(1), Some(1)));

    let m = &mock;
    let args =
        ["flavor", "create", "--ram", "2048", "--disk", "20", "--ephemeral", "20", "--vcpus", "2", "iso-install"];
    let denied = tokio::task::block_in_place(|| openstack(m, "alice", "mockstack-alice", "alpha", &args));
    assert!(!denied.status.success());
    let err = stderr(&denied);
    assert!(err.contains("403") && err.contains("os_compute_api:os-flavor-manage:create"), "{err}");
    let mut json_args = args.to_vec();
    json_args.extend(["-f", "json"]);
    let made = tokio::task::block_in_place(|| openstack(m, "admin", "mockstack-admin", "admin", &json_args));
    assert!(made.status.success(), "{}", stderr(&made));
    let flavor: serde_json::Value = serde_json::from_str(&stdout(&made)).unwrap();
    assert_eq!(flavor["name"], "iso-install");
    assert_eq!(flavor["OS-FLV-EXT-DATA:ephemeral"], 20);
    let shown = alice_json(&mock, &["flavor", "show", "iso-install"]);
    assert_eq!(shown["disk"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifecycle_through_the_cli() {
    let mock = start_fast().await;
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("debian.iso");
    attended_installer_iso(&iso);
    let image = alice_json(
        &mock,
        &[
            "image",
            "create",
            "--disk-format",
            "iso",
            "--container-format",
            "bare",
            "--file",
            iso.to_str().unwrap(),
            "debian-12-installer",
        ],
    );
    assert_eq!(image["status"], "active");

    let server = alice_json(
        &mock,
        &[
            "server",
            "create",
            "--image",
            "debian-12-installer",
            "--flavor",
            "ds1G",
            "--nic",
            "none",
            "--wait",
            "installer-box",
        ],
    );
    assert_eq!(server["status"], "ACTIVE", "{server}");
    assert_eq!(server["name"], "installer-box");
    let id = server["id"].as_str().unwrap().to_string();

    let shown = alice_json(&mock, &["server", "show", &id]);
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["OS-EXT-STS:power_state"], 1, "{shown}");
    assert_eq!(shown["flavor"]["name"], "ds1G", "{shown}");
    let listed = alice_json(&mock, &["server", "list"]);
    assert_eq!(listed[0]["Name"], "installer-box");
    // The CLI names images with one `GET /v2/images?id=in:...` (Glance's `in:` operator).
    let long = alice_json(&mock, &["server", "list", "--long"]);
    assert_eq!(long[0]["Image Name"], "debian-12-installer", "{long}");

    let url = alice_json(&mock, &["console", "url", "show", "installer-box"]);
    let console_url = url["url"].as_str().unwrap();
    assert!(console_url.starts_with(&format!("{}/mockstack/vnc_lite.html?path=", mock.url())), "{url}");
    assert_eq!(url["type"], "novnc");
    let page = reqwest::get(console_url).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.text().await.unwrap().contains("installer-box"));

    let log = alice_text(&mock, &["console", "log", "show", "--lines", "20", "installer-box"]);
    // The console keeps growing on the fast clock: what the CLI printed is part of it.
    let later = mock.state().nova().server(&id).unwrap().console_output(mock.state().clock().elapsed());
    assert!(later.contains(log.trim_end()), "{log:?} is not in {later:?}");

    alice_ok(&mock, &["server", "stop", "installer-box"]);
    let mut status = String::new();
    for _ in 0..50 {
        status = alice_json(&mock, &["server", "show", &id])["status"].as_str().unwrap().to_string();
        if status == "SHUTOFF" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "SHUTOFF");

    let snapshot = alice_json(&mock, &["server", "image", "create", "--name", "installed", "--wait", "installer-box"]);
    let snapshot_id = snapshot["id"].as_str().unwrap().to_string();
    let shown = alice_json(&mock, &["image", "show", &snapshot_id]);
    assert_eq!(shown["status"], "active", "{shown}");
    assert_eq!(shown["disk_format"], "qcow2");
    assert_eq!(shown["properties"]["image_type"], "snapshot", "{shown}");
    assert_eq!(shown["properties"]["instance_uuid"], id.as_str());

    alice_ok(&mock, &["server", "delete", "--wait", "installer-box"]);
    assert!(mock.state().nova().server(&id).is_none());
    let listed = alice_json(&mock, &["server", "list"]);
    assert_eq!(listed, serde_json::json!([]));
}

/// Runs `openstack ARGS -f json` as the admin and parses the output.
fn admin_json(mock: &MockStack, args: &[&str]) -> serde_json::Value {
    let mut full = args.to_vec();
    full.extend(["-f", "json"]);
    let out = tokio::task::block_in_place(|| openstack(mock, "admin", "mockstack-admin", "admin", &full));
    assert!(out.status.success(), "openstack {args:?} failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("openstack {args:?}: {e}: {}", stdout(&out)))
}

fn admin_ok(mock: &MockStack, args: &[&str]) -> String {
    let out = tokio::task::block_in_place(|| openstack(mock, "admin", "mockstack-admin", "admin", args));
    assert!(out.status.success(), "openstack {args:?} failed: {}", stderr(&out));
    stdout(&out)
}

/// Polls `server show` until the server reaches `status` (the CLI has no wait for SHUTOFF).
fn wait_status(mock: &MockStack, server: &str, status: &str) {
    for _ in 0..60 {
        if admin_json(mock, &["server", "show", server])["status"] == status {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("server {server} never reached {status}");
}

/// The article's seven steps with nothing but the `openstack` CLI, on the patched layout: a
/// Windows Server 2012 installer and the VirtIO ISO go in, an installed image comes out. The
/// clock runs 100 times faster: the 1500 s install takes 15 s, longer than `--wait`'s 5 s poll,
/// which waits for ACTIVE only and would miss a guest that is already SHUTOFF again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seven_steps_through_the_cli() {
    let config = Config { clock: mockstack::ClockMode::Scaled(100.0), ..Config::default() };
    let mock = MockStack::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let facts: guestsim::guest::GuestFacts = toml::from_str(
        r#"
name = "Windows Server 2012"
family = "windows"
release = "2012"
distro = "windows"
arch = "x86_64"
virtio_storage = "cdrom"
virtio_win_folder = "2k12"
firmware = "bios"
min_ram_mb = 2048
min_disk_gb = 32
install_seconds = 1500
boot_seconds = 90
agent = "cloudbase-init"
"#,
    )
    .unwrap();
    let iso = dir.path().join("win2012.iso");
    guestsim::media::os_iso::os_installer_iso_to_file(&facts, &Default::default(), &iso).unwrap();
    let virtio = dir.path().join("virtio-win.iso");
    guestsim::media::virtio_win::virtio_win_iso_to_file(
        &guestsim::media::virtio_win::VirtioWinSpec::current(),
        &virtio,
    )
    .unwrap();

    // 1. Upload the OS ISO, and the VirtIO ISO every user can see.
    let create = |file: &std::path::Path, name: &str, public: bool| {
        let mut args = vec!["image", "create", "--disk-format", "iso", "--container-format", "bare", "--file"];
        args.push(file.to_str().unwrap());
        if public {
            args.push("--public");
        }
        args.push(name);
        admin_json(&mock, &args)
    };
    let os_image = create(&iso, "win2012-iso", false);
    create(&virtio, "virtio-win", true);
    admin_ok(&mock, &["flavor", "create", "--vcpus", "2", "--ram", "4096", "--disk", "40", "win-build"]);

    // 2. Boot from the ISO.
    let server = admin_json(
        &mock,
        &[
            "server",
            "create",
            "--image",
            "win2012-iso",
            "--flavor",
            "win-build",
            "--nic",
            "none",
            "--wait",
            "win-install",
        ],
    );
    assert_eq!(server["status"], "ACTIVE");
    let id = server["id"].as_str().unwrap().to_string();
    // 3. The console a person would install through.
    let url = admin_json(&mock, &["console", "url", "show", &id]);
    assert!(url["url"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{url}");
    // 4-5. The unattended install runs (its console read while it runs) and powers the guest off.
    let log = admin_ok(&mock, &["console", "log", "show", &id]);
    assert!(log.contains("viostor"), "the installer should have loaded viostor from the VirtIO CD-ROM:\n{log}");
    wait_status(&mock, &id, "SHUTOFF");
    // A libvirt host serves no console for a guest that is not running.
    let gone = tokio::task::block_in_place(|| {
        openstack(&mock, "admin", "mockstack-admin", "admin", &["console", "log", "show", &id])
    });
    assert!(
        !gone.status.success() && stderr(&gone).contains("Guest does not have a console available."),
        "{}",
        stderr(&gone)
    );
    // 6. Snapshot.
    let snapshot = admin_json(&mock, &["server", "image", "create", "--name", "win2012", "--wait", &id]);
    let snapshot_id = snapshot["id"].as_str().unwrap().to_string();
    let shown = admin_json(&mock, &["image", "show", &snapshot_id]);
    assert_eq!(shown["disk_format"], "qcow2");
    assert_eq!(shown["properties"]["image_type"], "snapshot");
    assert_eq!(shown["properties"]["base_image_ref"], os_image["id"]);
    // 7. Make it an ordinary image.
    admin_ok(
        &mock,
        &[
            "image",
            "set",
            "--property",
            "image_type=image",
            "--property",
            "os_type=windows",
            "--property",
            "hw_vif_model=e1000",
            &snapshot_id,
        ],
    );
    assert_eq!(admin_json(&mock, &["image", "show", &snapshot_id])["properties"]["image_type"], "image");
    // The proof: a server booted from the image runs the installed Windows.
    admin_ok(&mock, &["server", "delete", "--wait", &id]);
    let booted = admin_json(
        &mock,
        &["server", "create", "--image", &snapshot_id, "--flavor", "win-build", "--nic", "none", "--wait", "win-check"],
    );
    let booted_id = booted["id"].as_str().unwrap().to_string();
    let mut log = String::new();
    for _ in 0..40 {
        log = admin_ok(&mock, &["console", "log", "show", &booted_id]);
        if log.contains("Plugins execution done") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(log.contains("Plugins execution done"), "the installed system did not come up:\n{log}");
    admin_ok(&mock, &["server", "delete", "--wait", &booted_id]);
    admin_ok(&mock, &["image", "delete", &snapshot_id, "win2012-iso", "virtio-win"]);
    admin_ok(&mock, &["flavor", "delete", "win-build"]);
}
