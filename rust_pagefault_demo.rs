// SPDX-License-Identifier: GPL-2.0

//! Demand paging, made visible.
//!
//! When a program calls `malloc`, it gets a virtual address and nothing else: no physical
//! memory stands behind it yet. The first time the program touches that address, the MMU
//! walks the process's page table, finds no entry, and raises a page fault. The kernel's fault
//! handler allocates a physical frame, writes the page-table entry, and the faulting
//! instruction runs again, this time successfully.
//!
//! This module performs that same story with its own fault handler, written in Rust, so each
//! step can be watched:
//!
//! 1. A program opens `/dev/rust_pagefault_demo` (a new *instance*) and `mmap`s it. It gets a
//!    range of virtual addresses; [`Instance::mmap`] only checks the request and installs our
//!    `vm_operations`: no frame is allocated.
//! 2. The program touches a page. The MMU finds no page-table entry and the CPU enters the
//!    kernel's page-fault path, which calls our `fault` operation.
//! 3. [`Instance::fault`] looks the page offset up in the instance's [`FrameTable`]. On the
//!    first touch it allocates one zeroed frame (charged to the toucher's memory cgroup, as
//!    anonymous memory is), and maps it with `vm_insert_page`, which fills the page-table
//!    entry. Later faults on the same offset (another mapping, a remap, a forked child) map the
//!    same frame.
//! 4. The fault returns, the instruction is restarted, and the access succeeds.
//!
//! Everything is counted. debugfs (`/sys/kernel/debug/rust_pagefault_demo/`, root only) shows
//! the counters (`stats`), every live frame with its page frame number (`frames`), and a
//! histogram of the handler's own latency (`latency`); `/proc/<pid>/fdinfo/<fd>` shows which
//! instance a file is. The user-space tools compare the PFNs with `/proc/<pid>/pagemap`, the
//! kernel's own record of what each virtual page maps to.
//!
//! Limits: an instance is `max_pages` pages long (a mapping beyond that fails with `EINVAL`),
//! and all instances together hold at most `max_total_pages` frames (a fault past that gets
//! `SIGBUS`). Frames live as long as the instance: they survive `munmap` and are freed at the
//! last `close`.
//!
//! The kernel crate has no abstraction for `vm_operations_struct` yet. The few raw bindings
//! that this needs live in the [`vm`] module below, each behind a safe interface. Outside it,
//! `unsafe` appears only where the proof rests on this file's own invariants, each with its
//! `// SAFETY:` comment: the frame table is a lock-free array of write-once slots, which lends
//! its frames out for as long as it is borrowed because it never removes one while it lives
//! (see [`OnceArray`]); `mmap` gives [`vm::install`] a
//! handler that outlives the mapping; and the instance list is set up once at load (the
//! kernel's `global_lock!` pattern).

use core::{fmt, marker::PhantomData};
use kernel::{
    alloc::KVVec,
    cpu::CpuId,
    debugfs,
    ffi::c_void,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::virt::{VmaMixedMap, VmaNew},
    page::{PAGE_MASK, PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    seq_file::{seq_print, SeqFile},
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed},
        Arc, ArcBorrow, SetOnce,
    },
    time::{Instant, Monotonic},
    types::ForeignOwnable,
};

module! {
    type: PagefaultDemo,
    name: "rust_pagefault_demo",
    authors: ["The rust_pagefault_demo developers"],
    description: "Demand paging made visible: a Rust mmap fault handler with debugfs evidence",
    license: "GPL",
    params: {
        max_pages: u64 {
            default: 65536,
            description: "Pages per instance (1..=16777216); a larger mmap fails with EINVAL",
        },
        max_total_pages: u64 {
            default: 0,
            description: "Live frames of all instances at most (0: a quarter of RAM)",
        },
        prefault: u32 {
            default: 1,
            description: "Pages mapped per fault (1..=512): the faulting page and those after it",
        },
        huge: bool {
            default: false,
            description: "Use 2 MiB frames, mapped with one PMD where a mapping is 2 MiB aligned",
        },
    },
}

/// The limits the module runs with, validated from the module parameters at load time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Limits {
    /// Pages per instance.
    max_pages: usize,
    /// Live frames of all instances together.
    max_total_pages: usize,
    /// Pages mapped per fault.
    prefault: usize,
    /// Whether frames are 2 MiB (`vm::HUGE_ORDER`) instead of 4 KiB.
    huge: bool,
}

impl Limits {
    /// What the module runs with before its parameters are checked.
    const DEFAULT: Limits = Limits {
        max_pages: 0,
        max_total_pages: 0,
        prefault: 1,
        huge: false,
    };

    /// The largest instance: 64 GiB of 4 KiB pages keeps every page offset and byte length
    /// far from overflowing.
    const MAX_PAGES_LIMIT: u64 = 1 << 24;

    /// At most one page table's worth of pages per fault.
    const MAX_PREFAULT: u32 = 512;

    /// Validates the module parameters against the machine's RAM (in pages).
    ///
    /// `max_total_pages == 0` means a quarter of RAM. A cap larger than RAM is refused: it
    /// would never stop anything. A cap smaller than `max_pages` is allowed; then the cap, not
    /// the size, stops an instance's growth.
    ///
    /// With `huge`, a frame is 512 pages: the cap must hold at least one, and `prefault` (a
    /// 4 KiB notion) must stay 1.
    fn new(
        max_pages: u64,
        max_total_pages: u64,
        prefault: u32,
        huge: bool,
        ram_pages: usize,
    ) -> Result<Self, &'static str> {
        if max_pages == 0 || max_pages > Self::MAX_PAGES_LIMIT {
            return Err("max_pages must be between 1 and 16777216");
        }
        if prefault == 0 || prefault > Self::MAX_PREFAULT {
            return Err("prefault must be between 1 and 512");
        }
        let max_total_pages = match max_total_pages {
            0 => (ram_pages / 4).max(1),
            n if n > ram_pages as u64 => {
                return Err("max_total_pages must not exceed the machine's RAM in pages")
            }
            n => n as usize,
        };
        if huge && prefault != 1 {
            return Err("prefault and huge cannot be combined");
        }
        if huge && max_total_pages < 1 << vm::HUGE_ORDER {
            return Err("with huge, max_total_pages must hold one 2 MiB frame (512 pages)");
        }
        Ok(Self {
            max_pages: max_pages as usize,
            max_total_pages,
            prefault: prefault as usize,
            huge,
        })
    }
}

/// The module's counters, each a `name value` line of the `stats` file.
#[derive(Clone, Copy)]
enum Counter {
    Faults,
    ReadFaults,
    WriteFaults,
    FramesAllocated,
    FramesFreed,
    Sigbus,
    Oom,
    Instances,
    InstancesOpened,
    MmapRefused,
    /// Pages mapped by faults besides the faulting page (`prefault` > 1).
    Prefaulted,
    /// Calls of the PMD-level handler (`huge`), which are not counted in `faults`.
    HugeFaults,
    /// PMD-level calls that asked the core to fall back to 4 KiB faults.
    HugeFallbacks,
    /// Nanoseconds spent in the handlers, all calls together (see `latency` for the spread).
    HandlerNs,
}

impl Counter {
    const COUNT: usize = 14;
    const NAMES: [&'static str; Counter::COUNT] = [
        "faults",
        "read_faults",
        "write_faults",
        "frames_allocated",
        "frames_freed",
        "sigbus",
        "oom",
        "instances",
        "instances_opened",
        "mmap_refused",
        "prefaulted",
        "huge_faults",
        "huge_fallbacks",
        "handler_ns",
    ];
}

/// A log2 histogram of nanoseconds: bucket `b` counts values in `[2^(b-1), 2^b)`, bucket 0
/// counts zero.
struct Histogram;

impl Histogram {
    const BUCKETS: usize = 40;

    /// The bucket of `ns`; the last bucket also takes everything above 2^38 ns.
    fn bucket(ns: u64) -> usize {
        ((u64::BITS - ns.leading_zeros()) as usize).min(Self::BUCKETS - 1)
    }
}

/// One CPU's share of the counters, on cache lines of its own.
#[repr(align(64))]
struct Shard {
    counters: [Atomic<u64>; Counter::COUNT],
    latency: [Atomic<u64>; Histogram::BUCKETS],
}

/// The module's counters and the handler-latency histogram.
///
/// The fault path takes no lock, and, so that faults on different CPUs do not fight over
/// cache lines, each CPU adds to a shard of its own (CPUs beyond `SHARDS` share). Readers sum
/// the shards with wrapping arithmetic, which is exact even when a value was added on one
/// shard and taken away on another.
struct Stats {
    shards: [Shard; SHARDS],
}

impl Stats {
    const fn new() -> Self {
        Self {
            shards: [const {
                Shard {
                    counters: [const { Atomic::new(0) }; Counter::COUNT],
                    latency: [const { Atomic::new(0) }; Histogram::BUCKETS],
                }
            }; SHARDS],
        }
    }

    /// This CPU's shard. Being moved to another CPU meanwhile is harmless: the sums stay right.
    fn shard(&self) -> &Shard {
        &self.shards[this_shard()]
    }

    fn add(&self, counter: Counter, n: u64) {
        self.shard().counters[counter as usize].add(n, Relaxed);
    }

    fn sub(&self, counter: Counter, n: u64) {
        self.add(counter, n.wrapping_neg());
    }

