//! Workflow and matrix: one seven-step build on embedded mockstack (whole command, and the engine alone) against the
//! same build on the real cloud; the whole default matrix; and how the matrix's time grows with scenarios and jobs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use guestsim::Layout;
use guestsim::OutcomeKind;
use harness::cloud::{ClientOptions, Cloud};
use harness::driver::{DomainXmlSource, HttpDriver, RunClock};
use harness::matrix::MatrixReport;
use harness::matrix::run::{offer_driver_media, run_embedded};
use harness::scenario::Scenario;
use harness::target::{Embedded, media_for};
use harness::workflow::ledger::Ledger;
use harness::workflow::{BuildOptions, BuildReport, MediaFiles};

use crate::hashing::median;
use crate::real::RealCloud;
use crate::report::{Figure, Goal, Part, RatioKind};

/// The scenario the single builds use: a current Linux that installs onto virtio by itself.
pub const BUILD_SCENARIO: &str = "ubuntu-24.04";
/// Cells a matrix runs at once by default (`isoharness matrix --jobs`).
pub const DEFAULT_JOBS: usize = 8;

/// How the build and matrix parts run.
#[derive(Debug, Clone)]
pub struct WorkflowPlan {
    pub scenarios: PathBuf,
    /// Builds timed per layout (the median is reported).
    pub build_runs: usize,
    /// Passes of the whole matrix (the median is reported).
    pub matrix_runs: usize,
    pub work_dir: PathBuf,
}

fn load_scenarios(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    Scenario::load_dir(dir)
        .map_err(|errors| anyhow::anyhow!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))
}

fn scenario_named(dir: &Path, name: &str) -> anyhow::Result<Scenario> {
    Ok(Scenario::load(&dir.join(format!("{name}.toml")))?)
}

/// [`embedded_build`] on a thread of its own with the runtime `isoharness build` uses (one thread: see
/// `Cli::runtime` in `harness/src/cli.rs`).
fn embedded_build_as_the_cli_runs_it(
    scenario: &Scenario,
    layout: Layout,
    scratch: &Path,
    offered: bool,
) -> anyhow::Result<(f64, f64, BuildReport)> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(embedded_build(scenario, layout, scratch, offered))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the build thread panicked")))
    })
}

/// One build as `isoharness build` runs it on an embedded mockstack, start-up and media included; with `offered`,
/// the cloud offers the driver media before the build starts, as each matrix cloud does for its cells.
/// Returns (whole seconds, engine-only seconds, report).
async fn embedded_build(
    scenario: &Scenario,
    layout: Layout,
    scratch: &Path,
    offered: bool,
) -> anyhow::Result<(f64, f64, BuildReport)> {
    let started = Instant::now();
    let ledger = Ledger::open(&scratch.join("ledger.jsonl"))?;
    let (embedded, media) = if offered {
        let media = media_for(scenario, true, scratch)?;
        (Embedded::start(layout, &scenario.media.virtio_win_image).await?, media)
    } else {
        // What `isoharness build` starts.
        Embedded::start_with_media(scenario, layout, scratch).await?
    };
    let driver = embedded.driver().await?;
    if offered {
        // What a matrix cloud offers: the media its compute host attaches.
        offer_driver_media(&driver, scenario, &media, layout.driver_media()).await?;
    }
    let mut options = BuildOptions::new(harness::workflow::RunId::new(), scratch);
    // What `isoharness build` sets for an embedded cloud.
    options.poll_min = Duration::from_secs(5);
    options.poll_max = Duration::from_secs(60);
    let engine = Instant::now();
    let report = harness::workflow::run_build(&driver, &ledger, scenario, &media, &options).await;
    let engine_secs = engine.elapsed().as_secs_f64();
    let _ = driver.cloud().revoke_token().await;
    embedded.mock.shutdown().await?;
    Ok((started.elapsed().as_secs_f64(), engine_secs, report))
}

