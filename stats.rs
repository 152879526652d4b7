// SPDX-License-Identifier: GPL-2.0

//! The module's counters and the histogram of its handlers' latency: the `stats` and
//! `latency` files in debugfs.
//!
//! Owns [`STATS`]. Everything else only adds to it (the fault path, open, mmap, release) or
//! reads it (the debugfs files).
//!
//! Calling context: any. The fault path takes no lock here and never waits: each CPU adds to
//! a shard of its own (see [`crate::shard`]), and readers sum the shards with wrapping
//! arithmetic.

use core::fmt;
use kernel::{
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

use crate::{
    budget::FrameBudget,
    limits::Limits,
    shard::{
        this_shard,
        SHARDS, //
    },
};

/// Declares [`Counter`], its number and its names from one list, in the order the `stats`
/// file shows them.
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The module's counters, each a `name value` line of the `stats` file.
        #[derive(Clone, Copy)]
        pub(crate) enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// How many counters there are.
            pub(crate) const COUNT: usize = [$($name),*].len();
            /// Each counter's name in the `stats` file, indexed by the counter.
            pub(crate) const NAMES: [&'static str; Counter::COUNT] = [$($name),*];
        }
    };
}

counters! {
    /// Calls of the 4 KiB fault handler.
    Faults => "faults",
    /// 4 KiB faults by a read.
    ReadFaults => "read_faults",
    /// 4 KiB faults by a write.
    WriteFaults => "write_faults",
    /// 4 KiB pages of the frames allocated.
    FramesAllocated => "frames_allocated",
    /// 4 KiB pages of the frames freed.
    FramesFreed => "frames_freed",
    /// 4 KiB pages of the frames a fault allocated and gave back at once, because a
    /// concurrent fault on the same offset stored its frame first (the first frame wins).
    FramesDiscarded => "frames_discarded",
    /// Faults that ended in `SIGBUS`.
    Sigbus => "sigbus",
    /// Faults that ended in `VM_FAULT_OOM`.
    Oom => "oom",
    /// Faults that got `SIGBUS` because no 2 MiB frame could be allocated (`huge`).
    NoHugeFrame => "no_huge_frame",
    /// Instances open now.
    Instances => "instances",
    /// Instances opened since the module was loaded.
    InstancesOpened => "instances_opened",
    /// `open` calls refused with `ENOMEM` because the module could not allocate the instance,
    /// its frame tables' directories or its place in the instance list: the module's share of
    /// the `ENOMEM`s an `open` can get (the kernel's own file allocation is the rest).
    OpenNomem => "open_nomem",
    /// `mmap` calls refused.
    MmapRefused => "mmap_refused",
    /// Pages mapped by faults besides the faulting page (`prefault` > 1).
    Prefaulted => "prefaulted",
    /// Calls of the huge-fault handler (`huge`; the core asks for a PMD, and for a PUD where
    /// the PUD entry is empty), which are not counted in `faults`.
    HugeFaults => "huge_faults",
    /// PMD-level calls that asked the core to fall back to 4 KiB faults, for any reason.
    HugeFallbacks => "huge_fallbacks",
    /// Handler calls the flight recorder kept (`events=1`; see `events/` in debugfs).
    EventsRecorded => "events_recorded",
    /// Handler calls the flight recorder dropped because their slot was still being written
    /// by a writer of the ring's previous round, preempted in the middle of its record while
    /// the ring went once round (never silently: counted here).
    EventsLost => "events_lost",
    /// Nanoseconds spent in the handlers, all calls together (see `latency` for the spread).
    HandlerNs => "handler_ns",
}

/// A log2 histogram of nanoseconds: bucket `b` counts values in `[2^(b-1), 2^b)`, bucket 0
/// counts zero.
pub(crate) struct Histogram;

impl Histogram {
    pub(crate) const BUCKETS: usize = 40;

    /// The bucket of `ns`; the last bucket also takes everything above 2^38 ns.
    pub(crate) fn bucket(ns: u64) -> usize {
        ((u64::BITS - ns.leading_zeros()) as usize).min(Self::BUCKETS - 1)
    }
}

/// One CPU's share of the counters, on cache lines of its own.
#[repr(align(64))]
pub(crate) struct Shard {
    counters: [Atomic<u64>; Counter::COUNT],
    latency: [Atomic<u64>; Histogram::BUCKETS],
    /// Handler calls seen, for timing every Nth one (`latency` > 1).
    calls: Atomic<u64>,
}

