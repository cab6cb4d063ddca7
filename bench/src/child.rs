//! mockstack in a child process (this binary's `serve-mock`), so that its resident memory is its own and the load
//! generator runs in another process; and reading resident memory from /proc.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use guestsim::Layout;
use harness::cloud::Secret;
use harness::cloud::config::{
    AuthMethod, CloudConfig, ConfigOrigin, DomainRef, Interface, ProjectRef, Scope, TlsVerify, UserRef,
};
use mockstack::{ClockMode, Config, MockStack};
use serde::{Deserialize, Serialize};

/// What the child prints on its first stdout line once it listens.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    /// mockstack's base URL.
    pub url: String,
    /// An empty HTTP handler in the same process: the floor any API call sits on.
    pub floor_url: String,
}

/// `bench serve-mock`: serves mockstack (and the empty handler) on 127.0.0.1 until stdin closes.
pub async fn serve(state_dir: Option<PathBuf>, clock: ClockMode, layout: Layout) -> anyhow::Result<()> {
    let config = Config {
        state_dir,
        clock,
        layout,
        quota: mockstack::nova::quota::Quota { instances: 100_000, cores: 400_000, ram_mb: 1 << 40 },
        ..Config::default()
    };
    let mock = MockStack::start(config, "127.0.0.1:0".parse()?).await.context("cannot start mockstack")?;
    let floor = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let floor_url = format!("http://{}", floor.local_addr()?);
    let app = axum::Router::new().route("/", axum::routing::get(|| async { axum::Json(serde_json::json!({})) }));
    tokio::spawn(async move { axum::serve(floor, app).await });
    let ready = Ready { url: mock.url().to_string(), floor_url };
    println!("{}", serde_json::to_string(&ready)?);
    std::io::stdout().flush()?;
    // The parent holds our stdin; when it closes it (or dies), we stop.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    mock.shutdown().await?;
    Ok(())
}

/// A mockstack running in a child process.
pub struct MockChild {
    child: Child,
    stdin: Option<ChildStdin>,
    pub ready: Ready,
}

impl MockChild {
    /// Starts `bench serve-mock` with a real clock, keeping image data in `state_dir`.
    pub fn spawn(state_dir: &Path) -> anyhow::Result<MockChild> {
        MockChild::spawn_with(state_dir, "real")
    }

    /// Starts `bench serve-mock` with a clock mode (`real`, `scaled:FACTOR`).
    pub fn spawn_with(state_dir: &Path, clock: &str) -> anyhow::Result<MockChild> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let mut child = Command::new(exe)
            .args(["serve-mock", "--clock", clock, "--state-dir"])
            .arg(state_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the mockstack child process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout from the mockstack child")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("cannot read from the mockstack child")?;
        let ready: Ready = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the mockstack child did not start (it said {line:?}: {e})");
            }
        };
        Ok(MockChild { child, stdin, ready })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the child has used so far.
    pub fn cpu(&self) -> Option<f64> {
        cpu_seconds(self.pid())
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> Option<u64> {
        status_field(self.pid(), "VmRSS:")
    }

    /// Stops the child (closing its stdin) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the mockstack child exited with {status}");
        Ok(())
    }
}

impl Drop for MockChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(200));
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system, all threads) a process has used so far, in seconds: unlike wall time, it hardly changes
/// when other work shares the machine.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis are plain numbers.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux whatever the kernel's own tick rate.
    Some(ticks as f64 / 100.0)
}

/// A `/proc/<pid>/status` field given in kB, in bytes.
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A process's peak resident memory from now on: the kernel's high-water mark (`VmHWM`), reset to the current
/// resident size by writing 5 to `/proc/<pid>/clear_refs`, so nothing samples while the process works. Where the
/// reset is refused, a thread samples `VmRSS` every few milliseconds instead.
pub enum PeakRss {
    HighWaterMark(u32),
    Sampled(RssSampler),
}

impl PeakRss {
    pub fn start(pid: u32) -> PeakRss {
        match std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
            Ok(()) => PeakRss::HighWaterMark(pid),
            Err(_) => PeakRss::Sampled(RssSampler::start(pid)),
        }
    }

    /// The peak since [`PeakRss::start`], bytes.
    pub fn finish(self) -> Option<u64> {
        match self {
            PeakRss::HighWaterMark(pid) => status_field(pid, "VmHWM:"),
            PeakRss::Sampled(sampler) => Some(sampler.finish()),
        }
    }
}

/// Samples a process's resident memory every few milliseconds until stopped; returns the largest sample.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(status_field(pid, "VmRSS:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(status_field(pid, "VmRSS:").unwrap_or(0))
        });
        RssSampler { stop, thread }
    }

    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// The built-in admin of a mockstack at `url` as a cloud configuration.
pub fn mock_admin_config(url: &str) -> CloudConfig {
    let admin = mockstack::IdentitySet::builtin();
    let password = admin.user_by_name("admin").map(|u| u.password.clone()).unwrap_or_default();
    CloudConfig {
        name: "mockstack".into(),
        origin: ConfigOrigin::Environment,
        auth_url: format!("{url}/identity/v3"),
        auth: AuthMethod::Password {
            user: UserRef::Name { name: "admin".into(), domain: DomainRef::Id("default".into()) },
            password: Secret::new(password),
            scope: Scope::Project(ProjectRef::Name { name: "admin".into(), domain: DomainRef::Id("default".into()) }),
        },
        region_name: Some("RegionOne".into()),
        interface: Interface::Public,
        tls: TlsVerify::System,
        api_timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_covers_memory_touched_since_the_start() {
        let me = std::process::id();
        let before = status_field(me, "VmRSS:").unwrap();
        let peak = PeakRss::start(me);
        let touched = vec![1u8; 64 << 20];
        std::hint::black_box(&touched);
        // Where the high-water mark cannot be reset, a sampler may need a moment to see the memory.
        std::thread::sleep(Duration::from_millis(20));
        let peak = peak.finish().unwrap();
        drop(touched);
        assert!(peak >= before + (60 << 20), "peak {peak} bytes, {before} before");
    }
}
