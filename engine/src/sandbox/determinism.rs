//! Reproducible randomness and clocks for a step attempt.
//!
//! Every attempt's `wasi:random/insecure` and `insecure-seed` come from ChaCha20 streams
//! seeded from the step's identity, so the same flow, run, job and step ids always draw
//! the same bytes, on any machine and on a resume. `wasi:random/random` is the one a guest
//! uses for keys, salts and nonces (Rust's `getrandom`, the `zip` step's AES salts): it
//! stays the host's CSPRNG, unpredictable, unless the step is `determinism: strict`, where
//! reproducing the output is what the flow asked for and it is seeded too. Under strict the
//! clocks are replaced as well: the wall clock stands still at the run's start time and
//! the monotonic clock advances by a fixed step per read. What stays non-deterministic is
//! listed in docs/security.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::ChaCha20Rng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// How far the strict monotonic clock advances at each read.
pub const STRICT_MONOTONIC_STEP: Duration = Duration::from_micros(1);

/// How an attempt's randomness and clocks are set up.
#[derive(Debug, Clone)]
pub struct Reproducibility {
    /// Seed of every `wasi:random` stream of the attempt (see [`step_seed`]).
    pub seed: [u8; 32],
    /// `Some(t)` (strict): the wall clock reads `t` (since the Unix epoch) and the monotonic
    /// clock is deterministic. `None`: both are the host's real clocks.
    pub fixed_wall_clock: Option<Duration>,
}

/// sha256 over a domain tag and the length-prefixed flow, run, job and step ids.
pub fn step_seed(flow_id: &str, run_id: &str, job_id: &str, step_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"aetherflow/step-random/v1");
    for part in [flow_id, run_id, job_id, step_id] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// An independent 32-byte key per use of the seed.
fn derive(seed: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(label);
    h.finalize().into()
}

pub(super) fn apply(b: &mut WasiCtxBuilder, r: &Reproducibility) {
    let strict = r.fixed_wall_clock.is_some();
    if strict {
        b.secure_random(ChaCha20Rng::from_seed(derive(&r.seed, b"random")));
    }
    b.insecure_random(ChaCha20Rng::from_seed(derive(&r.seed, b"insecure")));
    let seed = derive(&r.seed, b"insecure-seed");
    let mut low = [0u8; 16];
    low.copy_from_slice(&seed[..16]);
    b.insecure_random_seed(u128::from_le_bytes(low));
    if let Some(t) = r.fixed_wall_clock {
        b.wall_clock(FixedWallClock(t));
        b.monotonic_clock(StepMonotonicClock::default());
    }
}

/// A wall clock that always reads the same instant.
struct FixedWallClock(Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// Reads 0 first, then advances by [`STRICT_MONOTONIC_STEP`] at every read: elapsed-time
/// measurements are reproducible, and a loop that waits for time to pass still ends.
#[derive(Default)]
struct StepMonotonicClock(AtomicU64);

impl HostMonotonicClock for StepMonotonicClock {
    fn resolution(&self) -> u64 {
        STRICT_MONOTONIC_STEP.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        self.0
            .fetch_add(STRICT_MONOTONIC_STEP.as_nanos() as u64, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_depend_on_every_id_and_on_nothing_else() {
        let a = step_seed("f", "r", "j", "s");
        assert_eq!(a, step_seed("f", "r", "j", "s"));
        for other in [
            step_seed("g", "r", "j", "s"),
            step_seed("f", "q", "j", "s"),
            step_seed("f", "r", "k", "s"),
            step_seed("f", "r", "j", "t"),
            // length prefixes: moving a character between ids changes the seed
            step_seed("f", "rj", "", "s"),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn the_strict_monotonic_clock_advances_by_a_fixed_step() {
        let c = StepMonotonicClock::default();
        assert_eq!(c.now(), 0);
        assert_eq!(c.now(), 1_000);
        assert_eq!(c.now(), 2_000);
        assert_eq!(c.resolution(), 1_000);
    }
}
