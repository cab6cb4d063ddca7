//! Project automation: `cargo xtask test` installs what the tests need (Debian packages, the `openstack` CLI in a virtualenv), compiles the tests, brings up the local real cloud and runs them; `cargo xtask realstack up|down|status` manages that cloud; `cargo xtask bench` runs the benchmarks; `cargo xtask ci` is CI's whole job.

mod apt;
mod real_matrix;
mod realstack;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Debian packages the test suite uses.
const APT_PACKAGES: &[apt::Package] = &[
    apt::Package {
        name: "qemu-utils",
        probe: "qemu-img",
        why: "qemu-img: mockstack's instance disks and snapshots are real qcow2 files",
    },
    apt::Package { name: "xorriso", probe: "xorriso", why: "cross-checks mockstack's ISO 9660 writer and reader" },
    apt::Package {
        name: "genisoimage",
        probe: "isoinfo",
        why: "isoinfo: a second ISO 9660 reader for the cross-checks",
    },
    apt::Package { name: "mtools", probe: "mdir", why: "mdir: cross-checks the FAT driver floppies" },
    apt::Package {
        name: "nasm",
        probe: "nasm",
        why: "checks that the committed tiny installer is the assembly of its source",
    },
    apt::Package {
        name: "gnu-efi",
        probe: "",
        why: "checks that the committed UEFI tiny installer is the build of its source",
    },
    apt::Package {
        name: "sbsigntool",
        probe: "sbverify",
        why: "sbverify: checks the UEFI tiny installer's Secure Boot signature",
    },
    apt::Package {
        name: "ovmf",
        probe: "",
        why: "UEFI firmware: boots the UEFI installer ISOs on real QEMU, and lets the local real cloud's Nova boot UEFI guests",
    },
    apt::Package { name: "swtpm", probe: "swtpm", why: "a TPM 2.0 for the Secure Boot and TPM installer tests" },
    apt::Package {
        name: "libvirt-clients",
        probe: "virt-xml-validate",
        why: "virt-xml-validate: libvirt's own schema check of domain XML",
    },
    apt::Package {
        name: "libxml2-utils",
        probe: "xmllint",
        why: "xmllint: what virt-xml-validate runs the schema with",
    },
    apt::Package {
        name: "qemu-system-x86",
        probe: "qemu-system-x86_64",
        why: "boots the generated installer ISOs on a real (emulated) PC",
    },
    apt::Package { name: "python3-venv", probe: "", why: "the virtualenv for the openstack CLI" },
];

/// The OpenStack client versions the acceptance tests drive mockstack with (docs/real-cloud.md#versions).
const PIP_PACKAGES: &[&str] = &["python-openstackclient==10.5.0", "openstacksdk==4.22.0"];

/// The variable that names the real cloud's clouds.yaml to the test suites.
const CLOUDS_ENV: &str = "ISOHARNESS_REALSTACK_CLOUDS";

const USAGE: &str = "usage: cargo xtask <command>
  test [--no-realstack] [--no-libvirt] [--no-patched-nova] [CARGO TEST ARGS] [-- TEST BINARY ARGS]
  setup                              install what the tests need, nothing else
  ci                                 what CI runs: `cargo xtask test`, then fmt, clippy and doc checks
  realstack [--dir DIR] [--compute fake|libvirt] up|down|status
            up also: [--nova-patch FILE|DIR...]... [--nova-source DIR] [--nova-option SECTION.KEY=VALUE]...
  bench [--realstack] [--quick] [--json FILE] [--only PART]...
  real-matrix [--layout stock|patched|patched-floppy]... [--filter GLOB] [--out DIR] [--scenarios DIR]
                                     the guest matrix on real libvirt and QEMU, compared cell by cell with mockstack";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("setup") => setup().map(|_| ()),
        Some("ci") => ci(),
        Some("realstack") => realstack::command(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("real-matrix") => real_matrix::command(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
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

/// One line of progress on stderr.
pub(crate) fn say(message: impl AsRef<str>) {
    eprintln!("xtask: {}", message.as_ref());
}

/// `binary` is a file in one of `PATH`'s directories.
pub(crate) fn on_path(binary: &str) -> bool {
    !binary.is_empty()
        && std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
            .unwrap_or(false)
}

/// A command as one would type it: program and arguments, quoted where they hold spaces.
pub(crate) fn describe(command: &Command) -> String {
    let quote = |part: &std::ffi::OsStr| {
        let part = part.to_string_lossy();
        if part.is_empty() || part.contains([' ', '"', '\'', '$']) { format!("'{part}'") } else { part.into_owned() }
    };
    // `cargo` rather than the toolchain's full path that cargo hands its subcommands in CARGO.
    let program = match std::env::var_os("CARGO") {
        Some(cargo) if cargo == command.get_program() => std::ffi::OsStr::new("cargo"),
        _ => command.get_program(),
    };
    std::iter::once(program).chain(command.get_args()).map(quote).collect::<Vec<_>>().join(" ")
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    say(format!("$ {}", describe(cmd)));
    let status = cmd.status().with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(cmd));
    }
    Ok(())
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Installs missing Debian packages and the openstack CLI; returns the CLI's path.
fn setup() -> anyhow::Result<PathBuf> {
    apt::ensure("the tests", APT_PACKAGES)?;
    let venv = workspace_root().join(".venv");
    let cli = venv.join("bin").join("openstack");
    if !cli.is_file() {
        say(format!("installing the openstack CLI into {} (pip)", venv.display()));
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "--disable-pip-version-check", "--no-input"])
            .args(PIP_PACKAGES))?;
    }
    Ok(cli)
}

