//! `cargo xtask realstack up|down|status`: a real OpenStack (Keystone, Glance, Placement, Nova) on 127.0.0.1, owned by the project.
//!
//! Everything lives under one directory (`target/realstack/` by default): a virtualenv with the pinned
//! services (`xtask/realstack/requirements.txt`, every dependency pinned by `constraints.txt`), the
//! rendered configuration (`etc/`), databases and image files (`data/`), one log per process (`logs/`)
//! and one pid file per process (`run/`). MariaDB and RabbitMQ are started by hand (no systemd), the
//! APIs run under uWSGI, Nova's conductor, scheduler and compute run as one process each, and a
//! Python stand-in answers for Neutron. The compute driver is `xtask/realstack/nova_virt_realstack.py`
//! (installed as `nova/virt/realstack.py`): the fake driver with real image data.
//!
//! Every process is started in its own process group and `down` signals the whole group, so uWSGI
//! workers and Erlang helpers go with their parent; `down` then checks that none of those groups has a
//! live process and that every port is free again.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod libvirt;
mod nova;

pub use libvirt::{APT_PACKAGES as LIBVIRT_APT_PACKAGES, Unavailable as LibvirtUnavailable, uri as libvirt_uri};
pub use nova::{NovaOption, NovaRequest, expand_patch_args, nova_unit_tests};

/// The first of the ports the local real cloud uses; it takes [`PORT_BASE`]..=`PORT_BASE + 9` on 127.0.0.1.
pub const PORT_BASE: u16 = 45300;

/// Keystone's region.
const REGION: &str = "RegionOne";

/// The name of the cloud in the clouds.yaml that `up` writes.
pub const CLOUD_NAME: &str = "realstack";

/// Debian packages the real cloud needs.
pub const APT_PACKAGES: &[crate::apt::Package] = &[
    crate::apt::Package {
        name: "mariadb-server",
        probe: "mariadbd",
        why: "Nova's databases (several Nova processes would lock sqlite)",
    },
    crate::apt::Package { name: "rabbitmq-server", probe: "epmd", why: "Nova's message queue" },
    crate::apt::Package {
        name: "qemu-utils",
        probe: "qemu-img",
        why: "the compute driver writes snapshots as qcow2, as libvirt does",
    },
    crate::apt::Package { name: "python3-venv", probe: "", why: "the virtualenv holding the services" },
];

/// The ports, fixed so that `status` and `down` need no state to find them.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub keystone: u16,
    pub glance: u16,
    pub placement: u16,
    pub nova: u16,
    pub neutron: u16,
    pub mysql: u16,
    pub rabbit: u16,
    pub epmd: u16,
    pub rabbit_dist: u16,
    /// Only written into the console URLs Nova hands out; nothing listens there.
    pub novnc: u16,
}

impl Ports {
    pub fn from_base(base: u16) -> Ports {
        Ports {
            keystone: base,
            glance: base + 1,
            placement: base + 2,
            nova: base + 3,
            neutron: base + 4,
            mysql: base + 5,
            rabbit: base + 6,
            epmd: base + 7,
            rabbit_dist: base + 8,
            novnc: base + 9,
        }
    }

    /// The ports something listens on, with who.
    fn listening(&self) -> [(&'static str, u16); 9] {
        [
            ("keystone", self.keystone),
            ("glance", self.glance),
            ("placement", self.placement),
            ("nova-api", self.nova),
            ("neutron stand-in", self.neutron),
            ("mariadb", self.mysql),
            ("rabbitmq", self.rabbit),
            ("epmd", self.epmd),
            ("rabbitmq distribution", self.rabbit_dist),
        ]
    }
}

/// Where the pieces of one real cloud live.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
}

impl Dirs {
    pub fn new(root: impl Into<PathBuf>) -> Dirs {
        Dirs { root: root.into() }
    }

    pub fn venv(&self) -> PathBuf {
        self.root.join("venv")
    }
    fn bin(&self, name: &str) -> PathBuf {
        self.venv().join("bin").join(name)
    }
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn clouds_yaml(&self) -> PathBuf {
        self.root.join("clouds.yaml")
    }
    fn pid_file(&self, name: &str) -> PathBuf {
        self.run().join(format!("{name}.pid"))
    }
    fn setup_log(&self) -> PathBuf {
        self.logs().join("setup.log")
    }
}

/// The files this module ships, from `xtask/realstack/`.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("realstack")
}

/// The default home of the real cloud: `target/realstack` of the workspace.
pub fn default_root() -> PathBuf {
    crate::workspace_root().join("target").join("realstack")
}

/// The compute driver behind Nova.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// `xtask/realstack/nova_virt_realstack.py`: the fake driver with real image data, guests that
    /// power off after `install_seconds`.
    Fake,
    /// Nova's libvirt driver on libvirtd and QEMU (KVM where it can): the guests really run.
    Libvirt,
}

impl Compute {
    pub fn parse(name: &str) -> anyhow::Result<Compute> {
        match name {
            "fake" => Ok(Compute::Fake),
            "libvirt" => Ok(Compute::Libvirt),
            other => bail!("unknown compute mode `{other}`: fake or libvirt"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compute::Fake => "fake",
            Compute::Libvirt => "libvirt",
        }
    }

    /// The processes this mode runs, in start order.
    fn processes(self) -> Vec<&'static str> {
        PROCESSES.iter().copied().filter(|p| self == Compute::Libvirt || *p != "libvirtd").collect()
    }
}

/// The compute mode the cloud under `layout` was last brought up with.
pub fn running_compute(layout: &Dirs) -> Option<Compute> {
    Compute::parse(fs::read_to_string(layout.run().join("compute")).ok()?.trim()).ok()
}

/// The processes of one cloud, in start order (`down` stops them in reverse).
const PROCESSES: &[&str] = &[
    "mariadb",
    "epmd",
    "rabbitmq",
    "neutron",
    "libvirtd",
    "keystone",
    "glance",
    "placement",
    "nova-api",
    "nova-conductor",
    "nova-scheduler",
    "nova-compute",
];

/// The parsed arguments of `cargo xtask realstack`.
#[derive(Debug, PartialEq, Eq)]
struct RealstackArgs {
    root: PathBuf,
    compute: Compute,
    action: String,
    /// `--nova-patch` arguments as given (files or directories), expanded by [`expand_patch_args`].
    patch_args: Vec<PathBuf>,
    source: Option<PathBuf>,
    options: Vec<NovaOption>,
}