    /// One counter's sum; only the KUnit tests read a single counter, so without KUnit
    /// (Debian's kernels) it does not exist and leaves no dead code.
    #[cfg(CONFIG_KUNIT = "y")]
    fn get(&self, counter: Counter) -> u64 {
        self.shards.iter().fold(0u64, |sum, shard| {
            sum.wrapping_add(shard.counters[counter as usize].load(Relaxed))
        })
    }

    /// Counts one handler call that took `ns` nanoseconds, adding one to each of `calls` too:
    /// all on one shard, found once.
    fn record_call(&self, calls: &[Counter], ns: u64) {
        let shard = self.shard();
        for &counter in calls {
            shard.counters[counter as usize].add(1, Relaxed);
        }
        shard.counters[Counter::HandlerNs as usize].add(ns, Relaxed);
        shard.latency[Histogram::bucket(ns)].add(1, Relaxed);
    }

    /// Writes `name value` lines: the counters, then the budget's count of live frames (see
    /// [`FrameBudget`]) and the settings it runs with.
    fn write(
        &self,
        f: &mut fmt::Formatter<'_>,
        budget: &FrameBudget,
        limits: &Limits,
    ) -> fmt::Result {
        for (i, name) in Counter::NAMES.iter().enumerate() {
            let value = self.shards.iter().fold(0u64, |sum, shard| {
                sum.wrapping_add(shard.counters[i].load(Relaxed))
            });
            writeln!(f, "{name} {value}")?;
        }
        writeln!(f, "frames_live {}", budget.live())?;
        writeln!(f, "max_total_pages {}", budget.cap())?;
        writeln!(f, "prefault {}", limits.prefault)?;
        writeln!(f, "huge {}", u8::from(limits.huge))
    }

    /// The histogram: one line per non-empty bucket, `<upper bound in ns> <count>`.
    fn write_latency(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# le_ns count")?;
        for b in 0..Histogram::BUCKETS {
            let count = self.shards.iter().fold(0u64, |sum, shard| {
                sum.wrapping_add(shard.latency[b].load(Relaxed))
            });
            if count != 0 {
                writeln!(f, "{} {}", 1u64 << b, count)?;
            }
        }
        Ok(())
    }
}

/// The per-CPU state ([`Stats`], [`FrameBudget`]'s stocks) this CPU uses: CPUs beyond
/// [`SHARDS`] share. Being moved to another CPU right after is harmless, only slower.
fn this_shard() -> usize {
    CpuId::current().as_u32() as usize % SHARDS
}

/// How many per-CPU shards the counters and the budget have.
const SHARDS: usize = 8;

/// One CPU's stock of pages, on a cache line of its own.
#[repr(align(64))]
struct Stock(Atomic<usize>);

/// Counts live frames of all instances against the `max_total_pages` cap.
///
/// A frame is reserved before it is allocated, so concurrent faults can never overshoot the
/// cap; a reservation that is not committed gives its pages back when dropped.
///
/// Far from the cap, each CPU keeps a small stock of pages that are already counted, as the
/// memory cgroup keeps a per-CPU stock of charges: a fault reserves from its CPU's stock, and
/// the counter all CPUs share is written once per [`Self::BATCH`] faults instead of at every
/// one. Near the cap (closer than all stocks together could be) no stock is handed out, and a
/// reservation that does not fit takes every stock back before it gives up, so the cap is
/// exact: a reservation fails only when the live frames and the reservations in flight leave
/// no room.
struct FrameBudget {
    /// Pages counted against the cap: live frames, reservations in flight, and the stocks.
    charged: Atomic<usize>,
    cap: Atomic<usize>,
    stocks: [Stock; SHARDS],
}

impl FrameBudget {
    /// Pages a CPU takes into its stock at once.
    const BATCH: usize = 32;

    const fn new(cap: usize) -> Self {
        Self {
            charged: Atomic::new(0),
            cap: Atomic::new(cap),
            stocks: [const { Stock(Atomic::new(0)) }; SHARDS],
        }
    }

    /// The frames live now: exact when no reservation is in flight.
    fn live(&self) -> usize {
        let stocked = self
            .stocks
            .iter()
            .fold(0usize, |sum, stock| sum.wrapping_add(stock.0.load(Relaxed)));
        self.charged.load(Relaxed).saturating_sub(stocked)
    }

    fn cap(&self) -> usize {
        self.cap.load(Relaxed)
    }

    /// Reserves `pages` pages, or returns `None` when they would pass the cap.
    fn reserve(&self, pages: usize) -> Option<Reservation<'_>> {
        let reserved = || {
            Some(Reservation {
                budget: self,
                pages,
            })
        };
        let stock = &self.stocks[this_shard()].0;
        let mut have = stock.load(Relaxed);
        while have >= pages {
            match stock.cmpxchg(have, have - pages, Relaxed) {
                Ok(_) => return reserved(),
                Err(now) => have = now,
            }
        }
        // A new stock for this CPU too, if that leaves room for every CPU's stock.
        if self.charge(pages + Self::BATCH, Self::BATCH * SHARDS) {
            stock.add(Self::BATCH, Relaxed);
            return reserved();
        }
        if self.charge(pages, 0) {
            return reserved();
        }
        // Near the cap: the stocks count as used, so take them all back and try once more.
        for stock in &self.stocks {
            let n = stock.0.xchg(0, Relaxed);
            if n > 0 {
                self.charged.fetch_sub(n, Relaxed);
            }
        }
        if self.charge(pages, 0) {
            return reserved();
        }
        None
    }

    /// Counts `pages` more against the cap if they fit with `headroom` pages to spare.
    fn charge(&self, pages: usize, headroom: usize) -> bool {
        let cap = self.cap();
        let mut charged = self.charged.load(Relaxed);
        loop {
            let fits = charged
                .checked_add(pages + headroom)
                .is_some_and(|need| need <= cap);
            if !fits {
                return false;
            }
            match self.charged.cmpxchg(charged, charged + pages, Relaxed) {
                Ok(_) => return true,
                Err(now) => charged = now,
            }
        }
    }

    /// Gives back `n` committed frames.
    fn release(&self, n: usize) {
        self.charged.fetch_sub(n, Relaxed);
    }
}

/// Pages reserved in a [`FrameBudget`]: given back on drop unless committed.
#[must_use]
struct Reservation<'a> {
    budget: &'a FrameBudget,
    pages: usize,
}

impl Reservation<'_> {
    /// Keeps `pages` of the reserved pages counted ([`FrameBudget::release`] gives them back
    /// later) and gives the rest back now.
    fn commit(mut self, pages: usize) {
        self.pages -= pages.min(self.pages);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.pages > 0 {
            self.budget.release(self.pages);
        }
    }
}

static STATS: Stats = Stats::new();
static BUDGET: FrameBudget = FrameBudget::new(0);
static NEXT_INSTANCE_ID: Atomic<u64> = Atomic::new(1);

kernel::sync::global_lock! {
    // SAFETY: `PagefaultDemo::init` initialises it before the device and debugfs exist, which
    // are its only users.
    unsafe(uninit) static INSTANCES: Mutex<KVec<Arc<Instance>>> = KVec::new();
}

/// The limits the module was loaded with: set by `PagefaultDemo::init`, once the parameters
/// are checked, before the device and debugfs files that read them exist.
static LIMITS: SetOnce<Limits> = SetOnce::new();

/// The limits the module was loaded with.
fn limits() -> Limits {
    LIMITS.copy().unwrap_or(Limits::DEFAULT)
}

/// A sparse array of write-once slots, read and written without a lock.
///
/// Two levels, as in the page tables it feeds: a directory, allocated for the whole length up
/// front, points to leaves of [`LEAF_SLOTS`] slots (4 KiB each), allocated when a value first
/// lands in their range. A slot is written once: the first value stored in it stays until the
/// array is dropped, and a later store gets that first value back. So a value borrowed from
/// the array stays valid for as long as the array is borrowed, a lookup is two acquire loads,
/// and a store one compare-and-exchange: concurrent faults never wait for each other.
///
/// # Invariants
///
/// - A non-null directory entry comes from [`KBox::into_raw`] of a [`Leaf`] that the array
///   owns, and it never changes until the array is dropped.
/// - A non-null slot comes from [`ForeignOwnable::into_foreign`] of a `T` that the array owns,
///   and it never changes until the array is dropped.
/// - Both are published with release (or full) ordering, after the leaf or value is initialised.
///
/// `T: Send` because a value stored from one thread may be dropped on another; sharing the
/// array (`Sync`) lends values to every thread, which `PhantomData<T>` allows only if
/// `T: Sync`.
struct OnceArray<T: ForeignOwnable + Send> {
    dir: KVVec<Atomic<*mut Leaf>>,
    /// The number of slots: indices `0..len` are valid.
    len: usize,
    _values: PhantomData<T>,
}

/// The slots per leaf of a [`OnceArray`]: one page of pointers.
const LEAF_SLOTS: usize = PAGE_SIZE / core::mem::size_of::<usize>();

/// One leaf of a [`OnceArray`].
type Leaf = [Atomic<*mut c_void>; LEAF_SLOTS];

impl<T: ForeignOwnable + Send> OnceArray<T> {
    /// An empty array of `len` slots; only its directory is allocated (8 bytes per 512 slots).
    fn new(len: usize) -> Result<Self> {
        let leaves = len.div_ceil(LEAF_SLOTS);
        let mut dir = KVVec::with_capacity(leaves, GFP_KERNEL)?;
        for _ in 0..leaves {
            dir.push_within_capacity(Atomic::new(core::ptr::null_mut()))
                .map_err(|_| ENOMEM)?;
        }
        // INVARIANT: every entry is null.
        Ok(Self {
            dir,
            len,
            _values: PhantomData,
        })
    }