/// The same build on the real cloud, with the scenario's installer generated as a real ISO file.
async fn real_build(
    scenario: &Scenario,
    real: &RealCloud,
    scratch: &Path,
) -> anyhow::Result<Result<(f64, BuildReport, usize), String>> {
    let config = match real.config() {
        Ok(c) => c.clone(),
        Err(why) => return Ok(Err(why)),
    };
    let iso = scratch.join(format!("{}.iso", scenario.name));
    guestsim::media::os_iso::os_installer_iso_to_file(&scenario.guest, &Default::default(), &iso)
        .context("cannot generate the installer ISO")?;
    let media = MediaFiles {
        os_iso: Some(iso),
        driver_floppy_image: Some(guestsim::DEFAULT_DRIVER_FLOPPY_IMAGE.to_string()),
        ..MediaFiles::default()
    };
    let ledger = Ledger::open(&scratch.join("ledger.jsonl"))?;
    let started = Instant::now();
    let cloud = Cloud::connect(config, ClientOptions::default()).await?;
    let calls = cloud.call_log();
    let driver = HttpDriver::new(cloud, RunClock::Real(Instant::now()), DomainXmlSource::None);
    let options = BuildOptions::new(harness::workflow::RunId::new(), scratch);
    let report = harness::workflow::run_build(&driver, &ledger, scenario, &media, &options).await;
    let _ = driver.cloud().revoke_token().await;
    let secs = started.elapsed().as_secs_f64();
    if report.outcome.is_none() {
        anyhow::bail!("the build on the real cloud stopped: {}", report.reason);
    }
    Ok(Ok((secs, report, calls.records().len())))
}

fn outcome_text(report: &BuildReport) -> String {
    report.outcome.map(|o| o.to_string()).unwrap_or_else(|| format!("none: {}", report.reason))
}