impl RealstackArgs {
    fn parse(args: &[String]) -> anyhow::Result<RealstackArgs> {
        let mut root = default_root();
        let mut action = None;
        let mut compute = Compute::Fake;
        let (mut patch_args, mut source, mut options) = (Vec::new(), None, Vec::new());
        let is_action = |a: &str| matches!(a, "up" | "down" | "status");
        let mut rest = args.iter().peekable();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--dir" => root = PathBuf::from(rest.next().context("--dir needs a directory")?),
                "--compute" => compute = Compute::parse(rest.next().context("--compute needs fake or libvirt")?)?,
                // Every argument up to the next flag or action is a patch file or directory.
                "--nova-patch" => {
                    let before = patch_args.len();
                    while let Some(next) = rest.next_if(|a| !a.starts_with('-') && !is_action(a)) {
                        patch_args.push(PathBuf::from(next));
                    }
                    if patch_args.len() == before {
                        bail!("--nova-patch needs a patch file or a directory of *.patch files");
                    }
                }
                "--nova-source" => {
                    if source.is_some() {
                        bail!("--nova-source is given twice");
                    }
                    source = Some(PathBuf::from(rest.next().context("--nova-source needs a Nova source tree")?));
                }
                "--nova-option" => {
                    options.push(NovaOption::parse(rest.next().context("--nova-option needs SECTION.KEY=VALUE")?)?)
                }
                a if is_action(a) && action.is_none() => action = Some(arg.clone()),
                other => bail!("unknown argument `{other}`\n{USAGE}"),
            }
        }
        let Some(action) = action else { bail!("{USAGE}") };
        if action != "up" && (!patch_args.is_empty() || source.is_some() || !options.is_empty()) {
            bail!("--nova-patch, --nova-source and --nova-option belong to `up`, not `{action}`");
        }
        Ok(RealstackArgs { root, compute, action, patch_args, source, options })
    }
}

/// `cargo xtask realstack ARGS`.
pub fn command(args: &[String]) -> anyhow::Result<()> {
    let args = RealstackArgs::parse(args)?;
    let layout = Dirs::new(args.root);
    match args.action.as_str() {
        "up" => {
            let request = NovaRequest {
                patches: expand_patch_args(&args.patch_args)?,
                source: args.source,
                options: args.options,
            };
            up_with(&layout, args.compute, &request).map(drop)
        }
        "down" => down(&layout),
        _ => {
            if status(&layout)? {
                Ok(())
            } else {
                bail!("the local real cloud is not (fully) running")
            }
        }
    }
}

const USAGE: &str = "usage: cargo xtask realstack [--dir DIR] [--compute fake|libvirt] up|down|status
  up also takes: [--nova-patch FILE|DIR...]... [--nova-source DIR] [--nova-option SECTION.KEY=VALUE]...";

/// Prints a progress line with the time since `started`.
fn say(started: Instant, message: impl AsRef<str>) {
    eprintln!("realstack [{:>5.1}s] {}", started.elapsed().as_secs_f64(), message.as_ref());
}

/// Brings the cloud up with `compute` behind stock Nova (the pinned release, no patches, no extra options), or
/// finds it so running, and returns the path of its clouds.yaml. A virtualenv whose Nova was patched is made
/// pristine again first.
/// Marks an `up` that failed while its processes started (a service died or never answered), as opposed to one
/// refused before anything started (a patch that does not apply, libvirtd that cannot run here).
#[derive(Debug)]
pub struct StartupFailed;

impl std::fmt::Display for StartupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the local real cloud's services did not all come up")
    }
}

pub fn up(layout: &Dirs, compute: Compute) -> anyhow::Result<PathBuf> {
    up_with(layout, compute, &NovaRequest::stock())
}

/// Brings the cloud up with `compute` behind the Nova `nova` asks for (its source, its patches applied to the
/// installed copy, its options in nova.conf), or finds it so running, and returns the path of its clouds.yaml.
/// A cloud running with another Nova is taken down first. A patch that does not apply fails before anything
/// starts, naming the patch and its rejected hunks, with Nova left pristine.
pub fn up_with(layout: &Dirs, compute: Compute, nova: &NovaRequest) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    nova.validate()?;
    let ports = Ports::from_base(PORT_BASE);
    let alive = alive_processes(layout);
    let options = nova::render_option_lines(&nova.options);
    let fully_running = alive.len() == compute.processes().len() && apis_answer(&ports);
    // What differs from the running cloud, if it runs: it is then taken down and brought up as asked.
    let differs = if running_compute(layout) != Some(compute) {
        Some("another compute driver")
    } else if nova::plan_for(layout, nova)? != nova::NovaPlan::Keep {
        Some("another Nova")
    } else if fs::read_to_string(layout.run().join("nova-options")).unwrap_or_default() != options {
        Some("other --nova-option settings")
    } else if !layout.clouds_yaml().is_file() {
        Some("no clouds.yaml")
    } else {
        None
    };
    if fully_running && differs.is_none() {
        say(started, format!("already running ({} processes), nothing to do", alive.len()));
        print_cloud_entry(layout)?;
        return Ok(layout.clouds_yaml());
    }
    if !alive.is_empty() {
        let why = match differs {
            Some(what) if fully_running => format!("running with {what}"),
            _ => format!("partly running ({})", alive.join(", ")),
        };
        say(started, format!("{why}: taking it down first"));
        down(layout)?;
    }
    check_ports_free(&ports)?;
    crate::apt::ensure("the local real cloud", APT_PACKAGES)?;
    for dir in [layout.logs(), layout.run(), layout.etc()] {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    ensure_venv(layout, started)?;
    nova::ensure(layout, nova, started)?;
    install_driver(layout)?;
    if compute == Compute::Libvirt {
        libvirt::prepare(layout, started)?;
    }

    // A fresh cloud every time: stale databases from an earlier run would only hide bugs.
    if layout.data().exists() {
        fs::remove_dir_all(layout.data()).with_context(|| format!("cannot clear {}", layout.data().display()))?;
    }
    for sub in ["mysql", "rabbitmq", "glance-images", "glance-staging", "locks", "nova/instances"] {
        fs::create_dir_all(layout.data().join(sub))?;
    }
    let _ = fs::remove_file(layout.clouds_yaml());
    let secrets = Secrets::generate()?;
    let values = template_values(layout, &ports, &secrets, compute);
    render_configs(layout, &values, &nova.options)?;
    let _ = fs::remove_file(layout.setup_log());
    fs::write(layout.run().join("compute"), compute.name())?;
    fs::write(layout.run().join("nova-options"), options)?;

    let result = start_all(layout, &ports, &secrets, compute, started);
    if let Err(e) = result {
        eprintln!("realstack: start-up failed: {e:#}; taking down what was started");
        let _ = down(layout);
        return Err(e.context(StartupFailed));
    }
    write_clouds_yaml(layout, &ports, &secrets)?;
    say(
        started,
        format!(
            "up ({} compute): Keystone {}, logs in {}",
            compute.name(),
            identity_url(&ports),
            layout.logs().display()
        ),
    );
    print_cloud_entry(layout)?;
    Ok(layout.clouds_yaml())
}