/// The module's counters and the handler-latency histogram.
///
/// The fault path takes no lock, and, so that faults on different CPUs do not fight over
/// cache lines, each CPU adds to a shard of its own (CPUs beyond `SHARDS` share). Readers sum
/// the shards with wrapping arithmetic, which is exact even when a value was added on one
/// shard and taken away on another.
pub(crate) struct Stats {
    shards: [Shard; SHARDS],
}

/// The module's counters.
pub(crate) static STATS: Stats = Stats::new();

impl Stats {
    pub(crate) const fn new() -> Self {
        Self {
            shards: [const {
                Shard {
                    counters: [const { Atomic::new(0) }; Counter::COUNT],
                    latency: [const { Atomic::new(0) }; Histogram::BUCKETS],
                    calls: Atomic::new(0),
                }
            }; SHARDS],
        }
    }

    /// This CPU's shard. Being moved to another CPU meanwhile is harmless: the sums stay right.
    fn shard(&self) -> &Shard {
        &self.shards[this_shard()]
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.shard().counters[counter as usize].add(n, Relaxed);
    }

    pub(crate) fn sub(&self, counter: Counter, n: u64) {
        self.add(counter, n.wrapping_neg());
    }

    /// The sum over all shards of the value that `of` picks from a shard.
    fn sum(&self, of: impl Fn(&Shard) -> &Atomic<u64>) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, shard| sum.wrapping_add(of(shard).load(Relaxed)))
    }

    /// One counter's sum: only the KUnit tests read a single counter (without KUnit, as in
    /// Debian's kernels, it would be dead code).
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn get(&self, counter: Counter) -> u64 {
        self.sum(|shard| &shard.counters[counter as usize])
    }

    /// Whether a handler call starting now is timed for the histogram, as `every` says (0:
    /// never, 1: always, N: every Nth call of this CPU's shard). The handler reads the clock
    /// (see [`crate::recorder::Trace`]) only for a timed call, or one it records.
    pub(crate) fn timed(&self, every: u32) -> bool {
        match every {
            0 => false,
            1 => true,
            n => self.shard().calls.fetch_add(1, Relaxed) % u64::from(n) == 0,
        }
    }

    /// Counts one handler call, adding one to each of `calls`, and, if it was timed, its
    /// `ns` nanoseconds: all on one shard, found once.
    pub(crate) fn record_call(&self, calls: &[Counter], ns: Option<u64>) {
        let shard = self.shard();
        for &counter in calls {
            shard.counters[counter as usize].add(1, Relaxed);
        }
        if let Some(ns) = ns {
            shard.counters[Counter::HandlerNs as usize].add(ns, Relaxed);
            shard.latency[Histogram::bucket(ns)].add(1, Relaxed);
        }
    }

    /// Writes `name value` lines: the counters, then the budget's count of live frames (see
    /// [`FrameBudget`]), the bytes of metadata the open instances take besides their frames,
    /// and the settings the module runs with (`events`: whether the flight recorder records
    /// now).
    pub(crate) fn write(
        &self,
        f: &mut fmt::Formatter<'_>,
        budget: &FrameBudget,
        metadata_bytes: usize,
        limits: &Limits,
        events: bool,
    ) -> fmt::Result {
        for (i, name) in Counter::NAMES.iter().enumerate() {
            writeln!(f, "{name} {}", self.sum(|shard| &shard.counters[i]))?;
        }
        writeln!(f, "frames_live {}", budget.live())?;
        writeln!(f, "metadata_bytes {metadata_bytes}")?;
        writeln!(f, "max_total_pages {}", budget.cap())?;
        writeln!(f, "prefault {}", limits.prefault)?;
        writeln!(f, "huge {}", u8::from(limits.huge))?;
        writeln!(f, "map_pages {}", u8::from(limits.switches.map_pages))?;
        writeln!(f, "latency {}", limits.switches.latency)?;
        writeln!(f, "insert_pages {}", u8::from(limits.switches.insert_pages))?;
        writeln!(f, "return_page {}", u8::from(limits.switches.return_page))?;
        writeln!(f, "alloc_blocks {}", u8::from(limits.switches.alloc_blocks))?;
        writeln!(f, "events {}", u8::from(events))
    }

    /// The histogram: one line per non-empty bucket, `<upper bound in ns> <count>`.
    pub(crate) fn write_latency(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# le_ns count")?;
        for b in 0..Histogram::BUCKETS {
            let count = self.sum(|shard| &shard.latency[b]);
            if count != 0 {
                writeln!(f, "{} {}", 1u64 << b, count)?;
            }
        }
        Ok(())
    }
}