/// The arguments of `cargo xtask test`.
#[derive(Debug, PartialEq, Eq)]
struct TestArgs {
    realstack: bool,
    libvirt: bool,
    /// The round on Nova carrying the project's ISO-install series (`nova-patches/iso-install/`).
    patched_nova: bool,
    /// For `cargo test` itself: packages, test targets, a name filter.
    cargo: Vec<String>,
    /// After `--`: for the test binaries.
    binaries: Vec<String>,
}

/// The flags `cargo xtask test` takes for itself (before `--`); everything else goes to `cargo test`.
const OUR_FLAGS: &[&str] = &["--no-realstack", "--no-libvirt", "--no-patched-nova"];

impl TestArgs {
    fn parse(args: &[String]) -> TestArgs {
        let (ours, binaries) = match args.iter().position(|a| a == "--") {
            Some(split) => (&args[..split], args[split + 1..].to_vec()),
            None => (args, Vec::new()),
        };
        let flag = |name: &str| ours.iter().any(|a| a == name);
        TestArgs {
            realstack: !flag("--no-realstack"),
            libvirt: !flag("--no-libvirt"),
            patched_nova: !flag("--no-patched-nova"),
            cargo: ours.iter().filter(|a| !OUR_FLAGS.contains(&a.as_str())).cloned().collect(),
            binaries,
        }
    }

    /// No arguments for cargo or the binaries: the whole suite, and then the libvirt round.
    fn whole_run(&self) -> bool {
        self.cargo.is_empty() && self.binaries.is_empty()
    }

    /// `cargo test` over the workspace, or over the packages `-p`/`--package` name; with `compile_only`, the
    /// test binaries are built and not run.
    fn cargo_test(&self, compile_only: bool) -> Vec<String> {
        let names_packages =
            self.cargo.iter().any(|a| a == "--package" || a.starts_with("-p") || a.starts_with("--package="));
        let mut args = vec!["test".to_string()];
        if !names_packages {
            args.push("--workspace".into());
        }
        args.extend(self.cargo.iter().cloned());
        if compile_only {
            args.push("--no-run".into());
        } else if !self.binaries.is_empty() {
            args.push("--".into());
            args.extend(self.binaries.iter().cloned());
        }
        args
    }
}