fn start_all(
    layout: &Dirs,
    ports: &Ports,
    secrets: &Secrets,
    compute: Compute,
    started: Instant,
) -> anyhow::Result<()> {
    // Databases and the message queue, while the Python services sync their schemas.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let queue = scope.spawn(|| start_rabbitmq(layout, ports, started));
        start_mariadb(layout, ports, secrets, started)?;
        let nova_db = scope.spawn(|| sync_nova(layout, started));
        let keystone = scope.spawn(|| setup_keystone(layout, ports, secrets, started));
        let glance = scope
            .spawn(|| setup_step(layout, "glance-manage", &["--config-file", "etc/glance/glance-api.conf", "db_sync"]));
        setup_step(layout, "placement-manage", &["--config-file", "etc/placement/placement.conf", "db", "sync"])?;
        say(started, "placement database synced");
        join(glance, "glance db_sync")?;
        say(started, "glance database synced");
        join(keystone, "keystone")?;
        join(queue, "rabbitmq")?;
        join(nova_db, "nova databases")?;
        Ok(())
    })?;

    let python = layout.bin("python");
    let neutron = vec![source_dir().join("neutron_stub.py").into_os_string(), ports.neutron.to_string().into()];
    spawn(layout, "neutron", &python, &neutron, &[])?;
    if compute == Compute::Libvirt {
        libvirt::start(layout, started)?;
    }
    for api in &SERVICE_APIS {
        api.start(layout, ports)?;
    }
    let nova_conf: OsString = layout.etc().join("nova/nova.conf").into();
    for name in ["nova-conductor", "nova-scheduler", "nova-compute"] {
        spawn(layout, name, &layout.bin(name), &["--config-file".into(), nova_conf.clone()], &[])?;
    }
    wait_http(layout, "neutron", ports.neutron, Duration::from_secs(60))?;
    for api in &SERVICE_APIS {
        api.wait(layout, ports, Duration::from_secs(90))?;
    }
    say(started, "glance, placement, nova-api and the neutron stand-in answer");
    map_compute_host(layout, started)?;
    Ok(())
}

fn join(handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<()>>, what: &str) -> anyhow::Result<()> {
    match handle.join() {
        Ok(result) => result.with_context(|| format!("{what} failed")),
        Err(_) => bail!("{what}: its thread panicked"),
    }
}

/// Random passwords for one run of the cloud; never printed.
#[derive(Clone)]
pub struct Secrets {
    admin: String,
    service: String,
    db: String,
    rabbit: String,
}

impl Secrets {
    fn generate() -> anyhow::Result<Secrets> {
        let mut random = [0u8; 64];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .context("cannot read /dev/urandom")?;
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Ok(Secrets {
            admin: hex(&random[0..16]),
            service: hex(&random[16..32]),
            db: hex(&random[32..48]),
            rabbit: hex(&random[48..64]),
        })
    }
}

fn identity_url(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}/v3", ports.keystone)
}

fn template_values(
    layout: &Dirs,
    ports: &Ports,
    secrets: &Secrets,
    compute: Compute,
) -> BTreeMap<&'static str, String> {
    let path = |p: PathBuf| p.display().to_string();
    BTreeMap::from([
        ("data", path(layout.data())),
        ("etc", path(layout.etc())),
        ("logs", path(layout.logs())),
        ("identity_url", identity_url(ports)),
        ("region", REGION.to_string()),
        ("service_password", secrets.service.clone()),
        ("db_password", secrets.db.clone()),
        ("rabbit_password", secrets.rabbit.clone()),
        ("mysql_port", ports.mysql.to_string()),
        ("rabbit_port", ports.rabbit.to_string()),
        ("novnc_port", ports.novnc.to_string()),
        (
            "compute_driver",
            match compute {
                Compute::Fake => "realstack.RealstackDriver",
                Compute::Libvirt => "libvirt.LibvirtDriver",
            }
            .to_string(),
        ),
        ("libvirt_virt_type", libvirt::virt_type().to_string()),
        ("libvirt_uri", libvirt::uri(layout)),
        (
            "privsep_helper",
            format!(
                "{} --config-file {}",
                layout.bin("privsep-helper").display(),
                layout.etc().join("nova/nova.conf").display()
            ),
        ),
    ])
}

