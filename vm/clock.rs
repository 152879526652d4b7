// SPDX-License-Identifier: GPL-2.0

//! The clock of the flight recorder: `CLOCK_MONOTONIC` in nanoseconds, as a number.
//!
//! The kernel crate's `Instant<Monotonic>` reads the same clock but keeps its value to itself;
//! a record needs the number, to be compared with user space's `clock_gettime` and tracefs's
//! `mono` trace clock.
//!
//! Calling context: any.

use kernel::bindings;

/// `CLOCK_MONOTONIC` now, in nanoseconds (the C `ktime_get_ns`).
pub(crate) fn now_ns() -> u64 {
    // SAFETY: `ktime_get` reads the monotonic clock; it may be called in any context (it is
    // what `Instant::<Monotonic>::now` calls).
    let ktime = unsafe { bindings::ktime_get() };
    // The monotonic clock counts from boot and is never negative.
    ktime as u64
}