/// `cargo xtask test [--no-realstack] [--no-libvirt] [--no-patched-nova] [ARGS] [-- BINARY ARGS]`: install what is
/// missing, compile the test binaries, then bring the local real cloud up with the fake compute driver, run `cargo
/// test --workspace ARGS` with `ISOHARNESS_REALSTACK_CLOUDS` naming its clouds.yaml, and take the cloud down again
/// whatever the tests did. Then, for a whole run (no ARGS), two rounds on Nova's libvirt driver, each running the
/// real-cloud suite (`harness/tests/realstack.rs`): stock Nova, then Nova carrying `nova-patches/iso-install/`, where
/// Nova's own unit tests of the series run first. Every round is timed. `--no-realstack` skips the cloud (its
/// suites then report their trials as ignored), `--no-libvirt` both libvirt rounds, `--no-patched-nova` the last;
/// a machine where libvirtd cannot run skips the libvirt rounds with a warning. `-p PACKAGE` in ARGS narrows the
/// run to that package.
fn test(args: &[String]) -> anyhow::Result<()> {
    let args = TestArgs::parse(args);
    let libvirt_round = args.realstack && args.libvirt && args.whole_run();
    let cli = setup()?;
    if args.realstack {
        apt::ensure("the local real cloud", realstack::APT_PACKAGES)?;
    }
    if libvirt_round {
        apt::ensure("the local real cloud's libvirt mode", realstack::LIBVIRT_APT_PACKAGES)?;
    }
    // Compiled before any cloud comes up, so that no cloud idles while the tests build.
    let compiling = std::time::Instant::now();
    run(cargo().args(args.cargo_test(true)).env("ISOHARNESS_OPENSTACK_CLI", &cli))?;
    if libvirt_round {
        run(cargo().args(LIBVIRT_SUITE).arg("--no-run"))?;
    }
    say(format!("the tests are compiled ({:.0} s)", compiling.elapsed().as_secs_f64()));
    let mut command = cargo();
    command.args(args.cargo_test(false)).env("ISOHARNESS_OPENSTACK_CLI", &cli);
    if !args.realstack {
        command.env_remove(CLOUDS_ENV);
        return run(&mut command);
    }
    let layout = realstack::Dirs::new(realstack::default_root());
    let mut rounds = Rounds::default();
    let stock = realstack::NovaRequest::stock();
    let nothing_first = |_: &realstack::Dirs| Ok(());
    rounds.run("fake compute driver", || {
        test_on_realstack(&layout, realstack::Compute::Fake, &stock, nothing_first, &mut command)
    })?;
    if !libvirt_round {
        return Ok(());
    }
    let libvirt_suite = |layout_name: &str| {
        let mut suite = cargo();
        suite
            .args(LIBVIRT_SUITE)
            .env("ISOHARNESS_REALSTACK_COMPUTE", "libvirt")
            .env("ISOHARNESS_REALSTACK_LAYOUT", layout_name)
            .env("ISOHARNESS_REALSTACK_LIBVIRT_URI", realstack::libvirt_uri(&layout));
        suite
    };
    let skipped = |e: &anyhow::Error| e.downcast_ref::<realstack::LibvirtUnavailable>().is_some();
    let stock_round = rounds.run("libvirt, stock Nova", || {
        test_on_realstack(&layout, realstack::Compute::Libvirt, &stock, nothing_first, &mut libvirt_suite("stock"))
    });
    match stock_round {
        Err(e) if skipped(&e) => {
            say(format!("WARNING: the libvirt rounds are skipped: {e:#}"));
            return Ok(());
        }
        other => other?,
    }
    if args.patched_nova {
        let patched = realstack::NovaRequest::patched(&workspace_root().join(NOVA_SERIES))?;
        // Nova's own unit tests of the series run against the patched Nova the cloud came up on.
        rounds.run("libvirt, Nova with nova-patches/iso-install", || {
            let suite = &mut libvirt_suite("patched");
            test_on_realstack(&layout, realstack::Compute::Libvirt, &patched, realstack::nova_unit_tests, suite)
        })?;
    }
    Ok(())
}

/// The test binary every libvirt round runs.
const LIBVIRT_SUITE: &[&str] = &["test", "-p", "harness", "--test", "realstack"];
/// The project's port of the article's change to Nova (`git format-patch` files).
const NOVA_SERIES: &str = "nova-patches/iso-install";