/// Replaces every `{{name}}` in `template`; an unknown name is an error, so no placeholder slips through.
pub fn render(template: &str, values: &BTreeMap<&str, String>, origin: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").with_context(|| format!("{origin}: unclosed `{{{{`"))?;
        let name = &after[..end];
        let value = values.get(name).with_context(|| format!("{origin}: unknown placeholder `{{{{{name}}}}}`"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders every configuration file from its template; `nova_options` are written into nova.conf.
fn render_configs(
    layout: &Dirs,
    values: &BTreeMap<&'static str, String>,
    nova_options: &[NovaOption],
) -> anyhow::Result<()> {
    let templates = source_dir().join("templates");
    let read = |name: &str| {
        let path = templates.join(name);
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let authtoken = read("authtoken.inc")?;
    let files = [
        ("keystone", "keystone.conf", None),
        ("glance", "glance-api.conf", Some("glance")),
        ("placement", "placement.conf", Some("placement")),
        ("nova", "nova.conf", Some("nova")),
        ("rabbitmq", "rabbitmq.conf", None),
    ];
    for (dir, name, service_user) in files {
        let mut values = values.clone();
        if let Some(user) = service_user {
            values.insert("service_user", user.to_string());
            values.insert("authtoken", render(&authtoken, &values, "authtoken.inc")?);
        }
        let mut text = render(&read(name)?, &values, name)?;
        if name == "nova.conf" {
            text = nova::apply_options(&text, nova_options);
        }
        let target = layout.etc().join(dir);
        fs::create_dir_all(&target)?;
        write_private(&target.join(name), &text)?;
    }
    // The paste pipelines ship with the packages, under the virtualenv's etc/.
    for (dir, name) in [("glance", "glance-api-paste.ini"), ("nova", "api-paste.ini")] {
        let from = layout.venv().join("etc").join(dir).join(name);
        fs::copy(&from, layout.etc().join(dir).join(name))
            .with_context(|| format!("cannot copy {}", from.display()))?;
    }
    fs::write(layout.etc().join("rabbitmq/enabled_plugins"), "[].\n")?;
    Ok(())
}

/// Writes a file only its owner can read (it holds passwords).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn check_ports_free(ports: &Ports) -> anyhow::Result<()> {
    let busy: Vec<String> = ports
        .listening()
        .iter()
        .filter(|(_, port)| TcpListener::bind(("127.0.0.1", *port)).is_err())
        .map(|(who, port)| format!("{port} (for {who})"))
        .collect();
    if !busy.is_empty() {
        bail!(
            "ports in use on 127.0.0.1: {}. The local real cloud needs {}-{}; see `ss -ltnp` for who holds them",
            busy.join(", "),
            PORT_BASE,
            PORT_BASE + 9
        );
    }
    Ok(())
}

/// The virtualenv, rebuilt whenever requirements.txt or constraints.txt change.
fn ensure_venv(layout: &Dirs, started: Instant) -> anyhow::Result<()> {
    let requirements = source_dir().join("requirements.txt");
    let constraints = source_dir().join("constraints.txt");
    let wanted = format!("{}\n{}", fs::read_to_string(&requirements)?, fs::read_to_string(&constraints)?);
    let stamp = layout.venv().join("realstack-stamp.txt");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && layout.bin("uwsgi").is_file() {
        return Ok(());
    }
    say(started, format!("installing the pinned services into {} (pip, a few minutes)", layout.venv().display()));
    if layout.venv().exists() {
        fs::remove_dir_all(layout.venv())?;
    }
    let pip_started = Instant::now();
    crate::run(Command::new("python3").arg("-m").arg("venv").arg(layout.venv()))?;
    crate::run(
        Command::new(layout.bin("pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .arg("-c")
            .arg(&constraints),
    )?;
    fs::write(&stamp, wanted)?;
    nova::record_fresh_release(layout)?;
    say(started, format!("pip install took {:.0} s", pip_started.elapsed().as_secs_f64()));
    Ok(())
}

/// Copies the compute driver into the virtualenv's `nova/virt/` package.
fn install_driver(layout: &Dirs) -> anyhow::Result<()> {
    let site = nova::site_packages(layout)?.join("nova/virt");
    fs::copy(source_dir().join("nova_virt_realstack.py"), site.join("realstack.py"))
        .context("cannot install the compute driver")?;
    Ok(())
}

/// Starts `program` in its own process group, output appended to `logs/<name>.log`, pid in `run/<name>.pid`.
fn spawn(
    layout: &Dirs,
    name: &str,
    program: &Path,
    args: &[OsString],
    env: &[(&str, OsString)],
) -> anyhow::Result<u32> {
    let log_path = layout.logs().join(format!("{name}.log"));
    let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&layout.root)
        .env("PATH", search_path(layout))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().with_context(|| format!("cannot start {name} ({})", program.display()))?;
    let pid = child.id();
    fs::write(layout.pid_file(name), format!("{pid}\n"))?;
    eprintln!("realstack: started {name} (pid {pid}, log {})", log_path.display());
    Ok(pid)
}

fn search_path(layout: &Dirs) -> OsString {
    let mut paths = vec![layout.venv().join("bin"), PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Runs one set-up command from the virtualenv, output appended to `logs/setup.log`; fails with its tail.
fn setup_step(layout: &Dirs, program: &str, args: &[&str]) -> anyhow::Result<()> {
    setup_command(layout, Command::new(layout.bin(program)).args(args), &[])
}

fn setup_command(layout: &Dirs, command: &mut Command, stdin: &[u8]) -> anyhow::Result<()> {
    let output = command
        .current_dir(&layout.root)
        .env("PATH", search_path(layout))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin)?;
            }
            child.wait_with_output()
        })
        .with_context(|| format!("cannot run {command:?}"))?;
    let mut log = fs::OpenOptions::new().create(true).append(true).open(layout.setup_log())?;
    writeln!(log, "==> {:?} {:?}", command.get_program(), command.get_args().collect::<Vec<_>>())?;
    log.write_all(&output.stdout)?;
    log.write_all(&output.stderr)?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{:?} failed with {}:\n{}", command.get_program(), output.status, tail.join("\n"));
    }
    Ok(())
}

/// The services whose databases live in MariaDB: each user, and the databases it owns. Glance is here rather
/// than on sqlite, where its four uWSGI threads' concurrent writes failed with "database is locked" (HTTP 500).
/// Placement too: on SQLite, two servers scheduled at once fail one allocation with "database is locked" (a 500,
/// which Nova turns into "No valid host was found").
const DATABASES: &[(&str, &[&str])] =
    &[("nova", &["nova_api", "nova", "nova_cell0"]), ("glance", &["glance"]), ("placement", &["placement"])];

fn start_mariadb(layout: &Dirs, ports: &Ports, secrets: &Secrets, started: Instant) -> anyhow::Result<()> {
    let datadir = layout.data().join("mysql");
    let socket = layout.run().join("mysql.sock");
    setup_command(
        layout,
        Command::new("mariadb-install-db").args([
            "--no-defaults".into(),
            format!("--datadir={}", datadir.display()),
            "--user=root".into(),
            "--auth-root-authentication-method=normal".into(),
            "--skip-test-db".into(),
        ]),
        &[],
    )?;
    let args: Vec<OsString> = [
        "--no-defaults".to_string(),
        format!("--datadir={}", datadir.display()),
        format!("--socket={}", socket.display()),
        format!("--port={}", ports.mysql),
        "--bind-address=127.0.0.1".into(),
        format!("--pid-file={}", layout.run().join("mariadbd-own.pid").display()),
        "--user=root".into(),
        "--skip-log-bin".into(),
        "--skip-name-resolve".into(),
        "--innodb-buffer-pool-size=128M".into(),
        "--innodb-flush-log-at-trx-commit=0".into(),
        "--innodb-doublewrite=0".into(),
        "--max-connections=300".into(),
        "--character-set-server=utf8mb4".into(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    spawn(layout, "mariadb", Path::new("/usr/sbin/mariadbd"), &args, &[])?;
    wait_tcp(layout, "mariadb", ports.mysql, Duration::from_secs(60))?;
    let mut sql = String::new();
    for (user, databases) in DATABASES {
        sql.push_str(&format!("CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{}';\n", secrets.db));
        for database in *databases {
            sql.push_str(&format!(
                "CREATE DATABASE {database};\nGRANT ALL PRIVILEGES ON {database}.* TO '{user}'@'127.0.0.1';\n"
            ));
        }
    }
    setup_command(
        layout,
        Command::new("mariadb").args([
            "--no-defaults".to_string(),
            format!("--socket={}", socket.display()),
            "-uroot".into(),
        ]),
        sql.as_bytes(),
    )?;
    say(started, format!("mariadb listens on 127.0.0.1:{}", ports.mysql));
    Ok(())
}

fn start_rabbitmq(layout: &Dirs, ports: &Ports, started: Instant) -> anyhow::Result<()> {
    // epmd first, in our own process group: left to RabbitMQ it would daemonize out of reach of `down`.
    let epmd_args: Vec<OsString> =
        ["-port", &ports.epmd.to_string(), "-address", "127.0.0.1"].iter().map(OsString::from).collect();
    spawn(layout, "epmd", Path::new("/usr/bin/epmd"), &epmd_args, &[("ERL_EPMD_ADDRESS", "127.0.0.1".into())])?;
    wait_tcp(layout, "epmd", ports.epmd, Duration::from_secs(20))?;
    let data = layout.data().join("rabbitmq");
    let etc = layout.etc().join("rabbitmq");
    let env: Vec<(&str, OsString)> = vec![
        ("HOME", data.clone().into()),
        ("RABBITMQ_NODENAME", "realstack@localhost".into()),
        ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
        ("RABBITMQ_NODE_PORT", ports.rabbit.to_string().into()),
        ("RABBITMQ_DIST_PORT", ports.rabbit_dist.to_string().into()),
        ("ERL_EPMD_PORT", ports.epmd.to_string().into()),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
        ("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}".into()),
        ("RABBITMQ_CONFIG_FILE", etc.join("rabbitmq.conf").into()),
        ("RABBITMQ_ADVANCED_CONFIG_FILE", etc.join("advanced.config").into()),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", etc.join("enabled_plugins").into()),
        ("RABBITMQ_CONF_ENV_FILE", etc.join("rabbitmq-env.conf").into()),
        ("RABBITMQ_MNESIA_BASE", data.join("mnesia").into()),
        ("RABBITMQ_LOG_BASE", layout.logs().into()),
        ("RABBITMQ_LOGS", "-".into()),
        ("RABBITMQ_PID_FILE", layout.run().join("rabbitmq-own.pid").into()),
    ];
    spawn(layout, "rabbitmq", Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server"), &[], &env)?;
    wait_tcp(layout, "rabbitmq", ports.rabbit, Duration::from_secs(90))?;
    say(started, format!("rabbitmq listens on 127.0.0.1:{}", ports.rabbit));
    Ok(())
}

fn setup_keystone(layout: &Dirs, ports: &Ports, secrets: &Secrets, started: Instant) -> anyhow::Result<()> {
    let conf = "etc/keystone/keystone.conf";
    let (user, group) = (id("-un")?, id("-gn")?);
    setup_step(layout, "keystone-manage", &["--config-file", conf, "db_sync"])?;
    for repository in ["fernet_setup", "credential_setup"] {
        setup_step(
            layout,
            "keystone-manage",
            &["--config-file", conf, repository, "--keystone-user", &user, "--keystone-group", &group],
        )?;
    }
    let url = format!("http://127.0.0.1:{}/v3", ports.keystone);
    setup_command(
        layout,
        Command::new(layout.bin("keystone-manage"))
            .args(["--config-file", conf, "bootstrap", "--bootstrap-region-id", REGION])
            .args(["--bootstrap-admin-url", &url, "--bootstrap-public-url", &url, "--bootstrap-internal-url", &url])
            .env("OS_BOOTSTRAP_PASSWORD", &secrets.admin),
        &[],
    )?;
    say(started, "keystone bootstrapped");
    KEYSTONE.start(layout, ports)?;
    KEYSTONE.wait(layout, ports, Duration::from_secs(60))?;
    let endpoints = endpoints_json(ports);
    setup_command(
        layout,
        Command::new(layout.bin("python"))
            .arg(source_dir().join("register.py"))
            .env("REALSTACK_AUTH_URL", &url)
            .env("REALSTACK_ADMIN_PASSWORD", &secrets.admin)
            .env("REALSTACK_SERVICE_PASSWORD", &secrets.service)
            .env("REALSTACK_REGION", REGION)
            .env("REALSTACK_ENDPOINTS", endpoints),
        &[],
    )?;
    say(started, "keystone serves; service users and the catalog are registered");
    Ok(())
}

/// The catalog as the JSON object register.py reads.
fn endpoints_json(ports: &Ports) -> String {
    let entries = [
        ("image", "glance", format!("http://127.0.0.1:{}", ports.glance)),
        ("placement", "placement", format!("http://127.0.0.1:{}", ports.placement)),
        ("compute", "nova", format!("http://127.0.0.1:{}/v2.1", ports.nova)),
        ("network", "neutron", format!("http://127.0.0.1:{}", ports.neutron)),
    ];
    let body: Vec<String> =
        entries.iter().map(|(kind, name, url)| format!("\"{kind}\": [\"{name}\", \"{url}\"]")).collect();
    format!("{{{}}}", body.join(", "))
}

fn id(flag: &str) -> anyhow::Result<String> {
    let out = Command::new("id").arg(flag).output().context("cannot run id")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn sync_nova(layout: &Dirs, started: Instant) -> anyhow::Result<()> {
    let conf = "etc/nova/nova.conf";
    setup_step(layout, "nova-manage", &["--config-file", conf, "api_db", "sync"])?;
    setup_step(layout, "nova-manage", &["--config-file", conf, "cell_v2", "map_cell0"])?;
    setup_step(layout, "nova-manage", &["--config-file", conf, "cell_v2", "create_cell", "--name", "cell1"])?;
    setup_step(layout, "nova-manage", &["--config-file", conf, "db", "sync"])?;
    say(started, "nova databases synced, cells mapped");
    Ok(())
}

/// Keystone, started before the others: their setup registers them in it.
const KEYSTONE: Api = Api {
    name: "keystone",
    port: |ports| ports.keystone,
    module: "keystone.wsgi.api:application",
    config_env: "OS_KEYSTONE_CONFIG_DIR",
    chunked_uploads: false,
};

/// The other APIs served under uWSGI.
const SERVICE_APIS: [Api; 3] = [
    Api {
        name: "glance",
        port: |ports| ports.glance,
        module: "glance.wsgi.api:application",
        config_env: "OS_GLANCE_CONFIG_DIR",
        chunked_uploads: true,
    },
    Api {
        name: "placement",
        port: |ports| ports.placement,
        module: "placement.wsgi.api:application",
        config_env: "OS_PLACEMENT_CONFIG_DIR",
        chunked_uploads: false,
    },
    Api {
        name: "nova-api",
        port: |ports| ports.nova,
        module: "nova.wsgi.osapi_compute:application",
        config_env: "OS_NOVA_CONFIG_DIR",
        chunked_uploads: false,
    },
];

/// One API served under uWSGI.
struct Api {
    name: &'static str,
    port: fn(&Ports) -> u16,
    module: &'static str,
    config_env: &'static str,
    /// Nova uploads snapshots chunked; without uWSGI's chunked-input flags Glance sees an empty body.
    chunked_uploads: bool,
}

impl Api {
    /// Starts the API under uWSGI with the flags it needs (docs/real-cloud.md#uwsgi).
    fn start(&self, layout: &Dirs, ports: &Ports) -> anyhow::Result<()> {
        let config_dir = layout.etc().join(self.name.trim_end_matches("-api"));
        let mut args: Vec<OsString> = [
            "--master",
            "--processes",
            "1",
            "--threads",
            "4",
            "--enable-threads",
            // The application is loaded in the worker, after the fork: loaded in the master, its
            // threads (Nova's cell worker pool, oslo.messaging's heartbeat) do not survive the fork
            // while the locks they held do, and the worker could hang on its first log line.
            "--lazy-apps",
            "--die-on-term",
            "--need-app",
            // Glance's exit handler waits for its image-cache thread, which never ends: give workers 3 s.
            "--worker-reload-mercy",
            "3",
            "--buffer-size",
            "65535",
            "--add-header",
            "Connection: close",
            "--http-socket",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(format!("127.0.0.1:{}", (self.port)(ports)).into());
        args.extend(["--module".into(), self.module.into(), "--home".into(), layout.venv().into_os_string()]);
        if self.chunked_uploads {
            args.extend(
                ["--http-auto-chunked", "--http-raw-body", "--chunked-input-limit", "10000000"]
                    .iter()
                    .map(OsString::from),
            );
        }
        spawn(layout, self.name, &layout.bin("uwsgi"), &args, &[(self.config_env, config_dir.into())])?;
        Ok(())
    }

    /// Waits for the API to answer HTTP; one that does not answer in `timeout` is killed and started
    /// once more (a Python service can wedge while starting on a loaded machine), then waited for again.
    fn wait(&self, layout: &Dirs, ports: &Ports, timeout: Duration) -> anyhow::Result<()> {
        let port = (self.port)(ports);
        let Err(first) = wait_http(layout, self.name, port, timeout) else { return Ok(()) };
        eprintln!("realstack: {first:#}; the end of its log:\n{}", log_tail(layout, self.name, 30));
        eprintln!("realstack: restarting {} once", self.name);
        if let Some(group) = read_pid(layout, self.name) {
            signal_group(group, "KILL");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !group_members(group).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.start(layout, ports)?;
        wait_http(layout, self.name, port, timeout).map_err(|second| {
            anyhow::anyhow!("{second:#} (after a restart); the end of its log:\n{}", log_tail(layout, self.name, 40))
        })
    }
}

/// Waits for the compute node to register, then maps it into cell1 (discover_hosts).
fn map_compute_host(layout: &Dirs, started: Instant) -> anyhow::Result<()> {
    let socket = layout.run().join("mysql.sock");
    let query = |sql: &str| -> anyhow::Result<String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults".to_string(), format!("--socket={}", socket.display()), "-uroot".into()])
            .args(["-N", "-B", "-e", sql])
            .output()
            .context("cannot run mariadb")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        // nova-compute registers through the conductor, over the message queue: any of them gone ends the wait.
        ensure_all_alive(layout)?;
        if query("SELECT COUNT(*) FROM nova.compute_nodes WHERE deleted = 0")? != "0" {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "nova-compute did not register a compute node in 180 s; the end of {}:\n{}",
                layout.logs().join("nova-compute.log").display(),
                log_tail(layout, "nova-compute", 30)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    setup_step(layout, "nova-manage", &["--config-file", "etc/nova/nova.conf", "cell_v2", "discover_hosts"])?;
    if query("SELECT COUNT(*) FROM nova_api.host_mappings")? == "0" {
        bail!("discover_hosts did not map the compute host (see {})", layout.setup_log().display());
    }
    say(started, "the compute host is registered and mapped into cell1");
    // nova-compute reports its resources to Placement a moment after it registers: until then the scheduler finds no
    // allocation candidate, and the first servers fail with "No valid host was found".
    let inventories = || query("SELECT COUNT(*) FROM placement.inventories");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = inventories()?;
        if !count.is_empty() && count != "0" {
            break;
        }
        ensure_alive(layout, "nova-compute")?;
        if Instant::now() > deadline {
            bail!(
                "nova-compute reported no resources to Placement in 120 s (see {})",
                layout.logs().join("nova-compute.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    say(started, "the compute host's resources are in Placement");
    Ok(())
}

/// Fails when `name` has died, quoting the end of its log.
fn ensure_alive(layout: &Dirs, name: &str) -> anyhow::Result<()> {
    if read_pid(layout, name).is_some_and(pid_alive) {
        return Ok(());
    }
    bail!(
        "{name} exited; the end of {}:\n{}",
        layout.logs().join(format!("{name}.log")).display(),
        log_tail(layout, name, 20)
    )
}

/// Fails naming the first process `up` started that is gone, with the end of its log.
fn ensure_all_alive(layout: &Dirs) -> anyhow::Result<()> {
    for name in PROCESSES.iter().filter(|name| read_pid(layout, name).is_some()) {
        ensure_alive(layout, name)?;
    }
    Ok(())
}

/// The last `lines` lines of `logs/<name>.log`, so that a failure in CI shows its cause.
fn log_tail(layout: &Dirs, name: &str, lines: usize) -> String {
    let text = fs::read_to_string(layout.logs().join(format!("{name}.log"))).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(lines).collect::<Vec<_>>().into_iter().rev().collect();
    tail.join("\n")
}

fn wait_tcp(layout: &Dirs, name: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        ensure_alive(layout, name)?;
        if Instant::now() > deadline {
            bail!("{name} does not listen on 127.0.0.1:{port} after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The status code of `GET /` on 127.0.0.1:`port`, if anything answers HTTP there.
fn http_status(port: u16) -> Option<u16> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.write_all(format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).ok()?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

fn wait_http(layout: &Dirs, name: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if http_status(port).is_some() {
            return Ok(());
        }
        ensure_alive(layout, name)?;
        if Instant::now() > deadline {
            bail!("{name} does not answer HTTP on 127.0.0.1:{port} after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn apis_answer(ports: &Ports) -> bool {
    [ports.keystone, ports.glance, ports.placement, ports.nova, ports.neutron].iter().all(|p| http_status(*p).is_some())
}

fn read_pid(layout: &Dirs, name: &str) -> Option<u32> {
    fs::read_to_string(layout.pid_file(name)).ok()?.trim().parse().ok()
}

/// `/proc/<pid>/stat`: (state, process group).
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last `)`.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((fields.first()?.chars().next()?, fields.get(2)?.parse().ok()?))
}

fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Live processes (not zombies) whose process group is `group`.
fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(state, pgrp)| pgrp == group && state != 'Z' && state != 'X'))
        .collect()
}

/// The names of the cloud's processes that are alive.
fn alive_processes(layout: &Dirs) -> Vec<String> {
    PROCESSES.iter().filter(|n| read_pid(layout, n).is_some_and(pid_alive)).map(|n| n.to_string()).collect()
}

/// Stops every process `up` started (their whole process groups), then checks nothing is left.
///
/// The groups are signalled in two waves. First every service at once, before the databases they use; uWSGI gets
/// SIGINT (its immediate shutdown: on SIGTERM Glance waits for its worker threads), the rest SIGTERM. Then, once the
/// first wave is gone, epmd: an Erlang node that finds no epmd while it shuts down (rabbitmq-server's stop runs
/// one) starts an epmd of its own, detached from every group, which would hold the port after `down`. Whatever is
/// still there 15 s after its signal gets SIGKILL.
pub fn down(layout: &Dirs) -> anyhow::Result<()> {
    let started = Instant::now();
    if read_pid(layout, "libvirtd").is_some_and(pid_alive) {
        libvirt::remove_domains(layout);
    }
    let (last, first): (Vec<&str>, Vec<&str>) =
        PROCESSES.iter().rev().copied().partition(|name| STOPPED_LAST.contains(name));
    let mut running = stop_groups(layout, &first);
    running.extend(stop_groups(layout, &last));
    std::thread::sleep(Duration::from_millis(200));
    for guest in libvirt::stray_guests(layout) {
        eprintln!("realstack: a QEMU guest (pid {guest}) outlived libvirtd: SIGKILL");
        let _ = Command::new("kill").args(["-KILL", &guest.to_string()]).status();
    }
    for (name, group) in &running {
        let left = group_members(*group);
        if !left.is_empty() {
            bail!("{name}: processes {left:?} of group {group} survive SIGKILL");
        }
        let _ = fs::remove_file(layout.pid_file(name));
    }
    let ports = Ports::from_base(PORT_BASE);
    // An epmd started by an Erlang node behind our back (see above) is out of every group: ask it to leave.
    if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], ports.epmd)), Duration::from_millis(200)).is_ok() {
        eprintln!("realstack: an epmd outside the cloud's processes holds port {}: asking it to exit", ports.epmd);
        let _ = Command::new("epmd")
            .args(["-port", &ports.epmd.to_string(), "-kill"])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(std::process::Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while check_ports_free(&ports).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    check_ports_free(&ports).context("after stopping every process")?;
    say(
        started,
        format!("down: stopped {} processes, every port of {PORT_BASE}-{} is free", running.len(), PORT_BASE + 9),
    );
    Ok(())
}

/// What `down` stops only after the rest is gone.
const STOPPED_LAST: &[&str] = &["epmd"];

/// Signals the process groups of `names` at once, waits up to 15 s for them to end, SIGKILLs what is left, and
/// returns the groups it signalled.
fn stop_groups<'a>(layout: &Dirs, names: &[&'a str]) -> Vec<(&'a str, u32)> {
    let mut running = Vec::new();
    for name in names {
        let Some(group) = read_pid(layout, name) else { continue };
        let members = group_members(group);
        if members.is_empty() {
            let _ = fs::remove_file(layout.pid_file(name));
            continue;
        }
        let signal = if is_uwsgi(name) { "INT" } else { "TERM" };
        eprintln!("realstack: stopping {name} (SIG{signal} to process group {group}: {} processes)", members.len());
        signal_group(group, signal);
        running.push((*name, group));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while running.iter().any(|(_, group)| !group_members(*group).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (name, group) in &running {
        if !group_members(*group).is_empty() {
            eprintln!("realstack: {name} still runs 15 s after the signal: SIGKILL");
            signal_group(*group, "KILL");
        }
    }
    running
}

fn is_uwsgi(name: &str) -> bool {
    std::iter::once(&KEYSTONE).chain(&SERVICE_APIS).any(|api| api.name == name)
}

fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill").args([format!("-{signal}"), "--".into(), format!("-{group}")]).status();
}

/// Prints each process and API; true when all are up.
pub fn status(layout: &Dirs) -> anyhow::Result<bool> {
    let ports = Ports::from_base(PORT_BASE);
    let mut all = true;
    let compute = running_compute(layout).unwrap_or(Compute::Fake);
    println!("compute          {}", compute.name());
    for name in compute.processes() {
        let state = match read_pid(layout, name) {
            Some(pid) if pid_alive(pid) => format!("running (pid {pid})"),
            Some(pid) => {
                all = false;
                format!("dead (pid {pid})")
            }
            None => {
                all = false;
                "not started".to_string()
            }
        };
        println!("{name:<16} {state}");
    }
    for (name, port) in [
        ("keystone", ports.keystone),
        ("glance", ports.glance),
        ("placement", ports.placement),
        ("nova-api", ports.nova),
        ("neutron", ports.neutron),
    ] {
        let answer = http_status(port).map(|s| format!("HTTP {s}")).unwrap_or_else(|| "no answer".into());
        all &= answer != "no answer";
        println!("{name:<16} http://127.0.0.1:{port}/ {answer}");
    }
    for line in nova::status_lines(layout) {
        println!("{line}");
    }
    println!("logs in {}", layout.logs().display());
    Ok(all)
}

fn write_clouds_yaml(layout: &Dirs, ports: &Ports, secrets: &Secrets) -> anyhow::Result<()> {
    write_private(&layout.clouds_yaml(), &clouds_entry(ports, &secrets.admin))
}

fn clouds_entry(ports: &Ports, password: &str) -> String {
    format!(
        "clouds:\n  {CLOUD_NAME}:\n    auth:\n      auth_url: {}\n      username: admin\n      password: {password}\n      \
         project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    \
         region_name: {REGION}\n    identity_api_version: 3\n    interface: public\n",
        identity_url(ports)
    )
}

/// Prints the clouds.yaml entry, the password left in the file only.
fn print_cloud_entry(layout: &Dirs) -> anyhow::Result<()> {
    let ports = Ports::from_base(PORT_BASE);
    let redacted = clouds_entry(&ports, &format!("<in {}>", layout.clouds_yaml().display()));
    println!("# clouds.yaml entry (written to {}):\n{redacted}", layout.clouds_yaml().display());
    println!("# use: OS_CLIENT_CONFIG_FILE={} openstack --os-cloud {CLOUD_NAME} ...", layout.clouds_yaml().display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_every_placeholder_and_rejects_unknown_ones() {
        let values = BTreeMap::from([("a", "1".to_string()), ("b", "two".to_string())]);
        assert_eq!(render("x={{a}} y={{b}}{{a}}", &values, "t").unwrap(), "x=1 y=two1");
        let err = render("{{c}}", &values, "file.conf").unwrap_err().to_string();
        assert_eq!(err, "file.conf: unknown placeholder `{{c}}`");
        assert!(render("{{a", &values, "f").unwrap_err().to_string().contains("unclosed"));
    }

    #[test]
    fn every_template_renders_with_the_values_up_uses() {
        let layout = Dirs::new("/tmp/realstack-test");
        let ports = Ports::from_base(PORT_BASE);
        let secrets = Secrets { admin: "a".into(), service: "s".into(), db: "d".into(), rabbit: "r".into() };
        let mut values = template_values(&layout, &ports, &secrets, Compute::Libvirt);
        values.insert("service_user", "nova".into());
        let authtoken = fs::read_to_string(source_dir().join("templates/authtoken.inc")).unwrap();
        values.insert("authtoken", render(&authtoken, &values, "authtoken.inc").unwrap());
        for entry in fs::read_dir(source_dir().join("templates")).unwrap() {
            let path = entry.unwrap().path();
            let text = fs::read_to_string(&path).unwrap();
            let rendered = render(&text, &values, &path.display().to_string()).unwrap();
            assert!(!rendered.contains("{{"), "{}", path.display());
        }
    }

    #[test]
    fn ports_are_distinct_and_inside_the_documented_range() {
        let ports = Ports::from_base(PORT_BASE);
        let mut all: Vec<u16> = ports.listening().iter().map(|(_, p)| *p).collect();
        all.push(ports.novnc);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|p| (PORT_BASE..=PORT_BASE + 9).contains(p)));
        let displays = libvirt::GUEST_DISPLAY_PORTS;
        assert!(all.iter().all(|p| !displays.contains(p)), "the guests' displays have ports of their own");
        assert!(*displays.start() > 5900 + 100, "away from VNC's usual 5900 and up");
    }

    fn parse(args: &[&str]) -> anyhow::Result<RealstackArgs> {
        RealstackArgs::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn nova_flags_take_files_up_to_the_next_flag_or_action() {
        let plain = parse(&["up"]).unwrap();
        assert_eq!((plain.root, plain.compute, plain.action.as_str()), (default_root(), Compute::Fake, "up"));
        assert!(plain.patch_args.is_empty() && plain.source.is_none() && plain.options.is_empty());

        let args = parse(&[
            "--dir",
            "/tmp/rs",
            "--compute",
            "libvirt",
            "--nova-patch",
            "a.patch",
            "series/",
            "--nova-option",
            "libvirt.iso_install_root_disk=True",
            "--nova-patch",
            "z.patch",
            "up",
            "--nova-source",
            "/src/nova",
            "--nova-option",
            "libvirt.virtio_win_image=virtio-win",
        ])
        .unwrap();
        assert_eq!(args.root, PathBuf::from("/tmp/rs"));
        assert_eq!(args.compute, Compute::Libvirt);
        assert_eq!(args.action, "up");
        assert_eq!(args.patch_args, [PathBuf::from("a.patch"), "series/".into(), "z.patch".into()]);
        assert_eq!(args.source, Some(PathBuf::from("/src/nova")));
        let options: Vec<String> = args.options.iter().map(|o| o.to_string()).collect();
        assert_eq!(options, nova::ISO_INSTALL_OPTIONS);

        let after_action = parse(&["up", "--nova-patch", "x.patch"]).unwrap();
        assert_eq!(after_action.patch_args, [PathBuf::from("x.patch")]);

        for (bad, says) in [
            (&["--nova-patch", "up"][..], "--nova-patch needs a patch file"),
            (&["--nova-patch", "--compute", "fake", "up"], "--nova-patch needs a patch file"),
            (&["--nova-patch", "x.patch", "down"], "belong to `up`, not `down`"),
            (&["--nova-option", "libvirt.x=1", "status"], "belong to `up`, not `status`"),
            (&["--nova-source", "a", "--nova-source", "b", "up"], "given twice"),
            (&["--nova-option", "libvirt=1", "up"], "expected SECTION.KEY=VALUE"),
            (&["--nova-option"], "needs SECTION.KEY=VALUE"),
            (&["--nova-patch", "x.patch"], "usage:"),
            (&["up", "--frobnicate"], "unknown argument `--frobnicate`"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn proc_stat_reads_this_process() {
        let (state, group) = proc_stat(std::process::id()).expect("own stat");
        assert!(state != 'Z');
        assert!(group > 0);
        assert!(group_members(group).contains(&std::process::id()) || group != std::process::id());
    }
}