    /// The leaf that holds slot `index`, if it exists.
    fn leaf(&self, index: usize) -> Option<&Leaf> {
        let leaf = self.dir.get(index / LEAF_SLOTS)?.load(Acquire);
        // SAFETY: a non-null entry points to a leaf that the array owns until it is dropped
        // (the type invariant), and the acquire load pairs with the release that published it,
        // so it is initialised.
        unsafe { leaf.as_ref() }
    }

    /// The value in `slot`, one of the array's, if there is one.
    fn value<'a>(&'a self, slot: &'a Atomic<*mut c_void>) -> Option<T::Borrowed<'a>> {
        let ptr = slot.load(Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-null slot holds a pointer from `into_foreign` that the array owns and
        // does not give back (`from_foreign`) before it is dropped (the type invariant), so it
        // may be borrowed for as long as `self` is; the acquire load makes the value's
        // initialisation visible.
        Some(unsafe { T::borrow(ptr) })
    }

    /// The value in slot `index`, if there is one.
    fn get(&self, index: usize) -> Option<T::Borrowed<'_>> {
        self.value(&self.leaf(index)?[index % LEAF_SLOTS])
    }

    /// Calls `f(index, value)` for every slot that holds a value, in index order, until `f`
    /// fails. Values stored meanwhile may or may not be seen.
    fn try_for_each<E>(
        &self,
        mut f: impl FnMut(usize, T::Borrowed<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for first in (0..self.len).step_by(LEAF_SLOTS) {
            let Some(leaf) = self.leaf(first) else {
                continue;
            };
            for (i, slot) in leaf.iter().enumerate() {
                if let Some(value) = self.value(slot) {
                    f(first + i, value)?;
                }
            }
        }
        Ok(())
    }

    /// The number of slots that hold a value.
    fn count(&self) -> usize {
        let mut n = 0;
        let _ = self.try_for_each(|_, _| -> Result<(), ()> {
            n += 1;
            Ok(())
        });
        n
    }

    /// Stores `value` in slot `index` unless the slot holds a value already. Returns the value
    /// the slot holds then, and whether it is `value` (if not, `value` is dropped). `EINVAL`
    /// for an index past the end, `ENOMEM` if the slot's leaf could not be allocated.
    fn set(&self, index: usize, value: T) -> Result<(T::Borrowed<'_>, bool)> {
        if index >= self.len {
            return Err(EINVAL);
        }
        let leaf = match self.leaf(index) {
            Some(leaf) => leaf,
            None => self.new_leaf(index / LEAF_SLOTS)?,
        };
        let ptr = value.into_foreign();
        // INVARIANT: the slot changes only from null, once, with full ordering.
        match leaf[index % LEAF_SLOTS].cmpxchg(core::ptr::null_mut(), ptr, Full) {
            // SAFETY: `ptr` is in the slot now, owned by the array until it is dropped.
            Ok(_) => Ok((unsafe { T::borrow(ptr) }, true)),
            Err(first) => {
                // SAFETY: `ptr` comes from `into_foreign` above and went nowhere.
                drop(unsafe { T::from_foreign(ptr) });
                // SAFETY: as in `value`; the failed exchange was fully ordered.
                Ok((unsafe { T::borrow(first) }, false))
            }
        }
    }

    /// Installs an empty leaf as directory entry `i`, or returns the one a concurrent store
    /// installed first.
    fn new_leaf(&self, i: usize) -> Result<&Leaf> {
        let leaf = KBox::init(
            pin_init::init_array_from_fn(|_| Ok::<_, Error>(Atomic::new(core::ptr::null_mut()))),
            GFP_KERNEL,
        )?;
        let raw = KBox::into_raw(leaf);
        // INVARIANT: the entry changes only from null, once, with full ordering, to a leaf
        // that is fully initialised.
        match self.dir[i].cmpxchg(core::ptr::null_mut(), raw, Full) {
            // SAFETY: the leaf is the array's now, and lives until the array is dropped.
            Ok(_) => Ok(unsafe { &*raw }),
            Err(first) => {
                // SAFETY: `raw` comes from `KBox::into_raw` above and went nowhere.
                drop(unsafe { KBox::from_raw(raw) });
                // SAFETY: as in `leaf`; the failed exchange was fully ordered.
                Ok(unsafe { &*first })
            }
        }
    }
}

impl<T: ForeignOwnable + Send> Drop for OnceArray<T> {
    fn drop(&mut self) {
        for entry in self.dir.iter() {
            let leaf = entry.load(Relaxed);
            if leaf.is_null() {
                continue;
            }
            // SAFETY: a non-null entry is a leaf the array owns (the type invariant), and
            // `&mut self` means that nothing borrows from the array any more.
            let leaf = unsafe { KBox::from_raw(leaf) };
            for slot in leaf.iter() {
                let ptr = slot.load(Relaxed);
                if !ptr.is_null() {
                    // SAFETY: a non-null slot holds a `T` that the array owns (the type
                    // invariant), given back here once.
                    drop(unsafe { T::from_foreign(ptr) });
                }
            }
        }
    }
}

/// The frames of one instance, indexed by frame number: page offset >> `ORDER`.
///
/// Frames live in a [`OnceArray`], so the first frame stored for an offset is the one every
/// mapping gets, and a frame found in the table stays valid for as long as the table is
/// borrowed: the table never removes one, and frees them all when it is dropped. Dense, a frame
/// costs the table 8 bytes (its slot; a leaf of 4 KiB serves 512 frames), plus 8 bytes of
/// directory per 512 slots of the instance's size. The table keeps no counters: on a fault,
/// every word written is either the new frame's slot or per CPU, so two threads faulting on
/// one instance share no cache line but the global budget's.
struct FrameTable<const ORDER: u32> {
    frames: OnceArray<vm::Frame<ORDER>>,
}

impl<const ORDER: u32> FrameTable<ORDER> {
    /// An empty table for the frames of `pages` 4 KiB pages.
    fn new(pages: usize) -> Result<Self> {
        Ok(Self {
            frames: OnceArray::new(pages.div_ceil(1 << ORDER))?,
        })
    }

    /// The number of 4 KiB pages in the table's frames, counted (fdinfo and the instance's
    /// end need it, faults do not).
    fn pages(&self) -> usize {
        self.frames.count() << ORDER
    }

    /// Frame number `index`, if it exists.
    fn get(&self, index: usize) -> Option<vm::FrameRef<'_, ORDER>> {
        self.frames.get(index)
    }

    /// Stores `frame` as frame number `index` unless the table has that frame already. Returns
    /// the frame the table holds then, and whether it is `frame` (if not, `frame` is freed).
    fn store(
        &self,
        index: usize,
        frame: vm::Frame<ORDER>,
    ) -> Result<(vm::FrameRef<'_, ORDER>, bool), Shortage> {
        self.frames.set(index, frame).map_err(|e| {
            if e == ENOMEM {
                Shortage::Memory
            } else {
                Shortage::Refused
            }
        })
    }

    /// Frame number `index`: the one in the table, or a new zeroed one, reserved in `budget`
    /// first and counted in `stats` (the module's [`BUDGET`] and [`STATS`]; tests bring their
    /// own).
    fn frame(
        &self,
        budget: &FrameBudget,
        stats: &Stats,
        index: usize,
    ) -> Result<vm::FrameRef<'_, ORDER>, Shortage> {
        if let Some(frame) = self.get(index) {
            return Ok(frame);
        }
        let reservation = budget.reserve(1 << ORDER).ok_or(Shortage::Cap)?;
        let frame = vm::Frame::alloc_zeroed().map_err(|_| Shortage::Memory)?;
        // A concurrent fault may have stored a frame meanwhile: then ours is freed, and the
        // reservation given back when it drops.
        let (frame, stored) = self.store(index, frame)?;
        if stored {
            // Counted in the table now: so in the budget and the counters, before anything
            // else can return.
            reservation.commit(1 << ORDER);
            stats.add(Counter::FramesAllocated, 1 << ORDER);
        }
        Ok(frame)
    }

    /// Fills `slots` with frames `start..start + slots.len()`, as [`Self::frame`] would one by
    /// one, for prefaulting.
    ///
    /// However many slots there are, the cap is asked once: that, and the one
    /// `vm_insert_pages` call the caller makes, is what makes a batch cheaper per page than
    /// single faults. On a shortage, the slots from the first one that could not be filled may
    /// stay empty.
    fn fill<'a>(
        &'a self,
        budget: &FrameBudget,
        stats: &Stats,
        start: usize,
        slots: &mut [Option<vm::FrameRef<'a, ORDER>>],
    ) -> Result<(), Shortage> {
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = self.get(start + i);
        }
        let missing = slots.iter().filter(|slot| slot.is_none()).count();
        if missing == 0 {
            return Ok(());
        }
        let reservation = budget.reserve(missing << ORDER).ok_or(Shortage::Cap)?;
        let (mut stored, mut result) = (0, Ok(()));
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let frame = match vm::Frame::alloc_zeroed() {
                Ok(frame) => frame,
                Err(_) => {
                    result = Err(Shortage::Memory);
                    break;
                }
            };
            match self.store(start + i, frame) {
                Ok((frame, ours)) => {
                    stored += usize::from(ours);
                    *slot = Some(frame);
                }
                Err(shortage) => {
                    result = Err(shortage);
                    break;
                }
            }
        }
        // The reservations of the frames that did not go in are given back here.
        reservation.commit(stored << ORDER);
        stats.add(Counter::FramesAllocated, (stored as u64) << ORDER);
        result
    }

    /// Calls `f(pgoff, pfn)` for every 4 KiB page of every frame, in page-offset order.
    fn for_each(&self, mut f: impl FnMut(usize, usize) -> fmt::Result) -> fmt::Result {
        self.frames.try_for_each(|index, frame| {
            for i in 0..1 << ORDER {
                f((index << ORDER) + i, frame.pfn() + i)?;
            }
            Ok(())
        })
    }
}