/// `bench profile-build`: `runs` builds on one started embedded mockstack with every driver call timed; prints
/// where the wall time goes (the timing-span profile of the build).
pub async fn profile_build(scenarios: &Path, name: &str, layout: Layout, runs: usize) -> anyhow::Result<String> {
    let scenario = scenario_named(scenarios, name)?;
    let scratch = tempfile::Builder::new().prefix("isoharness-bench-profile-").tempdir()?;
    let media_started = Instant::now();
    let media = media_for(&scenario, true, scratch.path())?;
    let media_time = media_started.elapsed();
    let start_started = Instant::now();
    let embedded = Embedded::start(layout, &scenario.media.virtio_win_image).await?;
    let driver = crate::spans::Timed::new(embedded.driver().await?);
    let start_time = start_started.elapsed();
    let ledger = Ledger::open(&scratch.path().join("ledger.jsonl"))?;
    let started = Instant::now();
    let mut outcome = String::new();
    for _ in 0..runs.max(1) {
        let mut options = BuildOptions::new(harness::workflow::RunId::new(), scratch.path());
        options.poll_min = Duration::from_secs(5);
        options.poll_max = Duration::from_secs(60);
        let report = harness::workflow::run_build(&driver, &ledger, &scenario, &media, &options).await;
        outcome = outcome_text(&report);
    }
    let whole = started.elapsed();
    embedded.mock.shutdown().await?;
    let mut out = format!(
        "{} on {layout}: {runs} build(s) in {:.1} ms ({:.2} ms each), outcome {outcome}\n\
         media generation {:.2} ms, mockstack start-up and login {:.2} ms (once)\n",
        scenario.name,
        whole.as_secs_f64() * 1e3,
        whole.as_secs_f64() * 1e3 / runs.max(1) as f64,
        media_time.as_secs_f64() * 1e3,
        start_time.as_secs_f64() * 1e3,
    );
    for line in driver.spans().lines(whole) {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The build part.
pub async fn run_build(plan: &WorkflowPlan, real: &RealCloud) -> anyhow::Result<Vec<Figure>> {
    let scenario = scenario_named(&plan.scenarios, BUILD_SCENARIO)?;
    let mut figures = Vec::new();
    let mut stock_whole = None;
    let mut offered_engine = Vec::new();
    for layout in [Layout::Patched, Layout::Stock] {
        eprintln!("bench build: {} on embedded mockstack ({layout}) × {} ...", scenario.name, plan.build_runs);
        let (mut whole, mut engine) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..plan.build_runs.max(1) {
            let scratch = tempfile::Builder::new().prefix("isoharness-bench-build-").tempdir_in(&plan.work_dir)?;
            let (w, e, report) = embedded_build_as_the_cli_runs_it(&scenario, layout, scratch.path(), false)?;
            whole.push(w);
            engine.push(e);
            last = Some(report);
            if layout == Layout::Patched {
                let scratch = tempfile::Builder::new().prefix("isoharness-bench-build-").tempdir_in(&plan.work_dir)?;
                let (_, e, report) = embedded_build_as_the_cli_runs_it(&scenario, layout, scratch.path(), true)?;
                anyhow::ensure!(report.outcome == Some(OutcomeKind::ImageOk), "the build with offered media failed");
                offered_engine.push(e);
            }
        }
        let report = last.expect("at least one run");
        let whole = median(whole).unwrap_or_default();
        let engine = median(engine).unwrap_or_default();
        let virtual_secs: f64 = report.steps.iter().map(|s| s.seconds).sum();
        let name = format!("one build of {}, embedded mockstack ({layout})", scenario.name);
        let outcome = outcome_text(&report);
        if layout == Layout::Patched {
            anyhow::ensure!(report.outcome == Some(OutcomeKind::ImageOk), "the patched build gave {outcome}");
            figures.push(
                Figure::new(Part::Build, format!("{name}, whole command"), whole, "s")
                    .against("the cloud time it covers (virtual)", Some(virtual_secs), "s", RatioKind::TimesLess)
                    .target(Goal::ValueBelow(0.05))
                    .note(format!("start-up, media, seven steps, validation, cleanup; median of {}", plan.build_runs)),
            );
            figures.push(
                Figure::new(Part::Build, format!("{name}, engine only"), engine, "s")
                    .against("the whole command", Some(whole), "s", RatioKind::Fraction)
                    .note(format!("run_build on a started mockstack; outcome {outcome}")),
            );
            let offered = median(std::mem::take(&mut offered_engine)).unwrap_or_default();
            figures.push(
                Figure::new(Part::Build, format!("{name}, engine only, driver media already offered"), offered, "s")
                    .against("the whole command", Some(whole), "s", RatioKind::Fraction)
                    .note("as a matrix cell runs: the cloud offers the VirtIO ISO and floppy before the build"),
            );
        } else {
            stock_whole = Some((whole, outcome));
        }
    }
    let (stock, stock_outcome) = stock_whole.expect("the stock layout ran");
    let scratch = tempfile::Builder::new().prefix("isoharness-bench-real-build-").tempdir_in(&plan.work_dir)?;
    if real.config().is_ok() {
        eprintln!("bench build: {} on the real cloud ...", scenario.name);
    }
    let real_run = real_build(&scenario, real, scratch.path()).await?;
    let real_secs = real_run.as_ref().map(|(s, _, _)| *s).map_err(Clone::clone);
    let mut real_figure = Figure::maybe(
        Part::Build,
        format!("one build of {}, real cloud (fake driver)", scenario.name),
        real_secs.clone(),
        "s",
    );
    if let Ok((_, report, calls)) = &real_run {
        real_figure = real_figure.note(format!("outcome {}; {calls} API calls", outcome_text(report)));
    }
    figures.push(real_figure);
    figures.push(
        Figure::new(Part::Build, format!("one build of {}, embedded mockstack (stock)", scenario.name), stock, "s")
            .against("the same build on the real cloud", real_secs.ok(), "s", RatioKind::TimesLess)
            .note(format!(
                "the real cloud's fake driver snapshots the ISO as stock Nova does; outcome {stock_outcome}"
            )),
    );
    Ok(figures)
}

/// One matrix pass; fails when a cell differs from its expectation (the benchmark measures a correct matrix only).
async fn matrix_pass(scenarios: &[Scenario], jobs: usize) -> anyhow::Result<MatrixReport> {
    let report = run_embedded(scenarios, &Layout::ALL, jobs).await?;
    anyhow::ensure!(report.passed(), "the matrix did not come out as expected: {}", report.summary());
    Ok(report)
}

fn cells_per_second(report: &MatrixReport) -> f64 {
    report.cells.len() as f64 / report.wall_seconds
}

/// `runs` passes of the matrix of `subset`: the median cells/s and the median wall seconds.
async fn matrix_rate(subset: &[Scenario], jobs: usize, runs: usize) -> anyhow::Result<(f64, f64)> {
    let mut rates = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..runs.max(1) {
        let report = matrix_pass(subset, jobs).await?;
        rates.push(cells_per_second(&report));
        walls.push(report.wall_seconds);
    }
    Ok((median(rates).unwrap_or_default(), median(walls).unwrap_or_default()))
}

/// The matrix part.
pub async fn run_matrix(plan: &WorkflowPlan) -> anyhow::Result<Vec<Figure>> {
    let scenarios = load_scenarios(&plan.scenarios)?;
    let n = scenarios.len();
    let cells = n * Layout::ALL.len();
    let p = Part::Matrix;
    eprintln!("bench matrix: {cells} cells, --jobs {DEFAULT_JOBS} × {} ...", plan.matrix_runs);
    let (rate, wall) = matrix_rate(&scenarios, DEFAULT_JOBS, plan.matrix_runs).await?;
    eprintln!("bench matrix: --jobs 1 and 2 ...");
    let (rate1, _) = matrix_rate(&scenarios, 1, plan.matrix_runs).await?;
    let (rate2, _) = matrix_rate(&scenarios, 2, plan.matrix_runs).await?;
    let mut figures = vec![
        Figure::new(p, format!("whole default matrix ({cells} cells), --jobs {DEFAULT_JOBS}"), rate, "cells/s")
            .against("the same matrix, --jobs 1", Some(rate1), "cells/s", RatioKind::Times)
            .target(Goal::ValueAtLeast(50.0))
            .note(format!("{} s per pass, median of {}", crate::report::number(wall), plan.matrix_runs)),
        Figure::new(p, "whole default matrix, --jobs 2", rate2, "cells/s").against(
            "the same matrix, --jobs 1",
            Some(rate1),
            "cells/s",
            RatioKind::Times,
        ),
    ];

    // Growth with the number of scenarios: 1, a third, two thirds, all (every layout each).
    let mut sizes = vec![1, n.div_ceil(3), (2 * n).div_ceil(3), n];
    sizes.dedup();
    let mut points = Vec::new();
    for &k in &sizes {
        eprintln!("bench matrix: {k} scenario(s) ...");
        let (_, wall) = matrix_rate(&scenarios[..k], DEFAULT_JOBS, plan.matrix_runs).await?;
        points.push((k * Layout::ALL.len(), wall));
    }
    let (first_cells, first_wall) = points[0];
    for &(c, w) in &points {
        figures.push(
            Figure::new(p, format!("matrix of {} scenario(s), {c} cells", c / Layout::ALL.len()), w, "s")
                .against(format!("matrix of {first_cells} cells"), Some(first_wall), "s", RatioKind::Fraction)
                .note(format!("{}× the cells", crate::report::number(c as f64 / first_cells as f64))),
        );
    }
    let (slope, intercept) = least_squares(&points);
    figures.push(
        Figure::new(p, "marginal time per cell (least-squares slope)", slope * 1e3, "ms")
            .against("whole matrix time per cell", Some(wall * 1e3 / cells as f64), "ms", RatioKind::Fraction)
            .note(format!("fixed cost (intercept) {} ms", crate::report::number(intercept * 1e3))),
    );
    Ok(figures)
}

/// The least-squares line through (cells, seconds): (seconds per cell, fixed seconds).
fn least_squares(points: &[(usize, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| *x as f64).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| *y).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (*x as f64 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (*x as f64 - mean_x) * (y - mean_y)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, mean_y - slope * mean_x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_a_line() {
        let (slope, intercept) = least_squares(&[(3, 0.5 + 0.03), (9, 0.5 + 0.09), (54, 0.5 + 0.54)]);
        assert!((slope - 0.01).abs() < 1e-9 && (intercept - 0.5).abs() < 1e-9, "{slope} {intercept}");
    }
}