/// The rounds of `cargo xtask test` on the local real cloud, each timed; the times are printed as each ends and
/// together at the end.
#[derive(Default)]
struct Rounds {
    done: Vec<(&'static str, f64, bool)>,
}

impl Rounds {
    fn run(&mut self, name: &'static str, round: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let result = round();
        let seconds = started.elapsed().as_secs_f64();
        say(format!("round `{name}`: {} in {seconds:.0} s", if result.is_ok() { "passed" } else { "failed" }));
        self.done.push((name, seconds, result.is_ok()));
        result
    }
}

impl Drop for Rounds {
    fn drop(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let lines: Vec<String> = self
            .done
            .iter()
            .map(|(name, seconds, ok)| format!("  {name}: {seconds:.0} s{}", if *ok { "" } else { " (failed)" }))
            .collect();
        say(format!("rounds on the local real cloud:\n{}", lines.join("\n")));
    }
}

/// Brings the local real cloud up with `compute` and `nova`, runs `before_tests` on it (Nova's unit tests, say), then
/// `command` against it, and takes it down whatever they did.
fn test_on_realstack(
    layout: &realstack::Dirs,
    compute: realstack::Compute,
    nova: &realstack::NovaRequest,
    before_tests: fn(&realstack::Dirs) -> anyhow::Result<()>,
    command: &mut Command,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Eleven daemons start at once on a loaded CI machine: one that dies while they start (seen once: the message
    // queue, so nova-compute never registered) gets one more start-up from scratch, its failure printed above.
    let first = realstack::up_with(layout, compute, nova);
    let clouds = match first {
        Err(e) if e.downcast_ref::<realstack::StartupFailed>().is_some() => {
            say(format!("the local real cloud did not come up ({e:#}); taking it down and bringing it up once more"));
            let _ = realstack::down(layout);
            realstack::up_with(layout, compute, nova)
        }
        other => other,
    };
    let clouds = match clouds {
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
    say(format!("the local real cloud ({}) came up in {:.0} s", compute.name(), started.elapsed().as_secs_f64()));
    let tests_started = std::time::Instant::now();
    let result = before_tests(layout).and_then(|()| run(command.env("ISOHARNESS_REALSTACK_CLOUDS", &clouds)));
    say(format!("the tests took {:.0} s", tests_started.elapsed().as_secs_f64()));
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
    let mut command = cargo();
    command.args(["run", "--release", "-q", "-p", "bench", "--"]).args(extra);
    if !with_realstack || std::env::var_os("ISOHARNESS_REALSTACK_CLOUDS").is_some() {
        return run(&mut command);
    }
    let layout = realstack::Dirs::new(realstack::default_root());
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

/// One step of CI: the arguments of `cargo`, and variables to set.
struct CiStep {
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

/// What CI runs, in order. The first is the README's test command.
const CI_STEPS: &[CiStep] = &[
    CiStep { args: &["xtask", "test"], env: &[] },
    CiStep { args: &["fmt", "--all", "--check"], env: &[] },
    CiStep { args: &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], env: &[] },
    CiStep { args: &["doc", "--workspace", "--no-deps"], env: &[("RUSTDOCFLAGS", "-D warnings")] },
];

/// `cargo xtask ci`, which `.ci/run` runs: every step of [`CI_STEPS`], stopping at the first that fails.
fn ci() -> anyhow::Result<()> {
    for (number, step) in CI_STEPS.iter().enumerate() {
        say(format!("ci step {} of {}: cargo {}", number + 1, CI_STEPS.len(), step.args.join(" ")));
        run(cargo().args(step.args).envs(step.env.iter().copied()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn test_arguments_split_into_ours_cargos_and_the_binaries() {
        let whole = TestArgs::parse(&[]);
        assert!(whole.realstack && whole.libvirt && whole.patched_nova && whole.whole_run());
        assert_eq!(whole.cargo_test(true), ["test", "--workspace", "--no-run"]);
        assert_eq!(whole.cargo_test(false), ["test", "--workspace"]);

        let narrow = TestArgs::parse(&strings(&["--no-realstack", "-p", "guestsim", "--", "--test-threads", "2"]));
        assert!(!narrow.realstack && narrow.libvirt && !narrow.whole_run());
        assert_eq!(narrow.cargo_test(true), ["test", "-p", "guestsim", "--no-run"]);
        assert_eq!(narrow.cargo_test(false), ["test", "-p", "guestsim", "--", "--test-threads", "2"]);

        let filtered = TestArgs::parse(&strings(&["--no-libvirt", "parity", "--", "--no-realstack"]));
        assert!(filtered.realstack && !filtered.libvirt, "after `--` the flags belong to the binaries");
        assert_eq!(filtered.cargo_test(false), ["test", "--workspace", "parity", "--", "--no-realstack"]);

        let stock_only = TestArgs::parse(&strings(&["--no-patched-nova"]));
        assert!(stock_only.libvirt && !stock_only.patched_nova && stock_only.whole_run());
    }

    #[test]
    fn ci_starts_with_the_readmes_test_command_and_ci_run_calls_it() {
        let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
        let command = format!("cargo {}", CI_STEPS[0].args.join(" "));
        assert!(readme.lines().take(10).any(|l| l.starts_with(&command)), "the README's second command is {command}");
        let ci_run = std::fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
        assert!(ci_run.lines().any(|l| l.trim() == "exec cargo xtask ci"), ".ci/run runs `cargo xtask ci`");
    }

    #[test]
    fn commands_are_described_as_typed() {
        let mut command = Command::new("cargo");
        command.args(["doc", "--no-deps"]).arg("a b").env("X", "1");
        assert_eq!(describe(&command), "cargo doc --no-deps 'a b'");
    }
}
