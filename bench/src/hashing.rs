//! The machine's own limits for image data: md5 and sha512 rates on one core each, both digests on two threads at
//! once, and both on one thread, measured with the same crates Glance uploads use in mockstack. The one-thread
//! rates are also taken per CPU second of the hashing thread, which other load on the machine hardly changes.

use std::time::Instant;

use md5::{Digest, Md5};
use serde::Serialize;
use sha2::Sha512;

/// Hash rates in MB/s (10^6 bytes per second).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HashRates {
    pub md5: f64,
    pub sha512: f64,
    /// md5 and sha512 of the same data on two threads at the same time.
    pub both_parallel: f64,
    /// md5 then sha512 of each block on one thread.
    pub both_one_thread: f64,
    /// md5 and sha512 in MB per CPU second of the hashing thread (None without `/proc/thread-self/schedstat`): the
    /// one-thread rates on a core of their own.
    pub md5_per_cpu: Option<f64>,
    pub sha512_per_cpu: Option<f64>,
}

impl HashRates {
    /// The slower of the two digests: what a pipeline computing both in parallel can reach at best.
    pub fn slower(&self) -> f64 {
        self.md5.min(self.sha512)
    }

    /// The slower of the two digests per CPU second.
    pub fn slower_per_cpu(&self) -> Option<f64> {
        self.md5_per_cpu.zip(self.sha512_per_cpu).map(|(m, s)| m.min(s))
    }
}

/// CPU time the calling thread has run, in seconds (`CLOCK_THREAD_CPUTIME_ID`: exact, where
/// `/proc/thread-self/schedstat` of a running thread lags by up to a scheduler tick).
pub fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// A deterministic, incompressible-looking block of `len` bytes.
pub fn generated_block(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            // xorshift64*: cheap, and no byte pattern a digest or a disk could shortcut.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn md5_of(block: &[u8], rounds: usize) {
    let mut h = Md5::new();
    for _ in 0..rounds {
        h.update(block);
    }
    std::hint::black_box(h.finalize());
}

fn sha512_of(block: &[u8], rounds: usize) {
    let mut h = Sha512::new();
    for _ in 0..rounds {
        h.update(block);
    }
    std::hint::black_box(h.finalize());
}

fn both_one_thread(block: &[u8], rounds: usize) {
    let (mut m, mut s) = (Md5::new(), Sha512::new());
    // Blocks of 1 MiB, as a streaming reader would see them.
    for _ in 0..rounds {
        for piece in block.chunks(1 << 20) {
            m.update(piece);
            s.update(piece);
        }
    }
    std::hint::black_box((m.finalize(), s.finalize()));
}

fn both_parallel(block: &[u8], rounds: usize) {
    std::thread::scope(|scope| {
        let sha = scope.spawn(|| sha512_of(block, rounds));
        md5_of(block, rounds);
        let _ = sha.join();
    });
}

/// Samples of the four measures, possibly taken at several moments (before and after what they are a reference
/// for) so that a burst of load elsewhere hits the reference and the measured figure alike.
#[derive(Debug, Clone, Default)]
pub struct HashSamples {
    /// MB/s of md5, sha512, both in parallel, both on one thread.
    samples: [Vec<f64>; 4],
    /// MB per CPU second of md5 and sha512.
    per_cpu: [Vec<f64>; 2],
}

impl HashSamples {
    /// Runs each measure `trials` times, interleaved, over `total` bytes per trial.
    pub fn take(&mut self, total: usize, trials: usize) {
        let block = generated_block(8 << 20);
        let rounds = total.div_ceil(block.len()).max(1);
        let bytes = (rounds * block.len()) as f64;
        let measures: [fn(&[u8], usize); 4] = [md5_of, sha512_of, both_parallel, both_one_thread];
        for _ in 0..trials.max(1) {
            for (i, f) in measures.iter().enumerate() {
                let cpu = thread_cpu_seconds();
                let started = Instant::now();
                f(&block, rounds);
                self.samples[i].push(bytes / started.elapsed().as_secs_f64() / 1e6);
                let cpu = thread_cpu_seconds() - cpu;
                // Only the one-thread measures run on this thread alone.
                if let Some(slot) = self.per_cpu.get_mut(i)
                    && cpu > 0.0
                {
                    slot.push(bytes / cpu / 1e6);
                }
            }
        }
    }

    /// The median of every measure's samples.
    pub fn rates(&self) -> HashRates {
        let [md5, sha512, both_parallel, both_one_thread] = self.samples.clone().map(|s| median(s).unwrap_or(0.0));
        let [md5_per_cpu, sha512_per_cpu] = self.per_cpu.clone().map(median);
        HashRates { md5, sha512, both_parallel, both_one_thread, md5_per_cpu, sha512_per_cpu }
    }
}

/// Runs each measure `trials` times, interleaved so that a burst of load elsewhere hits them alike, over
/// `total` bytes per trial; returns the median of each.
pub fn measure(total: usize, trials: usize) -> HashRates {
    let mut samples = HashSamples::default();
    samples.take(total, trials);
    samples.rates()
}

/// The median of some samples (the mean of the middle two for an even count).
pub fn median(mut samples: Vec<f64>) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    Some(if samples.len() % 2 == 1 { samples[mid] } else { (samples[mid - 1] + samples[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_rates_per_cpu_second_are_at_least_the_wall_clock_rates() {
        let rates = measure(1 << 20, 1);
        // A thread runs at most all of the wall time: its rate per CPU second cannot be lower (timer resolution aside).
        for (wall, per_cpu) in [(rates.md5, rates.md5_per_cpu), (rates.sha512, rates.sha512_per_cpu)] {
            assert!(per_cpu.is_some_and(|c| c >= wall * 0.98), "{rates:?}");
        }
        assert!(rates.slower_per_cpu().is_some());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn the_generated_block_is_deterministic_and_varied() {
        let a = generated_block(4096);
        assert_eq!(a, generated_block(4096));
        let distinct: std::collections::BTreeSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200, "{} distinct byte values", distinct.len());
    }
}
