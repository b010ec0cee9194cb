//! The monotonic clock the forwarding path times things with.

use std::num::NonZeroU64;

/// A reading of the monotonic clock (`CLOCK_MONOTONIC`, the clock behind
/// `std::time::Instant` on Linux) as a plain count of nanoseconds.
///
/// The forwarding path reads the clock a few times per transaction and
/// subtracts the readings. `Instant` turns every difference into a checked
/// seconds-plus-nanoseconds `Duration` and `as_micros` into `u128`
/// arithmetic: about 200 instructions per transaction under callgrind.
/// Here a difference is one subtraction and a division.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime(NonZeroU64);

impl MonoTime {
    /// Never zero (a reading of 0 ns after boot counts as 1 ns), so that
    /// an `Option<MonoTime>` takes no more room than the time itself:
    /// every connected client keeps a few.
    fn from_count(ns: u64) -> MonoTime {
        MonoTime(NonZeroU64::new(ns).unwrap_or(NonZeroU64::MIN))
    }

    pub fn now() -> MonoTime {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is
        // always available on Linux, so the call cannot fail.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        MonoTime::from_count(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    /// Nanoseconds since an arbitrary fixed point: the time insight's
    /// recorder is given.
    #[inline]
    pub fn as_nanos(self) -> u64 {
        self.0.get()
    }

    /// Whole microseconds from `earlier` to `self`; 0 if `earlier` is later.
    pub fn micros_since(self, earlier: MonoTime) -> u64 {
        self.0.get().saturating_sub(earlier.0.get()) / 1_000
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: MonoTime) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.get().saturating_sub(earlier.0.get()))
    }

    pub fn elapsed(self) -> std::time::Duration {
        MonoTime::now().since(self)
    }

    pub fn plus(self, d: std::time::Duration) -> MonoTime {
        MonoTime::from_count(
            self.0
                .get()
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }

    #[cfg(test)]
    pub(crate) fn from_nanos(n: u64) -> MonoTime {
        MonoTime::from_count(n)
    }

    #[cfg(test)]
    fn minus(self, d: std::time::Duration) -> MonoTime {
        MonoTime::from_count(
            self.0
                .get()
                .saturating_sub(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_readings_advance_with_the_clock_instants_use() {
        let (m0, i0) = (MonoTime::now(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (m1, i1) = (MonoTime::now(), std::time::Instant::now());
        let mono = m1.since(m0);
        let std = i1.duration_since(i0);
        assert!(mono >= std::time::Duration::from_millis(20), "{mono:?}");
        // Same clock: the two differences agree to well under a millisecond.
        let skew = mono.abs_diff(std);
        assert!(
            skew < std::time::Duration::from_millis(1),
            "{mono:?} vs {std:?}"
        );
        assert_eq!(m1.micros_since(m0), mono.as_micros() as u64);
    }

    #[test]
    fn differences_saturate_at_zero_instead_of_wrapping() {
        let t = MonoTime::now();
        let later = t.plus(std::time::Duration::from_micros(1500));
        assert_eq!(later.micros_since(t), 1500);
        assert_eq!(t.micros_since(later), 0);
        assert_eq!(t.since(later), std::time::Duration::ZERO);
        assert_eq!(later.minus(std::time::Duration::from_micros(1500)), t);
    }
}
