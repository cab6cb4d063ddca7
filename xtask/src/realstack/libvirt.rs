//! The local real cloud's libvirt mode: Nova's own libvirt driver, with libvirtd and QEMU started by hand.
//!
//! libvirtd keeps its configuration, state, sockets and logs in fixed system paths (`/etc/libvirt`,
//! `/var/lib/libvirt`, `/run/libvirt`, ...). So that everything stays under the cloud's directory,
//! libvirtd runs in a private mount namespace in which those paths are bind mounts of
//! `data/libvirt/*`; the namespace, and its mounts, end with libvirtd and its guests. Nova reaches
//! the daemon through the socket's path outside the namespace. QEMU uses KVM where `/dev/kvm`
//! opens and runs Hyper-V-enlightened (Windows-typed) guests, software emulation otherwise.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Dirs, say, spawn};

/// Debian packages the libvirt mode needs on top of the cloud's own.
pub const APT_PACKAGES: &[crate::apt::Package] = &[
    crate::apt::Package {
        name: "qemu-system-x86",
        probe: "qemu-system-x86_64",
        why: "the guests' PC, under KVM or software emulation",
    },
    crate::apt::Package { name: "libvirt-daemon", probe: "libvirtd", why: "Nova's libvirt driver talks to libvirtd" },
    crate::apt::Package { name: "libvirt-daemon-driver-qemu", probe: "", why: "libvirtd's QEMU driver" },
    crate::apt::Package {
        name: "libvirt-clients",
        probe: "virsh",
        why: "virsh: the domain XML of a guest, and clean-up of left-over domains",
    },
    crate::apt::Package {
        name: "ovmf",
        probe: "",
        why: "UEFI firmware and its descriptors, from which libvirt picks a UEFI guest's loader",
    },
    crate::apt::Package { name: "libvirt-dev", probe: "", why: "libvirt-python is built against the system's libvirt" },
    crate::apt::Package {
        name: "pkg-config",
        probe: "pkg-config",
        why: "finds the system libvirt's version for libvirt-python",
    },
];

/// The system paths libvirtd uses, each bind-mounted from `data/libvirt/<name>`.
const MOUNTS: &[(&str, &str)] = &[
    ("etc", "/etc/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("run", "/run/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
    ("qemu-firmware", "/etc/qemu/firmware"),
];

/// The firmware libvirt picks first for a Secure Boot guest: OVMF with Debian's published test keys ("snakeoil")
/// enrolled, which sign the UEFI tiny installer, instead of Microsoft's, which do not. Guests without Secure Boot
/// still get the plain OVMF of Debian's own descriptors.
const SNAKEOIL_FIRMWARE: (&str, &str) = (
    "30-isoharness-ovmf-snakeoil.json",
    r#"{
    "description": "OVMF with Secure Boot and SMM, Debian's snakeoil test keys enrolled (written by cargo xtask realstack)",
    "interface-types": ["uefi"],
    "mapping": {
        "device": "flash",
        "executable": {"filename": "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "format": "raw"},
        "nvram-template": {"filename": "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd", "format": "raw"}
    },
    "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}],
    "features": ["acpi-s3", "enrolled-keys", "requires-smm", "secure-boot", "verbose-dynamic"],
    "tags": []
}
"#,
);

/// The ports of the guests' VNC displays (Nova asks for one per guest): the ten after the cloud's own, rather
/// than libvirt's default 5900 and up, where the machine's own virtual machines and VNC servers live.
pub const GUEST_DISPLAY_PORTS: std::ops::RangeInclusive<u16> = super::PORT_BASE + 10..=super::PORT_BASE + 19;

/// libvirtd runs guests as root, unconfined, without cgroups (there is no systemd here), writes each guest's
/// serial console straight to the file Nova names (no virtlogd), and gives their displays
/// [`GUEST_DISPLAY_PORTS`].
fn qemu_conf() -> String {
    format!(
        "# Written by `cargo xtask realstack up --compute libvirt`.\n\
         user = \"root\"\n\
         group = \"root\"\n\
         security_driver = \"none\"\n\
         dynamic_ownership = 0\n\
         remember_owner = 0\n\
         cgroup_controllers = [ ]\n\
         stdio_handler = \"file\"\n\
         remote_display_port_min = {}\n\
         remote_display_port_max = {}\n",
        GUEST_DISPLAY_PORTS.start(),
        GUEST_DISPLAY_PORTS.end()
    )
}

const LIBVIRTD_CONF: &str = "# Written by `cargo xtask realstack up --compute libvirt`.\n\
listen_tls = 0\n\
listen_tcp = 0\n\
unix_sock_rw_perms = \"0700\"\n\
log_outputs = \"3:stderr\"\n";

fn root(layout: &Dirs) -> PathBuf {
    layout.data().join("libvirt")
}

/// The libvirtd socket, seen from outside the namespace.
pub fn socket(layout: &Dirs) -> PathBuf {
    root(layout).join("run").join("libvirt-sock")
}

/// The URI Nova and virsh connect with.
pub fn uri(layout: &Dirs) -> String {
    format!("qemu+unix:///system?socket={}", socket(layout).display())
}

/// `kvm` when /dev/kvm can be opened for reading and writing and KVM runs the Hyper-V enlightenments Nova gives every
/// guest whose image says `os_type=windows`; `qemu` (software emulation, which runs them) otherwise. A KVM nested in
/// another hypervisor may lack them ("kernel doesn't allow setting HyperV VP_INDEX"), and then every Windows-typed
/// server would fail to spawn.
pub fn virt_type() -> &'static str {
    static VIRT_TYPE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VIRT_TYPE.get_or_init(|| {
        let kvm = fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        if kvm && kvm_runs_hyperv_guests() { "kvm" } else { "qemu" }
    })
}