/// Why a page could not be mapped.
enum Shortage {
    /// `max_total_pages` is reached.
    Cap,
    /// An allocation failed.
    Memory,
    /// `vm_insert_page` refused the page.
    Refused,
}

impl Shortage {
    /// Counts the shortage and turns it into what the faulting access gets.
    fn outcome(self) -> vm::FaultOutcome {
        match self {
            Self::Cap | Self::Refused => {
                STATS.add(Counter::Sigbus, 1);
                vm::FaultOutcome::Sigbus
            }
            Self::Memory => {
                STATS.add(Counter::Oom, 1);
                vm::FaultOutcome::Oom
            }
        }
    }
}

/// The result of mapping one page: `EBUSY` means a thread of the same process mapped it
/// first, so the access will succeed.
fn inserted(result: Result) -> Result<(), Shortage> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e == EBUSY => Ok(()),
        Err(e) if e == ENOMEM => Err(Shortage::Memory),
        Err(_) => Err(Shortage::Refused),
    }
}

/// One open file of the device: its own frames, shared by all its mappings.
#[pin_data(PinnedDrop)]
struct Instance {
    /// Unique among the instances of this module load; shown in fdinfo and `frames`.
    id: u64,
    /// The instance's size in pages (`max_pages` when it was opened).
    size: usize,
    /// Pages mapped per 4 KiB fault (`prefault` when it was opened).
    prefault: usize,
    /// Whether the frames are 2 MiB (`huge` when it was opened): then `small` has no slots,
    /// else `large` has none.
    huge: bool,
    small: FrameTable<0>,
    large: FrameTable<{ vm::HUGE_ORDER }>,
}

impl Instance {
    fn new() -> impl PinInit<Self, Error> {
        let limits = limits();
        let (small, large) = if limits.huge {
            (0, limits.max_pages)
        } else {
            (limits.max_pages, 0)
        };
        try_pin_init!(Self {
            id: NEXT_INSTANCE_ID.fetch_add(1, Relaxed),
            size: limits.max_pages,
            prefault: limits.prefault,
            huge: limits.huge,
            small: FrameTable::new(small)?,
            large: FrameTable::new(large)?,
        })
    }

    /// The 4 KiB pages of the instance's frames.
    fn pages(&self) -> usize {
        self.small.pages() + self.large.pages()
    }

    /// Maps the page of `pgoff` at `address`, allocating its frame on the first touch; with
    /// `prefault` > 1, also maps the pages after it.
    fn map(&self, vma: &VmaMixedMap, pgoff: usize, address: usize) -> Result<(), Shortage> {
        if pgoff >= self.size {
            // mmap refuses such ranges and VM_DONTEXPAND stops growth: only a kernel bug gets
            // here, and it must not get a frame.
            return Err(Shortage::Refused);
        }
        let address = address & PAGE_MASK;
        if self.huge {
            let frame = self.large.frame(&BUDGET, &STATS, pgoff >> vm::HUGE_ORDER)?;
            return inserted(vm::insert_subpage(
                vma,
                address,
                frame,
                pgoff & vm::HUGE_MASK,
            ));
        }
        let frame = self.small.frame(&BUDGET, &STATS, pgoff)?;
        inserted(vma.vm_insert_page(address, &frame.page()))?;
        if self.prefault > 1 {
            self.prefault(vma, pgoff + 1, address + PAGE_SIZE, self.prefault - 1);
        }
        Ok(())
    }

    /// Maps up to `count` pages from `pgoff` at `address`, allocating their frames, in batches
    /// of one `vm_insert_pages` call each. Best effort: it stops at the end of the mapping or
    /// of the instance, at the frame cap, or at an allocation failure (those pages then fault
    /// on their own), and skips pages that are mapped already.
    fn prefault(&self, vma: &VmaMixedMap, pgoff: usize, address: usize, count: usize) {
        let count = count
            .min(self.size.saturating_sub(pgoff))
            .min((vma.end() - address) >> PAGE_SHIFT);
        let mut batch = vm::PageBatch::new(address);
        let (mut done, mut mapped) = (0, 0);
        while done < count {
            let mut slots = [None; vm::PageBatch::CAPACITY];
            let n = (count - done).min(slots.len());
            // Best effort: a shortage ends the prefault at the first page it left empty.
            let _ = self
                .small
                .fill(&BUDGET, &STATS, pgoff + done, &mut slots[..n]);
            let filled = slots[..n].iter().take_while(|slot| slot.is_some()).count();
            for frame in slots[..filled].iter().flatten() {
                batch.push(&frame.page());
            }
            let (inserted, clean) = batch.insert(vma);
            mapped += inserted;
            done += filled;
            // A shortage, or a page the core would not map (no memory for a page table):
            // those pages fault on their own.
            if filled < n || !clean {
                break;
            }
        }
        STATS.add(Counter::Prefaulted, mapped as u64);
    }

    /// Maps the 2 MiB frame around `fault` with one PMD, or asks for 4 KiB faults instead.
    fn map_pmd(&self, fault: &vm::Fault, pmd: &vm::PmdFault<'_>) -> vm::FaultOutcome {
        let index = fault.pgoff >> vm::HUGE_ORDER;
        // A private mapping must never get a writable view of the instance's frame: its pages
        // go through 4 KiB faults, where the core copies on write. So does a frame that would
        // reach past the instance's end.
        if !self.huge || !fault.shared || (index + 1) << vm::HUGE_ORDER > self.size {
            STATS.add(Counter::HugeFallbacks, 1);
            return vm::FaultOutcome::Fallback;
        }
        match self.large.frame(&BUDGET, &STATS, index) {
            Ok(frame) => pmd.insert(frame, fault.write),
            Err(shortage) => shortage.outcome(),
        }
    }
}

impl vm::FaultHandler for Instance {
    fn fault(&self, vma: &VmaMixedMap, fault: &vm::Fault) -> vm::FaultOutcome {
        let start = Instant::<Monotonic>::now();
        let outcome = match self.map(vma, fault.pgoff, fault.address) {
            Ok(()) => vm::FaultOutcome::Mapped,
            Err(shortage) => shortage.outcome(),
        };
        let kind = if fault.write {
            Counter::WriteFaults
        } else {
            Counter::ReadFaults
        };
        record_call(start, &[Counter::Faults, kind]);
        outcome
    }

    fn pmd_fault(&self, fault: &vm::Fault, pmd: &vm::PmdFault<'_>) -> vm::FaultOutcome {
        let start = Instant::<Monotonic>::now();
        let outcome = self.map_pmd(fault, pmd);
        record_call(start, &[Counter::HugeFaults]);
        outcome
    }
}

/// Records one handler call that started at `start`, counted in `calls`.
fn record_call(start: Instant<Monotonic>, calls: &[Counter]) {
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
    STATS.record_call(calls, ns);
}

#[pinned_drop]
impl PinnedDrop for Instance {
    fn drop(self: Pin<&mut Self>) {
        // The frame tables free the frames right after this; count them as freed now.
        let n = self.pages();
        STATS.add(Counter::FramesFreed, n as u64);
        STATS.sub(Counter::Instances, 1);
        BUDGET.release(n);
    }
}

#[vtable]
impl MiscDevice for Instance {
    type Ptr = Arc<Instance>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Instance>> {
        let instance = Arc::pin_init(Instance::new(), GFP_KERNEL)?;
        // Counted now, so that dropping it (below, if the list cannot grow) balances.
        STATS.add(Counter::Instances, 1);
        STATS.add(Counter::InstancesOpened, 1);
        INSTANCES.lock().push(instance.clone(), GFP_KERNEL)?;
        Ok(instance)
    }

    fn release(instance: Arc<Instance>, _file: &File) {
        INSTANCES.lock().retain(|i| i.id != instance.id);
        // The last reference frees the frames: no mapping is left, since every VMA of this
        // file holds a reference on the file and release runs only after the last one is gone.
    }

    fn mmap(instance: ArcBorrow<'_, Instance>, _file: &File, vma: &VmaNew) -> Result {
        let refuse = |e: Error| {
            STATS.add(Counter::MmapRefused, 1);
            Err(e)
        };
        let pages = (vma.end() - vma.start()) >> PAGE_SHIFT;
        let pgoff = vm::pgoff(vma);
        match pgoff.checked_add(pages) {
            Some(end) if pages > 0 && end <= instance.size => {}
            _ => return refuse(EINVAL),
        }
        // Data frames have no business being executed.
        if vma.executable() {
            return refuse(EPERM);
        }
        vma.try_clear_mayexec()?;
        // Growth by mremap is refused: the size is checked here, once.
        vma.set_dontexpand();
        let vma = vma.set_mixedmap();
        // SAFETY: `vma` maps this file, so it holds a reference on the file for as long as it
        // (or a copy made by fork or split) exists, and the file holds `instance` until its
        // release, which runs only after the last such reference is dropped.
        unsafe { vm::install(vma, &*instance, instance.huge) };
        Ok(())
    }

