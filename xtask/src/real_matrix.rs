//! `cargo xtask real-matrix`: the guest matrix on the local real cloud, layout by layout on Nova's libvirt driver and
//! real QEMU, every cell compared with the same cell on an embedded mockstack.
//!
//! For each layout the cloud comes up with the Nova that implements it (stock; the project's `iso-install` series;
//! the series with `[libvirt] driver_floppy_image` set), `isoharness matrix --media generated` runs every scenario
//! on it with the generated media and compares each cell with its twin, and the cloud goes down. The per-layout JSON
//! reports are merged into one table (printed, and written as JSON, markdown, HTML and JUnit beside them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::realstack::{self, Compute, NovaOption, NovaRequest};
use crate::{NOVA_SERIES, cargo, describe, say, workspace_root};

/// What the local real cloud cannot give a guest, so that `isoharness matrix --cloud-lacks` reports those cells as
/// not runnable instead of judging the cloud's configuration:
/// - UEFI: Nova 34 lets libvirt pick the firmware (`<os firmware='efi'>`) and still sets `<loader secure=...>`, which
///   Debian 12's libvirt 9.0 refuses ("loader attribute 'secure' cannot be specified when firmware autoselection is
///   enabled"): every UEFI server fails to spawn;
/// - a TPM: Nova keeps each vTPM's secret in a key manager (Barbican), and the local real cloud runs none.
pub const CLOUD_LACKS: &[&str] = &["uefi", "tpm"];

/// The layouts the local real cloud can be set to, in the order they run.
pub const LAYOUTS: &[&str] = &["stock", "patched", "patched-floppy"];

pub const USAGE: &str =
    "real-matrix [--layout stock|patched|patched-floppy]... [--filter GLOB] [--out DIR] [--scenarios DIR]";

struct Args {
    layouts: Vec<String>,
    filter: Option<String>,
    out: PathBuf,
    scenarios: Option<PathBuf>,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed =
        Args { layouts: Vec::new(), filter: None, out: workspace_root().join("target/real-matrix"), scenarios: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value\nusage: cargo xtask {USAGE}"));
        match arg.as_str() {
            "--layout" => {
                let layout = value()?;
                if !LAYOUTS.contains(&layout.as_str()) {
                    bail!("--layout {layout}: the local real cloud implements {}", LAYOUTS.join(", "));
                }
                parsed.layouts.push(layout.clone());
            }
            "--filter" => parsed.filter = Some(value()?.clone()),
            "--out" => parsed.out = PathBuf::from(value()?),
            "--scenarios" => parsed.scenarios = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}\nusage: cargo xtask {USAGE}"),
        }
    }
    if parsed.layouts.is_empty() {
        parsed.layouts = LAYOUTS.iter().map(|l| l.to_string()).collect();
    }
    Ok(parsed)
}

/// The Nova that implements `layout` on the local real cloud.
fn nova_for(layout: &str) -> anyhow::Result<NovaRequest> {
    let series = workspace_root().join(NOVA_SERIES);
    Ok(match layout {
        "stock" => NovaRequest::stock(),
        "patched" => NovaRequest::patched(&series)?,
        _ => {
            let mut nova = NovaRequest::patched(&series)?;
            let floppy = format!("libvirt.driver_floppy_image={}", FLOPPY_IMAGE);
            nova.options.push(NovaOption::parse(&floppy)?);
            // Nova's own inspection of the images it downloads takes a FAT floppy's boot sector for an MBR without
            // partitions and refuses it ("Image does not pass safety check"), as Glance does: an operator of the
            // floppy layout turns it off.
            nova.options.push(NovaOption::parse("workarounds.disable_deep_image_inspection=True")?);
            nova
        }
    })
}

/// The Glance name the generated driver floppy is uploaded under (guestsim's default).
const FLOPPY_IMAGE: &str = "virtio-win-floppy";

pub fn command(args: &[String]) -> anyhow::Result<()> {
    let args = parse(args)?;
    crate::apt::ensure("the local real cloud", realstack::APT_PACKAGES)?;
    crate::apt::ensure("the local real cloud's libvirt mode", realstack::LIBVIRT_APT_PACKAGES)?;
    crate::run(cargo().args(["build", "-p", "harness", "--bin", "isoharness"]))?;
    let isoharness = workspace_root().join("target/debug/isoharness");
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let dirs = realstack::Dirs::new(realstack::default_root());
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    let mut times = Vec::new();
    for layout in &args.layouts {
        let round = Instant::now();
        let nova = nova_for(layout)?;
        let clouds = match realstack::up_with(&dirs, Compute::Libvirt, &nova) {
            Ok(clouds) => clouds,
            Err(e) => {
                let _ = realstack::down(&dirs);
                return Err(e.context(format!("cannot bring the local real cloud up for the {layout} layout")));
            }
        };
        let up = round.elapsed().as_secs_f64();
        let report = args.out.join(format!("{layout}.json"));
        let mut matrix = Command::new(&isoharness);
        matrix
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .args(["matrix", "--os-cloud", "realstack", "--media", "generated", "--layout", layout])
            .arg("--domain-xml-command")
            .arg(format!("virsh -c '{}' dumpxml {{instance}}", realstack::libvirt_uri(&dirs)))
            .args(CLOUD_LACKS.iter().flat_map(|lack| ["--cloud-lacks", lack]))
            // Two cells at a time: one per core.
            .args(["--jobs", "2"])
            .args(["--format", "json", "--output"])
            .arg(&report);
        if let Some(filter) = &args.filter {
            matrix.args(["--filter", filter]);
        }
        if let Some(scenarios) = &args.scenarios {
            matrix.arg("--scenarios").arg(scenarios);
        }
        say(format!("$ {}", describe(&matrix)));
        let status = matrix.status().with_context(|| format!("cannot run {}", describe(&matrix)));
        let down = realstack::down(&dirs);
        let status = status?;
        down?;
        let seconds = round.elapsed().as_secs_f64();
        say(format!("layout {layout}: cloud up in {up:.0} s, matrix and cloud down in {:.0} s", seconds - up));
        times.push(format!("  {layout}: {seconds:.0} s (cloud up {up:.0} s)"));
        if !status.success() {
            failed.push(format!("{layout} (isoharness matrix exited with {status})"));
        }
        if report.is_file() {
            reports.push(report);
        }
    }
    if !reports.is_empty() {
        merge(&isoharness, &reports, &args.out)?;
    }
    say(format!("real matrix in {:.0} s:\n{}", started.elapsed().as_secs_f64(), times.join("\n")));
    if !failed.is_empty() {
        bail!("cells differ from their expectation or from mockstack on: {}", failed.join(", "));
    }
    Ok(())
}

/// `isoharness report merge` of the per-layout reports: the table on stdout, every other format into `out`.
fn merge(isoharness: &Path, reports: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    for (format, file) in [
        ("table", None),
        ("json", Some("real-matrix.json")),
        ("markdown", Some("real-matrix.md")),
        ("html", Some("real-matrix.html")),
        ("junit", Some("real-matrix.junit.xml")),
    ] {
        let mut command = Command::new(isoharness);
        command.args(["report", "merge"]).args(reports).args(["--format", format]);
        if let Some(file) = file {
            command.arg("--output").arg(out.join(file));
        }
        // A merged report that holds failing cells exits 1; the cells are the verdict, not the merge.
        let status = command.status().with_context(|| format!("cannot run {}", describe(&command)))?;
        if status.code().is_none_or(|code| code > 1) {
            bail!("{} failed with {status}", describe(&command));
        }
    }
    Ok(())
}
