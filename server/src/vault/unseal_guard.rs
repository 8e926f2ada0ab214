//! Brakes on guessing the vault's passphrase through `POST /v1/vault/unseal`: one
//! Argon2 run at a time (each takes 64 MiB and a good part of a second), and a
//! growing wait after repeated failures.
//!
//! Three failures in a row are free: after the third the next attempt must wait
//! 1 s (the base, `vault.unseal_backoff_base`), after the fourth 2 s, and so on,
//! doubling up to [`MAX_BACKOFF`]. An unseal that works resets the count. The count
//! lives in memory: a restart forgets it, which only the operator can cause.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Failures in a row after which the next attempt need not wait: the one after the
/// third waits the base, and each later one twice as long as the last.
pub const FREE_FAILURES: u32 = 3;
/// The wait after the first failure that is not free.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why an attempt may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another passphrase attempt is running.
    Busy,
    /// Too soon after repeated failures: try again after this long.
    Backoff { retry_after: Duration },
}

#[derive(Debug, Default)]
struct Failures {
    /// Failures since the last unseal that worked.
    in_a_row: u32,
    /// No attempt starts before this.
    not_before: Option<Instant>,
}

/// The guard of the vault's passphrase unseal.
#[derive(Debug)]
pub struct UnsealGuard {
    running: Arc<Semaphore>,
    failures: Arc<Mutex<Failures>>,
    base: Duration,
}

impl Default for UnsealGuard {
    fn default() -> Self {
        Self::new(DEFAULT_BACKOFF_BASE)
    }
}

/// The wait after `in_a_row` failures in a row: none up to [`FREE_FAILURES`], then
/// `base`, twice `base`, four times ... up to [`MAX_BACKOFF`].
pub fn backoff(in_a_row: u32, base: Duration) -> Duration {
    // The third failure is the last free one: the wait after it is `base`.
    match in_a_row.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(doublings) => {
            let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
            base.saturating_mul(factor).min(MAX_BACKOFF)
        }
    }
}

fn lock(failures: &Mutex<Failures>) -> MutexGuard<'_, Failures> {
    // Every change is two assignments: a panic cannot leave it half done.
    failures.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UnsealGuard {
    /// A guard whose first wait, after [`FREE_FAILURES`], is `base`.
    pub fn new(base: Duration) -> Self {
        Self {
            running: Arc::new(Semaphore::new(1)),
            failures: Arc::new(Mutex::new(Failures::default())),
            base,
        }
    }

    /// Starts an attempt at `now`, unless another one runs or the last failures ask
    /// for a wait. The attempt holds the guard until it is settled or dropped.
    pub fn try_begin(&self, now: Instant) -> Result<Attempt, Refusal> {
        let permit = Arc::clone(&self.running)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        // Checked under the permit, which every failure is recorded under.
        if let Some(not_before) = lock(&self.failures).not_before {
            if now < not_before {
                return Err(Refusal::Backoff {
                    retry_after: not_before.duration_since(now),
                });
            }
        }
        Ok(Attempt {
            failures: Arc::clone(&self.failures),
            base: self.base,
            _permit: permit,
        })
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        lock(&self.failures).in_a_row
    }
}

/// One running passphrase attempt. Settle it while it still holds the guard, so that
/// the next attempt sees its outcome.
#[derive(Debug)]
pub struct Attempt {
    failures: Arc<Mutex<Failures>>,
    base: Duration,
    _permit: OwnedSemaphorePermit,
}

/// What a failed attempt leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Failures in a row, this one included.
    pub in_a_row: u32,
    /// How long the next attempt must wait.
    pub wait: Duration,
}

impl Attempt {
    /// The passphrase was wrong (at `now`).
    pub fn failed(self, now: Instant) -> Failed {
        let mut failures = lock(&self.failures);
        failures.in_a_row = failures.in_a_row.saturating_add(1);
        let wait = backoff(failures.in_a_row, self.base);
        failures.not_before = (!wait.is_zero()).then(|| now + wait);
        Failed {
            in_a_row: failures.in_a_row,
            wait,
        }
    }

    /// The vault opened: the count starts again. Returns the failures before it.
    pub fn succeeded(self) -> u32 {
        let mut failures = lock(&self.failures);
        let before = failures.in_a_row;
        *failures = Failures::default();
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_failures() {
        let second = Duration::from_secs(1);
        let waits: Vec<u64> = (0..=11).map(|n| backoff(n, second).as_secs()).collect();
        // Three failures are free: the wait begins after the third.
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX, second), MAX_BACKOFF);
        let short = Duration::from_millis(100);
        assert_eq!(backoff(FREE_FAILURES, short), short);
        assert_eq!(backoff(FREE_FAILURES + 2, short), short * 4);
    }

    #[test]
    fn one_attempt_at_a_time() {
        let guard = UnsealGuard::default();
        let now = Instant::now();
        let first = guard.try_begin(now).unwrap();
        assert_eq!(guard.try_begin(now).unwrap_err(), Refusal::Busy);
        first.failed(now);
        assert!(guard.try_begin(now).is_ok(), "free again once settled");
    }

    #[test]
    fn repeated_failures_ask_for_a_wait_and_success_resets() {
        let guard = UnsealGuard::default();
        let start = Instant::now();
        for n in 1..=2 {
            let failed = guard.try_begin(start).unwrap().failed(start);
            assert_eq!(
                failed,
                Failed {
                    in_a_row: n,
                    wait: Duration::ZERO
                }
            );
        }
        let failed = guard.try_begin(start).unwrap().failed(start);
        assert_eq!(failed.wait, Duration::from_secs(1));
        let early = start + Duration::from_millis(400);
        assert_eq!(
            guard.try_begin(early).unwrap_err(),
            Refusal::Backoff {
                retry_after: Duration::from_millis(600)
            }
        );
        let later = start + Duration::from_secs(1);
        let failed = guard.try_begin(later).unwrap().failed(later);
        assert_eq!(
            failed,
            Failed {
                in_a_row: 4,
                wait: Duration::from_secs(2)
            }
        );
        let after = later + Duration::from_secs(2);
        assert_eq!(guard.try_begin(after).unwrap().succeeded(), 4);
        assert_eq!(guard.failures(), 0);
        assert!(guard.try_begin(after).is_ok());
    }
}