    fn show_fdinfo(instance: ArcBorrow<'_, Instance>, m: &SeqFile, _file: &File) {
        seq_print!(
            m,
            "instance:\t{}\nframes:\t{}\nsize_pages:\t{}\n",
            instance.id,
            instance.pages(),
            instance.size
        );
    }
}

/// The `frames` debugfs file: a header, then `instance pgoff pfn phys` per live 4 KiB page
/// (a 2 MiB frame shows as its 512 pages).
fn write_frames(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "# instance pgoff pfn phys")?;
    let instances = INSTANCES.lock();
    for instance in instances.iter() {
        let mut row = |pgoff: usize, pfn: usize| {
            writeln!(
                f,
                "{} {} {:#x} {:#x}",
                instance.id,
                pgoff,
                pfn,
                pfn << PAGE_SHIFT
            )
        };
        instance.small.for_each(&mut row)?;
        instance.large.for_each(&mut row)?;
    }
    Ok(())
}

#[pin_data(PinnedDrop)]
struct PagefaultDemo {
    #[pin]
    misc: MiscDeviceRegistration<Instance>,
    #[pin]
    stats: debugfs::File<()>,
    #[pin]
    frames: debugfs::File<()>,
    #[pin]
    latency: debugfs::File<()>,
    _dir: debugfs::Dir,
}

#[pinned_drop]
impl PinnedDrop for PagefaultDemo {
    fn drop(self: Pin<&mut Self>) {
        // The module is going away, so no file of it is open and no instance is left. The
        // list is a static, never dropped: free its buffer here, or each load would leak it.
        let instances = core::mem::take(&mut *INSTANCES.lock());
        if !instances.is_empty() {
            pr_err!("{} instances left at unload\n", instances.len());
        }
    }
}

impl kernel::InPlaceModule for PagefaultDemo {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let checked = Limits::new(
            module_parameters::max_pages.value(),
            module_parameters::max_total_pages.value(),
            module_parameters::prefault.value(),
            module_parameters::huge.value(),
            vm::ram_pages(),
        );
        let setup = match checked {
            Ok(limits) => {
                LIMITS.populate(limits);
                BUDGET.cap.store(limits.max_total_pages, Relaxed);
                // SAFETY: called once, before the device and debugfs files that use it exist.
                unsafe { INSTANCES.init() };
                pr_info!(
                    "max_pages={} max_total_pages={} prefault={} huge={}\n",
                    limits.max_pages,
                    limits.max_total_pages,
                    limits.prefault,
                    limits.huge
                );
                Ok(())
            }
            Err(why) => {
                pr_err!("invalid module parameters: {why}\n");
                Err(EINVAL)
            }
        };
        let dir = debugfs::Dir::new(c"rust_pagefault_demo");
        try_pin_init!(Self {
            _: { setup? },
            stats <- dir.read_callback_file(c"stats", (), &|(), f| {
                STATS.write(f, &BUDGET, &limits())
            }),
            frames <- dir.read_callback_file(c"frames", (), &|(), f| write_frames(f)),
            latency <- dir.read_callback_file(c"latency", (), &|(), f| {
                STATS.write_latency(f)
            }),
            _dir: dir,
            misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rust_pagefault_demo",
            }),
        })
    }
}

/// The raw side of the memory-management hooks, kept small and in one place.
///
/// The kernel crate offers `VmaNew`/`VmaMixedMap` for setting up and filling a mapping, but no
/// abstraction for `vm_operations_struct`, the VMA's page offset, batched or PMD-level
/// insertion, a page's PFN, or an owned frame that can live in a table as a bare pointer. This
/// module provides exactly those, each behind a safe interface whose proof is written next to
/// its `unsafe` block.
mod vm {
    use core::{marker::PhantomData, ptr::NonNull};
    use kernel::{
        alloc::AllocError,
        bindings,
        ffi::c_void,
        mm::virt::{VmaMixedMap, VmaNew},
        page::{BorrowedPage, Page, PAGE_SIZE},
        prelude::*,
        types::ForeignOwnable,
    };

    /// The order of a huge frame: one PMD, 2 MiB of 4 KiB pages.
    pub(crate) const HUGE_ORDER: u32 = bindings::HPAGE_PMD_ORDER;
    /// The page index within a huge frame.
    pub(crate) const HUGE_MASK: usize = (1 << HUGE_ORDER) - 1;

    /// What the core asked for in one fault.
    pub(crate) struct Fault {
        /// Page offset in the file of the faulting page.
        pub(crate) pgoff: usize,
        /// The faulting user address.
        pub(crate) address: usize,
        /// Whether the access was a write.
        pub(crate) write: bool,
        /// Whether the mapping is shared (`MAP_SHARED`) rather than private.
        pub(crate) shared: bool,
    }

    /// How a fault ended, as the core's `vm_fault_t` knows it.
    pub(crate) enum FaultOutcome {
        /// The page-table entry is in place: `VM_FAULT_NOPAGE`, the access is retried.
        Mapped,
        /// No memory: `VM_FAULT_OOM`, the OOM killer's business.
        Oom,
        /// The page cannot exist: `VM_FAULT_SIGBUS`.
        Sigbus,
        /// Not at this level: `VM_FAULT_FALLBACK`, the core retries with 4 KiB faults.
        Fallback,
    }

    impl FaultOutcome {
        fn into_raw(self) -> bindings::vm_fault_t {
            (match self {
                Self::Mapped => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
                Self::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
                Self::Sigbus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
                Self::Fallback => bindings::vm_fault_reason_VM_FAULT_FALLBACK,
            }) as bindings::vm_fault_t
        }

        fn from_raw(raw: bindings::vm_fault_t) -> Self {
            let has = |reason: bindings::vm_fault_reason| raw & reason as bindings::vm_fault_t != 0;
            if has(bindings::vm_fault_reason_VM_FAULT_NOPAGE) {
                Self::Mapped
            } else if has(bindings::vm_fault_reason_VM_FAULT_OOM) {
                Self::Oom
            } else if has(bindings::vm_fault_reason_VM_FAULT_FALLBACK) {
                Self::Fallback
            } else {
                Self::Sigbus
            }
        }
    }

    /// The owner of a mapping's pages: what a VMA's `vm_private_data` points to.
    pub(crate) trait FaultHandler: Sync + Sized {
        /// Handles a 4 KiB fault of `vma`, called with the mmap lock or the VMA's lock held
        /// for reading. Must not take the mmap lock.
        fn fault(&self, vma: &VmaMixedMap, fault: &Fault) -> FaultOutcome;

        /// Handles a fault that may be served at PMD level, on mappings installed with
        /// `huge`, where the 2 MiB around the fault lies inside the VMA and maps one whole
        /// frame (the shim checks); the same locking as `fault`.
        fn pmd_fault(&self, fault: &Fault, pmd: &PmdFault<'_>) -> FaultOutcome;
    }

    /// The page offset of the mapping's first page in the file.
    pub(crate) fn pgoff(vma: &VmaNew) -> usize {
        // SAFETY: `VmaNew` guarantees that the VMA is valid and that we have exclusive access
        // to it during the mmap hook, so this read does not race.
        unsafe { (*vma.as_ptr()).vm_pgoff }
    }

    /// Makes `handler` the owner of `vma`'s faults; with `huge`, PMD-level faults too, and
    /// the mapping is marked as wanting huge pages (as `MADV_HUGEPAGE` would).
    ///
    /// # Safety
    ///
    /// `handler` must stay valid for as long as `vma`, or any VMA copied or split from it,
    /// exists.
    pub(crate) unsafe fn install<T: FaultHandler>(vma: &VmaMixedMap, handler: &T, huge: bool) {
        let raw = vma.as_ptr();
        // SAFETY: `install` is called from the mmap hook (it takes the `VmaMixedMap` that
        // `VmaNew::set_mixedmap` returned), while the VMA is not yet visible to other threads,
        // so writing these fields does not race. `VM_HUGEPAGE` is a valid flag for any VMA.
        // The caller guarantees that `handler` outlives every VMA that will carry this pointer.
        unsafe {
            (*raw).vm_ops = if huge {
                &VmOps::<T>::HUGE_TABLE
            } else {
                &VmOps::<T>::TABLE
            };
            (*raw).vm_private_data = core::ptr::from_ref(handler).cast_mut().cast();
            if huge {
                (*raw).__bindgen_anon_2.vm_flags |= bindings::VM_HUGEPAGE;
            }
        }
    }

    /// The `vm_operations_struct`s of a [`FaultHandler`].
    struct VmOps<T>(PhantomData<T>);

    impl<T: FaultHandler> VmOps<T> {
        const TABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
            fault: Some(Self::fault),
            map_pages: Some(Self::map_pages),
            ..pin_init::zeroed()
        };

        const HUGE_TABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
            huge_fault: Some(Self::huge_fault),
            ..Self::TABLE
        };