/// Whether QEMU under KVM accepts the Hyper-V enlightenments of a Windows guest: a paused machine with them either
/// fails at once or is still there after a moment.
fn kvm_runs_hyperv_guests() -> bool {
    let probe = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "qemu64,hv-relaxed=on,hv-vpindex=on,hv-synic=on,hv-time=on,hv-stimer=on"])
        .args(["-machine", "pc", "-m", "16", "-display", "none", "-nic", "none", "-S", "-no-reboot"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut probe) = probe else { return false };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = probe.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = probe.kill();
    let _ = probe.wait();
    true
}

/// What the libvirt mode needs beyond the packages: libvirt-python in the virtualenv, matching the
/// system's libvirt, and the `libvirt-qemu` user the QEMU driver resolves before it reads qemu.conf.
pub fn prepare(layout: &Dirs, started: Instant) -> anyhow::Result<()> {
    crate::apt::ensure("the local real cloud's libvirt mode", APT_PACKAGES)?;
    if Command::new("getent").args(["passwd", "libvirt-qemu"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        crate::run(
            Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"])
                .arg("libvirt-qemu"),
        )?;
    }
    let python = layout.venv().join("bin/python");
    if Command::new(&python).args(["-c", "import libvirt"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let version =
        Command::new("pkg-config").args(["--modversion", "libvirt"]).output().context("cannot run pkg-config")?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    if version.is_empty() {
        bail!("pkg-config does not know libvirt: is libvirt-dev installed?");
    }
    say(started, format!("building libvirt-python {version} against the system's libvirt"));
    crate::run(Command::new(layout.venv().join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        &format!("libvirt-python=={version}"),
    ]))
}

/// libvirtd cannot run on this machine (no mount namespaces, no QEMU driver, ...): the libvirt
/// mode is then skipped, not failed, as its issue asks for it only where libvirt/QEMU can run.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libvirt cannot run here: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Starts libvirtd in its private mount namespace and waits for it to answer.
pub fn start(layout: &Dirs, started: Instant) -> anyhow::Result<()> {
    start_daemon(layout, started).map_err(|e| Unavailable(format!("{e:#}")).into())
}

fn start_daemon(layout: &Dirs, started: Instant) -> anyhow::Result<()> {
    let root = root(layout);
    for (name, _) in MOUNTS {
        fs::create_dir_all(root.join(name))?;
    }
    fs::write(root.join("etc/qemu.conf"), qemu_conf())?;
    fs::write(root.join("etc/libvirtd.conf"), LIBVIRTD_CONF)?;
    fs::write(root.join("qemu-firmware").join(SNAKEOIL_FIRMWARE.0), SNAKEOIL_FIRMWARE.1)?;
    let mut script = String::from("set -e\n");
    for (name, target) in MOUNTS {
        script.push_str(&format!("mkdir -p {target}\nmount --bind '{}' {target}\n", root.join(name).display()));
    }
    script.push_str("exec libvirtd\n");
    let args: Vec<OsString> =
        ["--mount", "--propagation", "private", "--", "sh", "-c", &script].iter().map(OsString::from).collect();
    spawn(layout, "libvirtd", Path::new("unshare"), &args, &[])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if virsh(layout, &["version"]).is_ok() {
            break;
        }
        super::ensure_alive(layout, "libvirtd")?;
        if Instant::now() > deadline {
            bail!("libvirtd does not answer on {} after 60 s", socket(layout).display());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    say(started, format!("libvirtd answers ({} guests)", virt_type()));
    Ok(())
}

/// Runs virsh against the cloud's libvirtd; its stdout, or an error with its stderr.
pub fn virsh(layout: &Dirs, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("virsh").args(["-c", &uri(layout)]).args(args).output().context("cannot run virsh")?;
    if !output.status.success() {
        bail!("virsh {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Destroys and undefines every domain libvirtd knows, so that no guest outlives the cloud
/// (libvirtd leaves running guests alone when it stops).
pub fn remove_domains(layout: &Dirs) {
    let Ok(names) = virsh(layout, &["list", "--all", "--name"]) else { return };
    for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
        eprintln!("realstack: removing the left-over libvirt domain {name}");
        let _ = virsh(layout, &["destroy", name]);
        let _ = virsh(layout, &["undefine", name, "--nvram"]).or_else(|_| virsh(layout, &["undefine", name]));
    }
}

/// QEMU processes whose command line names a file of this cloud: guests that escaped `remove_domains`.
pub fn stray_guests(layout: &Dirs) -> Vec<u32> {
    let needle = layout.data().display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.starts_with("/usr/bin/qemu-system") && cmdline.contains(&needle)
        })
        .collect()
}
