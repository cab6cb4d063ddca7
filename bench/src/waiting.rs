//! The cost of waiting on a real cloud: the same build twice on an embedded mockstack whose manual clock charges
//! every API call a real call's time, once with the engine's adaptive polling and once with a fixed 2 s poll (what
//! Packer does), counting the calls from mockstack's request journal per minute of (virtual) cloud time.

use std::path::PathBuf;
use std::time::Duration;

use guestsim::Layout;
use guestsim::OutcomeKind;
use harness::scenario::Scenario;
use harness::target::{Embedded, media_for};
use harness::workflow::ledger::Ledger;
use harness::workflow::{BuildOptions, run_build};
use mockstack::{ClockMode, Config, MockStack};

use crate::report::{Figure, Part, RatioKind};

/// A Windows guest: its 25-minute install is the long wait the polling policy matters for.
pub const WAITING_SCENARIO: &str = "windows-server-2022";
/// Virtual time every API call costs: about what a real Nova answers a `GET /servers/{id}` in.
pub const CALL_TIME: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct WaitingPlan {
    pub scenarios: PathBuf,
}

/// What one build cost in calls.
struct Counted {
    calls: usize,
    /// Calls that only look: `GET` of a server or an image, and the console-output action.
    polls: usize,
    virtual_minutes: f64,
    outcome: Option<OutcomeKind>,
}

async fn counted_build(scenario: &Scenario, poll_min: Duration, poll_max: Duration) -> anyhow::Result<Counted> {
    let scratch = tempfile::Builder::new().prefix("isoharness-bench-waiting-").tempdir()?;
    let config = Config {
        clock: ClockMode::Manual { tick: CALL_TIME },
        layout: Layout::Patched,
        virtio_win_image: Some(scenario.media.virtio_win_image.clone()),
        ..Config::default()
    };
    let mock = MockStack::start(config, "127.0.0.1:0".parse()?).await?;
    let embedded = Embedded { mock, layout: Layout::Patched };
    let driver = embedded.driver().await?;
    let media = media_for(scenario, true, scratch.path())?;
    let ledger = Ledger::open(&scratch.path().join("ledger.jsonl"))?;
    let options = BuildOptions { poll_min, poll_max, ..BuildOptions::new("ih-bench", scratch.path()) };
    let journal = embedded.mock.state().journal();
    journal.clear();
    let started = embedded.mock.state().clock().elapsed();
    let report = run_build(&driver, &ledger, scenario, &media, &options).await;
    let elapsed = embedded.mock.state().clock().elapsed().saturating_sub(started);
    let entries = journal.entries();
    embedded.mock.shutdown().await?;
    let is_poll = |e: &mockstack::journal::JournalEntry| {
        let segments: Vec<&str> = e.path.trim_matches('/').split('/').collect();
        match (e.method.as_str(), segments.as_slice()) {
            ("GET", [_, "servers", id]) | ("GET", [_, "images", id]) => !id.contains("detail"),
            ("POST", [_, "servers", _, "action"]) => true,
            _ => false,
        }
    };
    let service_calls: Vec<_> = entries.iter().filter(|e| e.service != "mockstack").collect();
    Ok(Counted {
        calls: service_calls.len(),
        polls: service_calls.iter().filter(|e| is_poll(e)).count(),
        virtual_minutes: elapsed.as_secs_f64() / 60.0,
        outcome: report.outcome,
    })
}

/// The waiting part.
pub async fn run(plan: &WaitingPlan) -> anyhow::Result<Vec<Figure>> {
    let scenario = Scenario::load(&plan.scenarios.join(format!("{WAITING_SCENARIO}.toml")))?;
    let real_defaults = BuildOptions::new("ih-bench", &std::env::temp_dir());
    eprintln!("bench waiting: {} with adaptive polling ...", scenario.name);
    let adaptive = counted_build(&scenario, real_defaults.poll_min, real_defaults.poll_max).await?;
    eprintln!("bench waiting: {} with a fixed 2 s poll ...", scenario.name);
    let fixed = counted_build(&scenario, Duration::from_secs(2), Duration::from_secs(2)).await?;
    anyhow::ensure!(
        adaptive.outcome == fixed.outcome && adaptive.outcome.is_some(),
        "the two polling policies gave different outcomes: {:?} and {:?}",
        adaptive.outcome,
        fixed.outcome
    );
    let p = Part::Waiting;
    let policy = format!("adaptive {}→{} s", real_defaults.poll_min.as_secs(), real_defaults.poll_max.as_secs());
    let per_minute = |c: &Counted, n: usize| n as f64 / c.virtual_minutes;
    let note = format!("{}; every call costs {} ms of cloud time", scenario.name, CALL_TIME.as_millis());
    Ok(vec![
        Figure::new(
            p,
            format!("polling calls per minute of cloud time, {policy}"),
            per_minute(&adaptive, adaptive.polls),
            "calls/min",
        )
        .against("fixed 2 s poll (Packer)", Some(per_minute(&fixed, fixed.polls)), "calls/min", RatioKind::TimesLess)
        .note(note),
        Figure::new(p, format!("API calls per build, {policy}"), adaptive.calls as f64, "calls")
            .against("fixed 2 s poll (Packer)", Some(fixed.calls as f64), "calls", RatioKind::TimesLess)
            .note(format!("{} of them polls; the fixed poll made {} polls", adaptive.polls, fixed.polls)),
        Figure::new(p, format!("cloud time of the build, {policy}"), adaptive.virtual_minutes * 60.0, "s")
            .against("fixed 2 s poll (Packer)", Some(fixed.virtual_minutes * 60.0), "s", RatioKind::Fraction)
            .note("what backing off costs: the end of a wait is seen later"),
    ])
}