        /// The handler and the fault of `vmf`.
        ///
        /// # Safety
        ///
        /// `vmf` must be the valid fault of a VMA whose ops are `TABLE` or `HUGE_TABLE`, and
        /// the returned references are used only during that fault.
        unsafe fn unpack<'a>(vmf: *mut bindings::vm_fault) -> (&'a T, &'a VmaMixedMap, Fault) {
            // SAFETY: the caller passes a valid `vmf` that lives for the whole fault.
            let (vma, fault) = unsafe {
                let vmf = &*vmf;
                let args = &vmf.__bindgen_anon_1;
                let shared = (*args.vma).__bindgen_anon_2.vm_flags & bindings::VM_SHARED;
                (
                    args.vma,
                    Fault {
                        pgoff: args.pgoff,
                        address: args.address,
                        write: vmf.flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0,
                        shared: shared != 0,
                    },
                )
            };
            // SAFETY: the VMA carries our ops, which only `install::<T>` sets, together with
            // `vm_private_data` pointing to a `T` that `install`'s caller keeps alive while the
            // VMA exists. fork and split copy both fields together.
            let handler = unsafe { &*(*vma).vm_private_data.cast::<T>() };
            // SAFETY: the core holds the mmap read lock or the per-VMA read lock for the whole
            // fault, which is what `VmaMixedMap` requires, and `VM_MIXEDMAP` was set by
            // `VmaNew::set_mixedmap` before `install` and is never cleared.
            let vma = unsafe { VmaMixedMap::from_raw(vma) };
            (handler, vma, fault)
        }

        /// # Safety
        ///
        /// Called by the core's fault path with a valid `vmf` whose VMA carries these ops.
        unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
            // SAFETY: as this function's own requirements.
            let (handler, vma, fault) = unsafe { Self::unpack(vmf) };
            handler.fault(vma, &fault).into_raw()
        }

        /// # Safety
        ///
        /// Called by the core's fault path with a valid `vmf` whose VMA carries these ops.
        unsafe extern "C" fn huge_fault(
            vmf: *mut bindings::vm_fault,
            order: kernel::ffi::c_uint,
        ) -> bindings::vm_fault_t {
            if order != HUGE_ORDER {
                return FaultOutcome::Fallback.into_raw();
            }
            // SAFETY: as this function's own requirements.
            let (handler, vma, fault) = unsafe { Self::unpack(vmf) };
            // The core does not check, for a file VMA, that a PMD fits (the driver must, as
            // DAX does): the whole 2 MiB must lie inside the VMA, and map a whole frame.
            if !pmd_fits(vma, &fault) {
                return FaultOutcome::Fallback.into_raw();
            }
            let pmd = PmdFault {
                vmf,
                _fault: PhantomData,
            };
            handler.pmd_fault(&fault, &pmd).into_raw()
        }

        /// Fault-around: maps pages that are "readily available" near a read fault, under RCU.
        ///
        /// Ours maps none: `vm_insert_page` may allocate a page table and sleep, which RCU
        /// forbids, so every page still goes through `fault` and is counted there. Having this
        /// operation at all is what tells the core (`vmf_can_call_fault` in mm/memory.c) that
        /// our `fault` does not need the mmap lock. Without it, every fault taken under the
        /// per-VMA lock would be refused with `VM_FAULT_RETRY` and redone under the mmap lock:
        /// twice the work, and faults of different threads would serialise.
        ///
        /// # Safety
        ///
        /// Called by the core; nothing is dereferenced.
        unsafe extern "C" fn map_pages(
            _vmf: *mut bindings::vm_fault,
            _start_pgoff: kernel::ffi::c_ulong,
            _end_pgoff: kernel::ffi::c_ulong,
        ) -> bindings::vm_fault_t {
            0
        }
    }

    /// Whether the 2 MiB around `fault` lies inside `vma` and starts at a page offset that is
    /// a multiple of 512, so one PMD maps exactly one whole frame.
    fn pmd_fits(vma: &VmaMixedMap, fault: &Fault) -> bool {
        let size = PAGE_SIZE << HUGE_ORDER;
        let start = fault.address & !(size - 1);
        // The page offset of `start`; none when the mapping begins past it in the file.
        let first = fault
            .pgoff
            .checked_sub((fault.address - start) >> kernel::page::PAGE_SHIFT);
        start >= vma.start()
            && start + size <= vma.end()
            && first.is_some_and(|first| first & HUGE_MASK == 0)
    }

    /// A fault being served at PMD level.
    ///
    /// # Invariants
    ///
    /// `vmf` is the valid fault of a VMA with `VM_MIXEDMAP` set, for the duration of `'a`,
    /// with the mmap or VMA lock held.
    pub(crate) struct PmdFault<'a> {
        vmf: *mut bindings::vm_fault,
        _fault: PhantomData<&'a mut bindings::vm_fault>,
    }

    impl PmdFault<'_> {
        /// Maps all of `frame` with one PMD entry, writable if `write`.
        ///
        /// The entry is a special (PFN) one that holds no reference on the frame, as 7.3's
        /// PMD split and zap expect for a `VM_MIXEDMAP` VMA: a folio-backed PMD would be
        /// split there without dropping its reference, leaking the frame. Our frames outlive
        /// every mapping anyway: a mapping holds the file, and the file holds the frames.
        pub(crate) fn insert(&self, frame: FrameRef<'_, HUGE_ORDER>, write: bool) -> FaultOutcome {
            // SAFETY: by the type invariant `vmf` is valid with the right lock held and
            // `VM_MIXEDMAP` set, which `vmf_insert_pfn_pmd` requires. The PFN is that of a
            // live, PMD-aligned 2 MiB frame that outlives the mapping (see above).
            let raw = unsafe { bindings::vmf_insert_pfn_pmd(self.vmf, frame.pfn(), write) };
            FaultOutcome::from_raw(raw)
        }
    }

    /// Maps page `index` of `frame` at `address` (for order 0, the frame itself).
    pub(crate) fn insert_subpage<const ORDER: u32>(
        vma: &VmaMixedMap,
        address: usize,
        frame: FrameRef<'_, ORDER>,
        index: usize,
    ) -> Result {
        if index >= 1 << ORDER {
            return Err(EINVAL);
        }
        // SAFETY: `vma` has `VM_MIXEDMAP` and its lock held (the invariants of `VmaMixedMap`).
        // The page is page `index` of a live frame (checked above to lie inside it): an
        // ordinary, non-anonymous page, which `vm_insert_page` accepts and takes its own
        // reference on, as it does for the pages of a page-cache folio.
        let ret = unsafe {
            bindings::vm_insert_page(vma.as_ptr(), address, frame.page.as_ptr().add(index))
        };
        kernel::error::to_result(ret)
    }

    /// Pages to map at consecutive addresses with one `vm_insert_pages` call, which takes the
    /// page-table lock once for the whole batch instead of once per page.
    ///
    /// # Invariants
    ///
    /// `pages[..len]` point to order-0 pages that stay valid for `'a`.
    pub(crate) struct PageBatch<'a> {
        address: usize,
        len: usize,
        pages: [*mut bindings::page; PageBatch::CAPACITY],
        _pages: PhantomData<&'a Page>,
    }

    impl<'a> PageBatch<'a> {
        pub(crate) const CAPACITY: usize = 32;

        /// An empty batch whose first page goes to `address`.
        pub(crate) fn new(address: usize) -> Self {
            // INVARIANT: no pages yet.
            Self {
                address,
                len: 0,
                pages: [core::ptr::null_mut(); PageBatch::CAPACITY],
                _pages: PhantomData,
            }
        }

        pub(crate) fn is_full(&self) -> bool {
            self.len == Self::CAPACITY
        }

        /// Adds the page for the next address; a full batch ignores it.
        pub(crate) fn push(&mut self, page: &BorrowedPage<'a>) {
            if self.is_full() {
                return;
            }
            // INVARIANT: a `BorrowedPage<'a>` is an order-0 page valid for `'a`.
            self.pages[self.len] = page.as_ptr();
            self.len += 1;
        }

        /// Maps the batch into `vma`, skipping pages whose page-table entry is already there
        /// (`EBUSY`) and stopping at any other error. Returns how many pages it mapped and
        /// whether it met no other error; the batch is then empty and its address moved past
        /// it.
        pub(crate) fn insert(&mut self, vma: &VmaMixedMap) -> (usize, bool) {
            let (mut start, mut mapped, mut clean) = (0, 0, true);
            while start < self.len {
                let mut left = self.len - start;
                // SAFETY: `pages[start..len]` are valid order-0 pages (type invariant), and
                // `vm_insert_pages` reads `left` of them and writes back `left`. `vma` has
                // `VM_MIXEDMAP` set and its lock held (the invariants of `VmaMixedMap`), which
                // is what `vm_insert_pages` requires, as `vm_insert_page` does.
                let ret = unsafe {
                    bindings::vm_insert_pages(
                        vma.as_ptr(),
                        self.address + start * PAGE_SIZE,
                        self.pages[start..].as_mut_ptr(),
                        &mut left,
                    )
                };
                // `left` counts the pages not mapped, starting with the one that failed.
                let done = self.len - start - left;
                mapped += done;
                if ret != -(bindings::EBUSY as i32) {
                    clean = ret == 0;
                    break;
                }
                start += done + 1;
            }
            self.address += self.len * PAGE_SIZE;
            self.len = 0;
            (mapped, clean)
        }
    }

    /// An owned, zeroed frame of `1 << ORDER` pages (a compound page when `ORDER` > 0),
    /// stored in the frame table as its bare `struct page` pointer, so a frame costs no
    /// allocation besides its pages.
    ///
    /// # Invariants
    ///
    /// `page` points to the head of an order-`ORDER` allocation from `alloc_pages`, of which
    /// `Frame` owns one reference.
    pub(crate) struct Frame<const ORDER: u32> {
        page: NonNull<bindings::page>,
    }

    // SAFETY: a page reference may be dropped and used from any thread.
    unsafe impl<const ORDER: u32> Send for Frame<ORDER> {}
    // SAFETY: `Frame` has no interior mutability; shared access only reads the pointer.
    unsafe impl<const ORDER: u32> Sync for Frame<ORDER> {}

    impl<const ORDER: u32> Frame<ORDER> {
        /// Allocates a zeroed frame, charged to the current task's memory cgroup as anonymous
        /// memory is. A huge frame is one compound page, and its allocation does not warn
        /// when no free 2 MiB block is left: the fault reports that.
        pub(crate) fn alloc_zeroed() -> Result<Self, AllocError> {
            let mut flags = bindings::GFP_KERNEL_ACCOUNT | bindings::__GFP_ZERO;
            if ORDER > 0 {
                flags |= (1 << bindings::___GFP_COMP_BIT) | bindings::__GFP_NOWARN;
            }
            // SAFETY: `alloc_pages` may sleep with these flags; we are in process context.
            let page = unsafe { bindings::alloc_pages(flags, ORDER) };
            // INVARIANT: a non-null result is a new order-`ORDER` allocation with one
            // reference, ours.
            Ok(Self {
                page: NonNull::new(page).ok_or(AllocError)?,
            })
        }
    }

    impl<const ORDER: u32> Drop for Frame<ORDER> {
        fn drop(&mut self) {
            // SAFETY: by the type invariant we own one reference to an order-`ORDER`
            // allocation. Mappings hold references of their own (or, at PMD level, none but
            // they are gone before us), so the pages are freed when the last one is dropped.
            unsafe { bindings::__free_pages(self.page.as_ptr(), ORDER) };
        }
    }

    /// A borrowed frame: its head page, valid for `'a`.
    #[derive(Clone, Copy)]
    pub(crate) struct FrameRef<'a, const ORDER: u32> {
        page: NonNull<bindings::page>,
        _frame: PhantomData<&'a Frame<ORDER>>,
    }

    impl<'a, const ORDER: u32> FrameRef<'a, ORDER> {
        /// The page frame number of the first page: what `/proc/<pid>/pagemap` reports for its
        /// mappings.
        pub(crate) fn pfn(self) -> usize {
            // On x86_64 with SPARSEMEM_VMEMMAP, `struct page`s form one virtual array starting
            // at `vmemmap_base`, indexed by PFN (the C `page_to_pfn`).
            // SAFETY: `vmemmap_base` is set during early boot and read-only afterwards.
            let base = unsafe { bindings::vmemmap_base };
            (self.page.as_ptr() as usize - base) / core::mem::size_of::<bindings::page>()
        }
    }

    impl<'a> FrameRef<'a, 0> {
        /// The frame as a page, for the kernel crate's page APIs.
        pub(crate) fn page(self) -> BorrowedPage<'a> {
            // SAFETY: an order-0 frame is a valid page, alive for `'a` by the type's contract.
            unsafe { BorrowedPage::from_raw(self.page) }
        }
    }

    // SAFETY: `into_foreign` returns the `struct page` pointer, which is aligned to
    // `FOREIGN_ALIGN` because it points to a `struct page`. `from_foreign` and the borrows
    // rebuild the pointer exactly as `into_foreign` gave it.
    unsafe impl<const ORDER: u32> ForeignOwnable for Frame<ORDER> {
        const FOREIGN_ALIGN: usize = core::mem::align_of::<bindings::page>();
        type Borrowed<'a> = FrameRef<'a, ORDER>;
        type BorrowedMut<'a> = FrameRef<'a, ORDER>;

        fn into_foreign(self) -> *mut c_void {
            let page = self.page;
            // The reference `self` owned now belongs to the foreign pointer.
            core::mem::forget(self);
            page.as_ptr().cast()
        }

        unsafe fn from_foreign(ptr: *mut c_void) -> Self {
            // SAFETY: the caller passes a pointer from `into_foreign`: non-null, and owning the
            // reference that the forgotten `Frame` owned.
            let page = unsafe { NonNull::new_unchecked(ptr.cast()) };
            // INVARIANT: ownership of that reference moves back into the `Frame`.
            Self { page }
        }

        unsafe fn borrow<'a>(ptr: *mut c_void) -> FrameRef<'a, ORDER> {
            FrameRef {
                // SAFETY: the caller passes a pointer from `into_foreign`, so it is non-null,
                // and guarantees that its `Frame` is not reclaimed during `'a`.
                page: unsafe { NonNull::new_unchecked(ptr.cast()) },
                _frame: PhantomData,
            }
        }

        unsafe fn borrow_mut<'a>(ptr: *mut c_void) -> FrameRef<'a, ORDER> {
            // SAFETY: the same requirements as `borrow`, which the caller upholds.
            unsafe { Self::borrow(ptr) }
        }
    }

    /// The machine's RAM in pages.
    pub(crate) fn ram_pages() -> usize {
        let mut info = core::mem::MaybeUninit::<bindings::sysinfo>::zeroed();
        // SAFETY: `si_meminfo` fills in the `sysinfo` it is given and nothing else; all-zero
        // bytes are a valid `sysinfo` (integers and a padding array), so it is initialised
        // whatever `si_meminfo` writes.
        let info = unsafe {
            bindings::si_meminfo(info.as_mut_ptr());
            info.assume_init()
        };
        // `totalram` is in units of `mem_unit` bytes, which is the page size.
        info.totalram
    }
}

