//! Project automation: `cargo xtask test` installs what the tests need (Debian packages, the `openstack` CLI in a virtualenv), brings up the local real cloud and runs the tests; `cargo xtask realstack up|down|status` manages that cloud; `cargo xtask bench` runs the benchmarks.

mod realstack;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Debian packages the test suite uses: (package, a binary that shows it is installed, why).
const APT_PACKAGES: &[(&str, &str, &str)] = &[
    ("qemu-utils", "qemu-img", "qemu-img: mockstack's instance disks and snapshots are real qcow2 files"),
    ("xorriso", "xorriso", "cross-checks mockstack's ISO 9660 writer and reader"),
    ("genisoimage", "isoinfo", "isoinfo: a second ISO 9660 reader for the cross-checks"),
    ("mtools", "mdir", "mdir: cross-checks the FAT driver floppies"),
    ("libvirt-clients", "virt-xml-validate", "virt-xml-validate: libvirt's own schema check of domain XML"),
    ("libxml2-utils", "xmllint", "xmllint: what virt-xml-validate runs the schema with"),
    ("qemu-system-x86", "qemu-system-x86_64", "boots the generated installer ISOs on a real (emulated) PC"),
    ("python3-venv", "", "the virtualenv for the openstack CLI"),
];

/// The OpenStack client versions the acceptance tests drive mockstack with (REALSTACK-NOTES.md).
const PIP_PACKAGES: &[&str] = &["python-openstackclient==10.5.0", "openstacksdk==4.22.0"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("setup") => setup().map(|_| ()),
        Some("ci") => ci(),
        Some("realstack") => realstack::command(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test [--no-realstack] [cargo test args]|setup|ci|realstack [--dir DIR] up|down|status\
                 |bench [--realstack] [--quick] [--json FILE] [--only PART]...>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn have(binary: &str) -> bool {
    !binary.is_empty()
        && std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
            .unwrap_or(false)
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Installs the packages of `packages` (package, probe binary, why) that are missing.
pub(crate) fn ensure_apt(packages: &[(&str, &str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&(&str, &str, &str)> = packages
        .iter()
        .filter(|(package, bin, _)| {
            if bin.is_empty() {
                !Command::new("dpkg").args(["-s", package]).output().map(|o| o.status.success()).unwrap_or(false)
            } else {
                !have(bin)
            }
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (package, _, why) in &missing {
        eprintln!("xtask: installing {package}: {why}");
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut full: Vec<&str> = sudo.to_vec();
        full.push("apt-get");
        full.extend_from_slice(args);
        let mut cmd = Command::new(full[0]);
        cmd.args(&full[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(missing.iter().map(|(package, _, _)| *package));
    apt(&install)
}

/// Installs missing Debian packages and the openstack CLI; returns the CLI's path.
fn setup() -> anyhow::Result<PathBuf> {
    ensure_apt(APT_PACKAGES)?;
    let venv = workspace_root().join(".venv");
    let cli = venv.join("bin").join("openstack");
    if !cli.is_file() {
        eprintln!("xtask: installing the openstack CLI into {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(PIP_PACKAGES))?;
    }
    Ok(cli)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// `cargo xtask test [--no-realstack] [--no-libvirt] [ARGS]`: set up, bring the local real cloud up
/// with the fake compute driver, run `cargo test --workspace ARGS` with `ISOHARNESS_REALSTACK_CLOUDS`
/// naming its clouds.yaml, and take the cloud down again whatever the tests did. Then, for a whole
/// run (no ARGS), bring it up again on Nova's libvirt driver and run the real-cloud suite
/// (`harness/tests/realstack.rs`) there. `--no-realstack` skips the cloud (its suites then report
/// their trials as ignored), `--no-libvirt` the second round; a machine where libvirtd cannot run
/// skips the second round with a warning.
fn test(args: &[String]) -> anyhow::Result<()> {
    let flags = ["--no-realstack", "--no-libvirt"];
    let with_realstack = !args.iter().any(|a| a == "--no-realstack");
    let with_libvirt = !args.iter().any(|a| a == "--no-libvirt");
    let extra: Vec<&String> = args.iter().filter(|a| !flags.contains(&a.as_str())).collect();
    let whole_run = extra.is_empty();
    let cli = setup()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["test", "--workspace"])
        .args(extra)
        .env("ISOHARNESS_OPENSTACK_CLI", cli);
    if !with_realstack {
        command.env_remove("ISOHARNESS_REALSTACK_CLOUDS");
        return run(&mut command);
    }
    let layout = realstack::Layout::new(realstack::default_root());
    test_on_realstack(&layout, realstack::Compute::Fake, &mut command)?;
    if !(whole_run && with_libvirt) {
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut suite = Command::new(cargo);
    suite
        .current_dir(workspace_root())
        .args(["test", "-p", "harness", "--test", "realstack"])
        .env("ISOHARNESS_REALSTACK_COMPUTE", "libvirt")
        .env("ISOHARNESS_REALSTACK_LIBVIRT_URI", realstack::libvirt_uri(&layout));
    match test_on_realstack(&layout, realstack::Compute::Libvirt, &mut suite) {
        Err(e) if e.downcast_ref::<realstack::LibvirtUnavailable>().is_some() => {
            eprintln!("xtask: WARNING: the libvirt round is skipped: {e:#}");
            Ok(())
        }
        other => other,
    }
}

/// Brings the local real cloud up with `compute`, runs `command` against it and takes it down.
fn test_on_realstack(
    layout: &realstack::Layout,
    compute: realstack::Compute,
    command: &mut Command,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let clouds = match realstack::up(layout, compute) {
        Ok(clouds) => clouds,
        Err(e) => {
            let _ = realstack::down(layout);
            return Err(e.context(format!(
                "cannot bring the local real cloud up with the {} compute driver (`cargo xtask test --no-realstack` \
                 skips it)",
                compute.name()
            )));
        }
    };
    eprintln!("xtask: the local real cloud ({}) came up in {:.0} s", compute.name(), started.elapsed().as_secs_f64());
    let tests_started = std::time::Instant::now();
    let result = run(command.env("ISOHARNESS_REALSTACK_CLOUDS", &clouds));
    eprintln!("xtask: the tests took {:.0} s", tests_started.elapsed().as_secs_f64());
    let stopped = realstack::down(layout);
    match (result, stopped) {
        (Err(tests), _) => Err(tests),
        (Ok(()), Err(down)) => Err(down.context("the tests passed but the local real cloud did not go down cleanly")),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// `cargo xtask bench [--realstack] [BENCH ARGS]`: the benchmark binary (`bench/`), built in release mode, run from
/// the workspace root. The real-service columns are measured when `ISOHARNESS_REALSTACK_CLOUDS` names a real cloud's
/// clouds.yaml; `--realstack` brings the local real cloud up for the run (and down again if it was not running).
fn bench(args: &[String]) -> anyhow::Result<()> {
    let with_realstack = args.iter().any(|a| a == "--realstack");
    let extra: Vec<&String> = args.iter().filter(|a| *a != "--realstack").collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args(["run", "--release", "-q", "-p", "bench", "--"]).args(extra);
    if !with_realstack || std::env::var_os("ISOHARNESS_REALSTACK_CLOUDS").is_some() {
        return run(&mut command);
    }
    let layout = realstack::Layout::new(realstack::default_root());
    // Quietly: the benchmark's table is the only thing this command prints on stdout.
    let keystone = std::net::SocketAddr::from(([127, 0, 0, 1], realstack::PORT_BASE));
    let was_running = layout.clouds_yaml().is_file()
        && std::net::TcpStream::connect_timeout(&keystone, std::time::Duration::from_secs(1)).is_ok();
    let clouds =
        match if was_running { Ok(layout.clouds_yaml()) } else { realstack::up(&layout, realstack::Compute::Fake) } {
            Ok(clouds) => clouds,
            Err(e) => {
                if !was_running {
                    let _ = realstack::down(&layout);
                }
                return Err(e.context("cannot bring the local real cloud up (run without --realstack to skip it)"));
            }
        };
    let result = run(command.env("ISOHARNESS_REALSTACK_CLOUDS", &clouds));
    if was_running {
        return result;
    }
    let stopped = realstack::down(&layout);
    match (result, stopped) {
        (Err(bench), _) => Err(bench),
        (Ok(()), Err(down)) => Err(down.context("the benchmark ran but the local real cloud did not go down cleanly")),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// `cargo xtask ci`: the tests, then formatting, lints and docs, as `.ci/run` does.
fn ci() -> anyhow::Result<()> {
    test(&[])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    run(Command::new(&cargo).current_dir(&root).args(["fmt", "--all", "--check"]))?;
    run(Command::new(&cargo).current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    Ok(())
}
