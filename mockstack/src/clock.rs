//! The mock cloud's clock: real, scaled, or manual, so tests see every transient state without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// How mockstack's time relates to wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClockMode {
    /// Virtual time is wall-clock time.
    Real,
    /// Virtual time runs `factor` times faster than wall-clock time.
    Scaled(f64),
    /// Virtual time moves only when someone calls [`Clock::advance`] or [`Clock::sleep`]
    /// (the in-process harness does, while it waits), and by `tick` on every API request so
    /// that a poller sees time pass.
    Manual { tick: Duration },
}

impl std::str::FromStr for ClockMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "real" => Ok(ClockMode::Real),
            "manual" => Ok(ClockMode::Manual { tick: Duration::from_secs(1) }),
            _ => {
                if let Some(f) = s.strip_prefix("scaled:").or_else(|| s.strip_prefix("x")) {
                    let factor: f64 = f.parse().map_err(|_| format!("bad clock scale factor {f:?}"))?;
                    if !(factor.is_finite() && factor > 0.0) {
                        return Err(format!("clock scale factor must be positive, got {f}"));
                    }
                    Ok(ClockMode::Scaled(factor))
                } else {
                    Err(format!("unknown clock mode {s:?}: expected real, scaled:FACTOR or manual"))
                }
            }
        }
    }
}

/// A clock shared by every service of one mockstack (and by an embedded harness).
#[derive(Debug)]
pub struct Clock {
    mode: ClockMode,
    wall_start: Instant,
    epoch: Timestamp,
    manual_offset: Mutex<Duration>,
}

impl Clock {
    pub fn new(mode: ClockMode) -> Clock {
        Clock { mode, wall_start: Instant::now(), epoch: Timestamp::now(), manual_offset: Mutex::new(Duration::ZERO) }
    }

    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    /// Virtual time elapsed since the clock started.
    pub fn elapsed(&self) -> Duration {
        let manual = *self.manual_offset.lock().unwrap();
        match self.mode {
            ClockMode::Real => self.wall_start.elapsed() + manual,
            ClockMode::Scaled(f) => self.wall_start.elapsed().mul_f64(f) + manual,
            ClockMode::Manual { .. } => manual,
        }
    }

    /// The current virtual wall-clock time.
    pub fn now(&self) -> Timestamp {
        let elapsed = self.elapsed();
        self.epoch
            .checked_add(jiff::SignedDuration::try_from(elapsed).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves virtual time forward (in every mode: a test may skip ahead on a real clock too), never past
    /// [`MAX_VIRTUAL_ELAPSED`] from the start.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.manual_offset.lock().unwrap();
        *offset = offset.saturating_add(by).min(MAX_VIRTUAL_ELAPSED);
    }

    /// How much further virtual time may still be advanced.
    pub fn headroom(&self) -> Duration {
        MAX_VIRTUAL_ELAPSED.saturating_sub(*self.manual_offset.lock().unwrap())
    }

    /// Called once per API request: a manual clock ticks so that pollers see progress.
    pub fn on_request(&self) {
        if let ClockMode::Manual { tick } = self.mode {
            self.advance(tick);
        }
    }

    /// Waits `d` of virtual time: instantly on a manual clock, `d / factor` on a scaled one.
    pub async fn sleep(&self, d: Duration) {
        match self.mode {
            ClockMode::Real => tokio::time::sleep(d).await,
            ClockMode::Scaled(f) => tokio::time::sleep(d.div_f64(f)).await,
            ClockMode::Manual { .. } => {
                self.advance(d);
                tokio::task::yield_now().await;
            }
        }
    }
}

/// How far virtual time may run ahead of the start: a century, far past any token, build or test, and far from the
/// end of the timestamps the services print (year 9999).
pub const MAX_VIRTUAL_ELAPSED: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Formats a timestamp the way Nova and Glance do: `2026-11-24T18:28:45Z`.
pub fn iso8601(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Formats a timestamp the way Keystone does for token expiry: microseconds and `Z`.
pub fn iso8601_micros(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = Clock::new(ClockMode::Manual { tick: Duration::from_secs(1) });
        assert_eq!(clock.elapsed(), Duration::ZERO);
        clock.advance(Duration::from_secs(30));
        clock.on_request();
        assert_eq!(clock.elapsed(), Duration::from_secs(31));
    }

    #[test]
    fn clock_modes_parse() {
        assert_eq!("real".parse::<ClockMode>(), Ok(ClockMode::Real));
        assert_eq!("scaled:100".parse::<ClockMode>(), Ok(ClockMode::Scaled(100.0)));
        assert!("scaled:-1".parse::<ClockMode>().is_err());
        assert!("fast".parse::<ClockMode>().is_err());
    }

    #[test]
    fn timestamps_render_like_openstack() {
        let ts: Timestamp = "2026-11-24T18:28:45.123456Z".parse().unwrap();
        assert_eq!(iso8601(ts), "2026-11-24T18:28:45Z");
        assert_eq!(iso8601_micros(ts), "2026-11-24T18:28:45.123456Z");
    }
}