#[kunit_tests(rust_pagefault_demo)]
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
    fn limits_default_cap_is_a_quarter_of_ram() {
        let limits = Limits::new(65536, 0, 1, false, 1_000_000);
        assert_eq!(
            limits,
            Ok(Limits {
                max_pages: 65536,
                max_total_pages: 250_000,
                prefault: 1,
                huge: false,
            })
        );
        // A tiny machine still gets a cap of at least one frame.
        assert_eq!(
            Limits::new(1, 0, 1, false, 3).map(|l| l.max_total_pages),
            Ok(1)
        );
    }

    #[test]
    fn limits_refuse_out_of_range_values() {
        assert!(Limits::new(0, 0, 1, false, 1000).is_err());
        assert!(Limits::new(Limits::MAX_PAGES_LIMIT + 1, 0, 1, false, 1000).is_err());
        assert!(Limits::new(16, 1001, 1, false, 1000).is_err());
        assert!(Limits::new(16, 0, 0, false, 1000).is_err());
        assert!(Limits::new(16, 0, 513, false, 1000).is_err());
        assert!(Limits::new(Limits::MAX_PAGES_LIMIT, 1000, 512, false, 1000).is_ok());
    }

    #[test]
    fn limits_allow_a_cap_below_the_size() {
        assert_eq!(
            Limits::new(64, 16, 16, false, 1000),
            Ok(Limits {
                max_pages: 64,
                max_total_pages: 16,
                prefault: 16,
                huge: false,
            })
        );
    }

    #[test]
    fn limits_for_huge_frames() {
        // The cap must hold one 2 MiB frame, and prefault is a 4 KiB notion.
        assert!(Limits::new(1024, 511, 1, true, 100_000).is_err());
        assert!(Limits::new(1024, 0, 2, true, 100_000).is_err());
        assert!(Limits::new(1024, 0, 1, true, 1000).is_err());
        assert_eq!(
            Limits::new(1024, 512, 1, true, 100_000).map(|l| l.huge),
            Ok(true)
        );
    }

    #[test]
    fn budget_stops_at_the_cap_and_gives_back() {
        let budget = FrameBudget::new(4);
        budget.reserve(1).expect("first page").commit(1);
        let pending = budget.reserve(2).expect("two more");
        assert!(budget.reserve(2).is_none());
        assert_eq!(budget.live(), 3);
        drop(pending);
        assert_eq!(budget.live(), 1);
        // A reservation is all or nothing: 3 fit, 4 do not.
        assert!(budget.reserve(4).is_none());
        // Committing part of a reservation gives the rest back.
        budget.reserve(3).expect("the rest").commit(2);
        assert_eq!(budget.live(), 3);
        budget.reserve(1).expect("the last").commit(1);
        budget.release(4);
        assert_eq!(budget.live(), 0);
    }

    #[test]
    fn budget_stocks_far_from_the_cap_and_is_exact_near_it() {
        let budget = FrameBudget::new(1000);
        // Far from the cap, the first reservation also fills this CPU's stock, the next ones
        // come out of it, and what is reported live is what was committed.
        budget.reserve(1).expect("first").commit(1);
        assert_eq!(budget.charged.load(Relaxed), 1 + FrameBudget::BATCH);
        budget.reserve(1).expect("from the stock").commit(1);
        assert_eq!(budget.charged.load(Relaxed), 1 + FrameBudget::BATCH);
        assert_eq!(budget.live(), 2);
        // Another CPU's stock, as if it had faulted once.
        budget.stocks[(this_shard() + 1) % SHARDS]
            .0
            .add(FrameBudget::BATCH, Relaxed);
        budget.charged.add(FrameBudget::BATCH, Relaxed);
        assert_eq!(budget.live(), 2);
        // All the rest of the cap, in one: only fits once every stock is taken back.
        budget.reserve(998).expect("the rest").commit(998);
        assert_eq!(budget.live(), 1000);
        assert!(budget.reserve(1).is_none());
        assert_eq!(budget.live(), 1000);
        budget.release(1000);
        assert_eq!((budget.live(), budget.charged.load(Relaxed)), (0, 0));
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
        stats.record_call(&[], 700);
        stats.record_call(&[Counter::Faults], 1000);
        stats.record_call(&[Counter::Faults, Counter::ReadFaults], 5000);
        let text = show(|f| stats.write_latency(f))?;
        assert_eq!(text.to_bytes(), b"# le_ns count\n1024 2\n8192 1\n");
        assert_eq!(stats.get(Counter::HandlerNs), 6700);
        assert_eq!(stats.get(Counter::Faults), 2);
        assert_eq!(stats.get(Counter::ReadFaults), 1);
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
        let text = show(|f| stats.write(f, &budget, &Limits::DEFAULT))?;
        assert_eq!(
            text.to_bytes(),
            b"faults 3\nread_faults 1\nwrite_faults 2\nframes_allocated 0\nframes_freed 0\n\
              sigbus 0\noom 0\ninstances 0\ninstances_opened 0\nmmap_refused 0\n\
              prefaulted 0\nhuge_faults 0\nhuge_fallbacks 0\nhandler_ns 0\nframes_live 1\n\
              max_total_pages 9\nprefault 1\nhuge 0\n"
        );
        Ok(())
    }

    /// Counts how many [`Tracked`] values were dropped.
    static DROPPED: Atomic<usize> = Atomic::new(0);

    /// A value whose drop is counted in [`DROPPED`].
    struct Tracked(usize);

    impl Drop for Tracked {
        fn drop(&mut self) {
            DROPPED.add(1, Relaxed);
        }
    }

    #[test]
    fn once_array_keeps_the_first_value_and_frees_all_at_drop() -> Result {
        let dropped = DROPPED.load(Relaxed);
        let len = 2 * LEAF_SLOTS + 3;
        let array = OnceArray::<KBox<Tracked>>::new(len)?;
        assert!(array.get(0).is_none());
        // Slots on both sides of a leaf boundary, and the very last one.
        for (i, index) in [0, LEAF_SLOTS - 1, LEAF_SLOTS, len - 1]
            .into_iter()
            .enumerate()
        {
            let (value, ours) = array.set(index, KBox::new(Tracked(i), GFP_KERNEL)?)?;
            assert!(ours);
            assert_eq!(value.0, i);
        }
        // A second store keeps the first value and drops the newcomer.
        let (value, ours) = array.set(LEAF_SLOTS, KBox::new(Tracked(99), GFP_KERNEL)?)?;
        assert!(!ours);
        assert_eq!(value.0, 2);
        assert_eq!(DROPPED.load(Relaxed) - dropped, 1);
        assert_eq!(array.get(LEAF_SLOTS).map(|v| v.0), Some(2));
        assert_eq!(array.get(len - 1).map(|v| v.0), Some(3));
        assert!(array.get(1).is_none());
        assert_eq!(array.count(), 4);
        let mut seen = KVec::new();
        array.try_for_each(|index, value| seen.push((index, value.0), GFP_KERNEL))?;
        assert_eq!(
            &seen[..],
            &[(0, 0), (LEAF_SLOTS - 1, 1), (LEAF_SLOTS, 2), (len - 1, 3)]
        );
        // Past the end: nothing to find, and a store is refused (its value dropped).
        assert!(array.get(len).is_none());
        assert!(array.get(usize::MAX).is_none());
        assert_eq!(
            array.set(len, KBox::new(Tracked(7), GFP_KERNEL)?).err(),
            Some(EINVAL)
        );
        assert_eq!(DROPPED.load(Relaxed) - dropped, 2);
        // Dropping the array drops the four values it holds.
        drop(array);
        assert_eq!(DROPPED.load(Relaxed) - dropped, 6);
        Ok(())
    }

    #[test]
    fn once_array_of_no_slots_holds_nothing() -> Result {
        let array = OnceArray::<KBox<Tracked>>::new(0)?;
        assert!(array.get(0).is_none());
        assert_eq!(
            array.set(0, KBox::new(Tracked(0), GFP_KERNEL)?).err(),
            Some(EINVAL)
        );
        Ok(())
    }

    /// A frame table with a budget and counters of its own, so tests leave the module's alone.
    struct Bench<const ORDER: u32> {
        table: KBox<FrameTable<ORDER>>,
        budget: FrameBudget,
        stats: KBox<Stats>,
    }

    impl<const ORDER: u32> Bench<ORDER> {
        fn new(cap: usize) -> Result<Self> {
            Ok(Self {
                table: KBox::new(FrameTable::new(4096)?, GFP_KERNEL)?,
                budget: FrameBudget::new(cap),
                stats: KBox::new(Stats::new(), GFP_KERNEL)?,
            })
        }

        fn frame(&self, index: usize) -> Result<vm::FrameRef<'_, ORDER>> {
            self.table
                .frame(&self.budget, &self.stats, index)
                .map_err(|_| ENOMEM)
        }
    }

    #[test]
    fn frame_table_maps_each_offset_once() -> Result {
        let t = Bench::<0>::new(16)?;
        assert!(t.table.get(5).is_none());
        let first = t.frame(5)?;
        // A later fault on the same offset gets the same frame, and allocates nothing.
        assert_eq!(t.frame(5)?.pfn(), first.pfn());
        assert_eq!(t.table.get(5).map(|f| f.pfn()), Some(first.pfn()));
        assert_eq!(t.table.pages(), 1);
        assert_eq!(t.budget.live(), 1);
        assert_eq!(t.stats.get(Counter::FramesAllocated), 1);
        Ok(())
    }

    #[test]
    fn fill_keeps_existing_frames_and_allocates_the_rest() -> Result {
        let t = Bench::<0>::new(16)?;
        let known = t.frame(2)?.pfn();
        let mut slots = [None; 4];
        t.table
            .fill(&t.budget, &t.stats, 0, &mut slots)
            .map_err(|_| ENOMEM)?;
        assert!(slots.iter().all(|slot| slot.is_some()));
        assert_eq!(slots[2].map(|f| f.pfn()), Some(known));
        assert_eq!(t.table.pages(), 4);
        assert_eq!(t.budget.live(), 4);
        assert_eq!(t.stats.get(Counter::FramesAllocated), 4);
        Ok(())
    }

    #[test]
    fn fill_stops_at_the_cap() -> Result {
        let t = Bench::<0>::new(3)?;
        let mut slots = [None; 5];
        // Five new frames do not fit under a cap of three: none is allocated.
        assert!(matches!(
            t.table.fill(&t.budget, &t.stats, 0, &mut slots),
            Err(Shortage::Cap)
        ));
        assert!(slots.iter().all(|slot| slot.is_none()));
        assert_eq!((t.table.pages(), t.budget.live()), (0, 0));
        // Three do, and a fourth single frame does not.
        t.table
            .fill(&t.budget, &t.stats, 0, &mut slots[..3])
            .map_err(|_| ENOMEM)?;
        assert!(matches!(
            t.table.frame(&t.budget, &t.stats, 3),
            Err(Shortage::Cap)
        ));
        assert_eq!((t.table.pages(), t.budget.live()), (3, 3));
        Ok(())
    }

    #[test]
    fn frame_table_lists_pages_in_order() -> Result {
        let t = Bench::<0>::new(16)?;
        for pgoff in [9, 2, 700] {
            t.frame(pgoff)?;
        }
        let mut seen = KVec::new();
        t.table
            .for_each(|pgoff, pfn| {
                assert!(pfn != 0);
                seen.push(pgoff, GFP_KERNEL).map_err(|_| fmt::Error)
            })
            .map_err(|_| ENOMEM)?;
        assert_eq!(&seen[..], &[2, 9, 700]);
        assert_eq!(t.table.pages(), 3);
        Ok(())
    }

    #[test]
    fn huge_frames_count_and_list_their_pages() -> Result {
        let t = Bench::<{ vm::HUGE_ORDER }>::new(1024)?;
        // The VM has free 2 MiB blocks (and compaction) at every load: failing to get one is
        // a failure, not a reason to skip.
        let frame = t.frame(3)?;
        assert_eq!(frame.pfn() % 512, 0);
        assert_eq!(t.table.pages(), 512);
        assert_eq!(t.budget.live(), 512);
        let (mut rows, mut last) = (0, None);
        t.table
            .for_each(|pgoff, pfn| {
                assert_eq!(pgoff, 3 * 512 + rows);
                assert_eq!(pfn, frame.pfn() + rows);
                rows += 1;
                last = Some(pgoff);
                Ok(())
            })
            .map_err(|_| EINVAL)?;
        assert_eq!((rows, last), (512, Some(4 * 512 - 1)));
        Ok(())
    }

    #[test]
    fn new_frames_are_zeroed() -> Result {
        let t = Bench::<0>::new(16)?;
        let page = t.frame(0)?.page();
        let mut buf = [0xffu8; 64];
        for offset in (0..PAGE_SIZE).step_by(buf.len()) {
            // SAFETY: `buf` is valid for writes of its length, and nobody else writes the page.
            unsafe { page.read_raw(buf.as_mut_ptr(), offset, buf.len())? };
            assert!(buf.iter().all(|&b| b == 0));
        }
        Ok(())
    }
}