#[kunit_tests(rust_pagefault_demo_stats)]
mod tests {
    use super::*;
    use kernel::str::CString;

    /// Formats with a closure, to capture what a debugfs file would show.
    struct Show<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(F);

    impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Show<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            (self.0)(f)
        }
    }

    fn show(f: impl Fn(&mut fmt::Formatter<'_>) -> fmt::Result) -> Result<CString> {
        CString::try_from_fmt(format_args!("{}", Show(f)))
    }

    #[test]
    fn histogram_buckets_are_log2() {
        assert_eq!(Histogram::bucket(0), 0);
        assert_eq!(Histogram::bucket(1), 1);
        assert_eq!(Histogram::bucket(2), 2);
        assert_eq!(Histogram::bucket(3), 2);
        assert_eq!(Histogram::bucket(1023), 10);
        assert_eq!(Histogram::bucket(1024), 11);
        assert_eq!(Histogram::bucket(u64::MAX), Histogram::BUCKETS - 1);
    }

    #[test]
    fn histogram_shows_only_non_empty_buckets() -> Result {
        let stats = KBox::new(Stats::new(), GFP_KERNEL)?;
        stats.record_call(&[], Some(700));
        stats.record_call(&[Counter::Faults], Some(1000));
        stats.record_call(&[Counter::Faults, Counter::ReadFaults], Some(5000));
        // An untimed call is counted, but not in the histogram.
        stats.record_call(&[Counter::Faults], None);
        let text = show(|f| stats.write_latency(f))?;
        assert_eq!(text.to_bytes(), b"# le_ns count\n1024 2\n8192 1\n");
        assert_eq!(stats.get(Counter::HandlerNs), 6700);
        assert_eq!(stats.get(Counter::Faults), 3);
        assert_eq!(stats.get(Counter::ReadFaults), 1);
        Ok(())
    }

    #[test]
    fn sampling_times_every_nth_call() -> Result {
        let stats = KBox::new(Stats::new(), GFP_KERNEL)?;
        assert!(!stats.timed(0));
        assert!(stats.timed(1));
        // Every third call of a shard; the test may move between CPUs, so count per shard.
        let timed = (0..30).filter(|_| stats.timed(3)).count();
        let shards_used = stats
            .shards
            .iter()
            .filter(|shard| shard.calls.load(Relaxed) != 0)
            .count();
        assert!(timed >= 10 && timed <= 10 + shards_used);
        Ok(())
    }

    #[test]
    fn sharded_counters_sum_exactly() -> Result {
        let stats = KBox::new(Stats::new(), GFP_KERNEL)?;
        // Taken away on another shard than it was added on: the sum still balances.
        stats.shards[3].counters[Counter::Instances as usize].add(2, Relaxed);
        stats.shards[5].counters[Counter::Instances as usize].add(1u64.wrapping_neg(), Relaxed);
        stats.sub(Counter::Instances, 1);
        assert_eq!(stats.get(Counter::Instances), 0);
        stats.add(Counter::Faults, 7);
        assert_eq!(stats.get(Counter::Faults), 7);
        Ok(())
    }

    #[test]
    fn stats_print_name_value_lines() -> Result {
        let stats = KBox::new(Stats::new(), GFP_KERNEL)?;
        stats.add(Counter::Faults, 3);
        stats.add(Counter::WriteFaults, 2);
        stats.add(Counter::ReadFaults, 1);
        let budget = FrameBudget::new(9);
        budget.reserve(1).expect("frame").commit(1);
        let text = show(|f| stats.write(f, &budget, 4096, &Limits::DEFAULT, false))?;
        assert_eq!(
            text.to_bytes(),
            b"faults 3\nread_faults 1\nwrite_faults 2\nframes_allocated 0\nframes_freed 0\n\
              frames_discarded 0\n\
              sigbus 0\noom 0\nno_huge_frame 0\ninstances 0\ninstances_opened 0\n\
              open_nomem 0\nmmap_refused 0\nprefaulted 0\nhuge_faults 0\nhuge_fallbacks 0\n\
              events_recorded 0\nevents_lost 0\nhandler_ns 0\n\
              frames_live 1\nmetadata_bytes 4096\nmax_total_pages 9\nprefault 1\nhuge 0\n\
              map_pages 1\nlatency 1\ninsert_pages 0\nreturn_page 0\nalloc_blocks 1\nevents 0\n"
        );
        Ok(())
    }
}
