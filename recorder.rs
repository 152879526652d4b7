// SPDX-License-Identifier: GPL-2.0

//! The flight recorder: one record per handler call, in a ring per CPU, read from debugfs as
//! `events/cpu<k>`.
//!
//! Owns [`RECORDER`]. The fault path ([`crate::instance`]'s handlers) fills a [`Trace`] as it
//! goes (the time stamps of its parts, the frame, what it mapped) and hands it to
//! [`Recorder::record`] at the end of the call; debugfs readers format the records as text.
//!
//! # The ring of a shard
//!
//! Each shard (see [`crate::shard`]) has [`RING`] slots and a `head`, the sequence number of
//! the next record. Record `n` lives in slot `n % RING` until record `n + RING` takes it. A
//! slot's `seq` says what it holds, and only grows: `2n + 1` while record `n` is being
//! written, `2n + 2` once it is complete, 0 before its first record. A writer (CPUs `k` and
//! `k + 8` share a ring, and a task may move between CPUs, so there may be several):
//!
//! 1. reads `head` (`n`) and the slot's `seq`. If record `n` is claimed already, `head` lags
//!    behind its claimer: the writer helps it on (`head` from `n` to `n + 1`) and starts
//!    over. If the slot is still being written by a writer of an earlier round (a writer
//!    preempted in the middle for a whole round), it drops its record (`events_lost`) and
//!    leaves `head` alone;
//! 2. claims record `n` by moving the slot's `seq` from the value it read to `2n + 1`
//!    (compare-and-exchange; on failure another writer claimed it: back to 1), then moves
//!    `head` past it, unless a helper did;
//! 3. writes the record's words, then `seq = 2n + 2` with release ordering.
//!
//! So `head` passes `n` only once record `n` is claimed, and a claimed record is always
//! completed: a reader waits for no record that will never come. Nobody waits and nobody
//! takes a lock: a fault never stalls on a reader or on another fault (a writer retries only
//! when another one made progress). A reader of record `n` loads `seq` with acquire ordering,
//! and takes the words only if it was `2n + 2` before and after reading them (with a read
//! barrier between), as with the kernel's seqcounts. `2n + 1` means the record is still being
//! written: the read ends there, and the next one gets it. A newer `seq` means it was
//! overwritten: the reader gets a drop line, never a silent gap.
//!
//! The process and thread ids are those of the initial pid namespace, as tracefs gives
//! (`common_pid`); `pid` is the faulting task's, which for a remote fault (`get_user_pages`
//! from `/proc/<pid>/mem`, `process_vm_readv`) is the reader's, not the mapping owner's.
//!
//! Calling context: the fault path (process context, preemptible, under the mmap or VMA read
//! lock) writes; debugfs reads run in the reader's process context. Nothing here sleeps,
//! spins or takes a lock.

use core::fmt::{
    self,
    Write as _, //
};
use kernel::{
    cpu::CpuId,
    fs::file::Offset,
    page::{
        PAGE_MASK,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        barrier::{
            smp_mb,
            Read,
            Write, //
        },
    },
    uaccess::{
        UserSliceReader,
        UserSliceWriter, //
    },
};

use crate::{
    shard::SHARDS,
    stats::{
        Counter,
        STATS, //
    },
    vm, //
};

/// Records per shard: the newest `RING` handler calls of each CPU are kept.
pub(crate) const RING: usize = 1024;

/// The size of one record as a reader gets it: text, padded with spaces, ending in a newline.
/// The largest record (every number at its maximum) fits, which a KUnit test checks.
pub(crate) const RECORD_BYTES: usize = 512;

/// Which handler the core called, for what.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Call {
    /// `vm_operations_struct.fault`: a 4 KiB page.
    Fault = 0,
    /// `vm_operations_struct.huge_fault` for a PMD (2 MiB).
    Pmd = 1,
    /// `huge_fault` for a PUD (1 GiB), which the core asks first when a fault's PUD entry is
    /// empty (a fresh gigabyte of address space), and which we always decline.
    Pud = 2,
}

/// What the handler did to map the page.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Path {
    /// Refused before any mapping was tried.
    None = 0,
    /// `vm_insert_page`.
    Page = 1,
    /// `vm_insert_pages` with a batch of one (`insert_pages=1`).
    Pages = 2,
    /// The page and those after it (`prefault` > 1).
    Batch = 3,
    /// One 4 KiB page of a 2 MiB frame.
    Subpage = 4,
    /// The whole 2 MiB frame, with one PMD.
    Pmd = 5,
    /// A huge-fault call that asked the core for 4 KiB faults.
    Fallback = 6,
    /// Handed to the core in `vmf->page`, which maps it after the call (`return_page=1`).
    Core = 7,
}

/// How the call ended, as the faulting access sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    Mapped = 0,
    Sigbus = 1,
    Oom = 2,
    Fallback = 3,
}

impl From<&vm::FaultOutcome> for Outcome {
    fn from(outcome: &vm::FaultOutcome) -> Self {
        match outcome {
            vm::FaultOutcome::Mapped | vm::FaultOutcome::Given(_) => Outcome::Mapped,
            vm::FaultOutcome::Sigbus => Outcome::Sigbus,
            vm::FaultOutcome::Oom => Outcome::Oom,
            vm::FaultOutcome::Fallback => Outcome::Fallback,
        }
    }
}

const CALL_NAMES: [&str; 3] = ["fault", "pmd", "pud"];
const PATH_NAMES: [&str; 8] = [
    "none", "page", "pages", "batch", "subpage", "pmd", "fallback", "core",
];
const OUTCOME_NAMES: [&str; 4] = ["mapped", "sigbus", "oom", "fallback"];

/// One handler call, as a reader gets it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Record {
    /// The call's start, `CLOCK_MONOTONIC` nanoseconds.
    pub(crate) t_ns: u64,
    pub(crate) cpu: u32,
    /// The faulting task's process (thread-group) id and thread id.
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    /// The instance (see `fdinfo` and `frames`).
    pub(crate) inst: u64,
    pub(crate) call: Call,
    pub(crate) path: Path,
    pub(crate) outcome: Outcome,
    /// The faulting address, page aligned (2 MiB aligned for [`Path::Pmd`]).
    pub(crate) addr: usize,
    pub(crate) pgoff: usize,
    /// `vmf->flags`.
    pub(crate) flags: u32,
    /// The frame mapped at `addr`, if any.
    pub(crate) pfn: Option<usize>,
    /// Whether this call allocated the frame of `addr`.
    pub(crate) new: bool,
    /// 4 KiB pages this call mapped.
    pub(crate) pages: u32,
    /// Frames this call allocated (and kept).
    pub(crate) allocs: u32,
    /// Nanoseconds finding the frame's slot and reserving it in the budget, allocating and
    /// zeroing frames, and mapping; and the whole call.
    pub(crate) reserve_ns: u64,
    pub(crate) alloc_ns: u64,
    pub(crate) map_ns: u64,
    pub(crate) total_ns: u64,
}

/// How many 64-bit words a record takes in a slot.
const WORDS: usize = 12;

impl Record {
    /// The record as the words of a slot. Field by field, with room to spare: the ids are
    /// 32-bit, `pages` and `allocs` at most 512 (one batch, one PMD), the enums tiny.
    fn pack(&self) -> [u64; WORDS] {
        let small = self.call as u64
            | (self.path as u64) << 4
            | (self.outcome as u64) << 8
            | u64::from(self.new) << 12
            | u64::from(self.pages & 0xffff) << 16
            | u64::from(self.allocs & 0xffff) << 32;
        [
            self.t_ns,
            u64::from(self.pid) | u64::from(self.tid) << 32,
            self.inst,
            self.addr as u64,
            self.pgoff as u64,
            // 0 for none: no PFN comes near `u64::MAX`.
            self.pfn.map_or(0, |pfn| (pfn as u64).wrapping_add(1)),
            u64::from(self.flags) | u64::from(self.cpu) << 32,
            small,
            self.reserve_ns,
            self.alloc_ns,
            self.map_ns,
            self.total_ns,
        ]
    }

    /// The record of a slot's words; `None` for words no [`Record::pack`] wrote.
    fn unpack(w: &[u64; WORDS]) -> Option<Self> {
        let small = w[7];
        let call = match small & 0xf {
            0 => Call::Fault,
            1 => Call::Pmd,
            2 => Call::Pud,
            _ => return None,
        };
        let path = match (small >> 4) & 0xf {
            0 => Path::None,
            1 => Path::Page,
            2 => Path::Pages,
            3 => Path::Batch,
            4 => Path::Subpage,
            5 => Path::Pmd,
            6 => Path::Fallback,
            7 => Path::Core,
            _ => return None,
        };
        let outcome = match (small >> 8) & 0xf {
            0 => Outcome::Mapped,
            1 => Outcome::Sigbus,
            2 => Outcome::Oom,
            3 => Outcome::Fallback,
            _ => return None,
        };
        Some(Self {
            t_ns: w[0],
            pid: w[1] as u32,
            tid: (w[1] >> 32) as u32,
            inst: w[2],
            addr: w[3] as usize,
            pgoff: w[4] as usize,
            pfn: w[5].checked_sub(1).map(|pfn| pfn as usize),
            flags: w[6] as u32,
            cpu: (w[6] >> 32) as u32,
            call,
            path,
            outcome,
            new: (small >> 12) & 1 == 1,
            pages: ((small >> 16) & 0xffff) as u32,
            allocs: ((small >> 32) & 0xffff) as u32,
            reserve_ns: w[8],
            alloc_ns: w[9],
            map_ns: w[10],
            total_ns: w[11],
        })
    }

    /// Writes the record's line (without padding), `seq` its number in its shard.
    fn write_line(&self, seq: u64, f: &mut impl fmt::Write) -> fmt::Result {
        write!(
            f,
            "seq={seq} t={} cpu={} pid={} tid={} inst={} call={} path={} out={} addr={:#x} \
             pgoff={} flags={:#x} how=",
            self.t_ns,
            self.cpu,
            self.pid,
            self.tid,
            self.inst,
            CALL_NAMES[self.call as usize],
            PATH_NAMES[self.path as usize],
            OUTCOME_NAMES[self.outcome as usize],
            self.addr,
            self.pgoff,
            self.flags,
        )?;
        let mut any = false;
        for (flag, letter) in vm::FAULT_FLAG_LETTERS {
            if self.flags & flag != 0 {
                f.write_char(char::from(letter))?;
                any = true;
            }
        }
        if !any {
            f.write_char('-')?;
        }
        match self.pfn {
            Some(pfn) => write!(f, " pfn={pfn:#x}")?,
            None => f.write_str(" pfn=-")?,
        }
        write!(
            f,
            " new={} pages={} allocs={} reserve_ns={} alloc_ns={} map_ns={} total_ns={}",
            u8::from(self.new),
            self.pages,
            self.allocs,
            self.reserve_ns,
            self.alloc_ns,
            self.map_ns,
            self.total_ns
        )
    }
}

/// A handler call's clock and its record so far, put together as the call goes.
///
/// The clock is read at the start, after the reservation, after the allocation and at the end:
/// four times for a recorded call (`events=1`), the mapping being the rest. A call timed for
/// the latency histogram only reads it at the start and the end, and one neither recorded nor
/// timed not at all.
pub(crate) struct Trace {
    /// Whether the call is recorded (`events=1`).
    on: bool,
    /// Whether it is timed for the histogram.
    timed: bool,
    /// The call's start, and the end of its last part, in ns (0 when the clock is not read).
    start: u64,
    last: u64,
    pub(crate) path: Path,
    pub(crate) pfn: Option<usize>,
    pub(crate) new: bool,
    pub(crate) pages: u32,
    pub(crate) allocs: u32,
    reserve_ns: u64,
    alloc_ns: u64,
    total_ns: u64,
}

impl Trace {
    /// Starts a handler call, recorded if `on`, timed for the histogram if `timed`.
    pub(crate) fn begin(on: bool, timed: bool) -> Self {
        let start = if on || timed { vm::now_ns() } else { 0 };
        Self {
            on,
            timed,
            start,
            last: start,
            path: Path::None,
            pfn: None,
            new: false,
            pages: 0,
            allocs: 0,
            reserve_ns: 0,
            alloc_ns: 0,
            total_ns: 0,
        }
    }

    /// The nanoseconds since the last part ended (0, and no clock read, when not recorded).
    fn lap(&mut self) -> u64 {
        if !self.on {
            return 0;
        }
        let now = vm::now_ns();
        let ns = now.saturating_sub(self.last);
        self.last = now;
        ns
    }

    /// The frame's slot was looked up and, if it was empty, a frame reserved in the budget.
    pub(crate) fn reserved(&mut self) {
        self.reserve_ns += self.lap();
    }

    /// `frames` frames were allocated, zeroed and stored (0: another fault's frame won).
    pub(crate) fn allocated(&mut self, frames: u32) {
        self.alloc_ns += self.lap();
        self.allocs += frames;
    }

    /// `pages` pages were mapped (0 when the core would not). The mapping's time is the rest
    /// of the call's, taken at [`Trace::finish`]; where more reserving and allocating follow
    /// (a prefault batch), [`Trace::mapped_before_more`] closes it first.
    pub(crate) fn mapped(&mut self, pages: u32) {
        self.pages += pages;
    }

    /// Ends a part of mapping that more reserving and allocating follow, so that its time is
    /// not taken for theirs.
    pub(crate) fn mapped_before_more(&mut self) {
        self.lap();
    }

    /// Ends the call; the nanoseconds it took if it is timed for the histogram.
    pub(crate) fn finish(&mut self) -> Option<u64> {
        if self.on || self.timed {
            self.total_ns = vm::now_ns().saturating_sub(self.start);
        }
        self.timed.then_some(self.total_ns)
    }
}

/// One slot of a ring.
///
/// # Invariants
///
/// `seq` is 0, `2n + 1` while record `n` is written into `words`, or `2n + 2` once it is
/// complete; only the writer that moved it to `2n + 1` writes `words` until it is `2n + 2`.
#[repr(align(64))]
struct Slot {
    seq: Atomic<u64>,
    words: [Atomic<u64>; WORDS],
}

/// What a reader found in the slot of record `n`.
enum Found {
    Record(Record),
    /// Record `n` is still being written (or was taken but not yet claimed).
    NotYet,
    /// A later record took the slot.
    Overwritten,
}

/// The ring of one shard, of `N` slots ([`RING`]; smaller in the tests); an
/// `events/cpu<k>` file reads it.
pub(crate) struct Ring<const N: usize = RING> {
    /// The sequence number of the next record.
    head: Atomic<u64>,
    slots: [Slot; N],
}

impl<const N: usize> Ring<N> {
    const fn new() -> Self {
        Self {
            head: Atomic::new(0),
            slots: [const {
                Slot {
                    seq: Atomic::new(0),
                    words: [const { Atomic::new(0) }; WORDS],
                }
            }; N],
        }
    }

    /// Stores `record` as the next record; `false` if it had to be dropped (see the module
    /// documentation, step 1 and 3).
    fn push(&self, record: &Record) -> bool {
        let words = record.pack();
        loop {
            let n = self.head.load(Relaxed);
            let slot = &self.slots[n as usize % N];
            let seen = slot.seq.load(Relaxed);
            if seen > 2 * n {
                // Record `n` (`seq` of `2n + 1` or more) or a later one is claimed: `head` lags
                // behind; help it on.
                let _ = self.head.cmpxchg(n, n + 1, Relaxed);
                continue;
            }
            if seen & 1 == 1 {
                // A writer of an earlier round is still in the middle of this slot.
                return false;
            }
            // INVARIANT: `seen` is even and below `2n + 1`, so no writer is writing the slot;
            // moving it to `2n + 1` makes this writer the only one until it stores `2n + 2`.
            if slot.seq.cmpxchg(seen, 2 * n + 1, Relaxed).is_err() {
                continue;
            }
            // Past record `n` now that it is claimed; a failure means a helper did it.
            let _ = self.head.cmpxchg(n, n + 1, Relaxed);
            // Readers must see the slot claimed before they can see any of the new words.
            smp_mb(Write);
            for (word, value) in slot.words.iter().zip(words) {
                word.store(value, Relaxed);
            }
            slot.seq.store(2 * n + 2, Release);
            return true;
        }
    }

    /// The sequence number of the next record, and of the oldest one kept. (A plain load:
    /// what a reader then finds is decided by each slot's `seq`, not by `head`.)
    fn heads(&self) -> (u64, u64) {
        let next = self.head.load(Relaxed);
        (next, next.saturating_sub(N as u64))
    }

    /// Record `n`, if it is complete.
    fn get(&self, n: u64) -> Found {
        let slot = &self.slots[n as usize % N];
        let want = 2 * n + 2;
        let before = slot.seq.load(Acquire);
        if before > want {
            return Found::Overwritten;
        }
        if before < want {
            return Found::NotYet;
        }
        let words = core::array::from_fn(|i| slot.words[i].load(Relaxed));
        // The words are read before `seq` is read again.
        smp_mb(Read);
        if slot.seq.load(Relaxed) != want {
            return Found::Overwritten;
        }
        Record::unpack(&words).map_or(Found::Overwritten, Found::Record)
    }

    /// Copies to `writer` the records from the one at `offset` on, as many as fit, and moves
    /// `offset` past them (see [`RECORD_BYTES`]): at most one drop line first when records
    /// were overwritten before this read got to them; nothing (end of file) when there is no
    /// newer record yet.
    fn read(&self, writer: &mut UserSliceWriter, offset: &mut Offset) -> Result<usize> {
        let bytes = RECORD_BYTES as i64;
        if *offset < 0 || *offset % bytes != 0 || writer.len() < RECORD_BYTES {
            return Err(EINVAL);
        }
        let mut n = (*offset / bytes) as u64;
        let mut done = 0;
        let mut line = Line::new();
        while writer.len() >= RECORD_BYTES {
            let (next, oldest) = self.heads();
            if n >= next {
                break;
            }
            let found = if n < oldest {
                Found::Overwritten
            } else {
                self.get(n)
            };
            let after = match found {
                Found::Record(record) => {
                    line.set(|f| record.write_line(n, f));
                    n + 1
                }
                Found::Overwritten => {
                    // All up to the oldest kept now are gone; at least record `n` is.
                    let lost = oldest.saturating_sub(n).max(1);
                    line.set(|f| write!(f, "seq={n} dropped={lost}"));
                    n + lost
                }
                Found::NotYet => break,
            };
            // A buffer that faults part way: what was copied counts, as for any read.
            match writer.write_slice(line.bytes()) {
                Ok(()) => n = after,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
            done += RECORD_BYTES;
        }
        *offset = n as i64 * bytes;
        Ok(done)
    }
}

impl<const N: usize> vm::debugfs::ReadAt for Ring<N> {
    fn read_at(&self, writer: &mut UserSliceWriter, offset: &mut Offset) -> Result<usize> {
        self.read(writer, offset)
    }
}

/// One record's text: a fixed-size buffer, padded with spaces, ending in a newline.
struct Line {
    buf: [u8; RECORD_BYTES],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            buf: [b' '; RECORD_BYTES],
            len: 0,
        }
    }

    /// Fills the line with what `write` writes (cut short if it were too long).
    fn set(&mut self, write: impl FnOnce(&mut Self) -> fmt::Result) {
        self.len = 0;
        // Only running out of room fails, and then the line is cut, which the KUnit test
        // of the largest record shows cannot happen.
        let _ = write(self);
        self.buf[self.len..].fill(b' ');
        self.buf[RECORD_BYTES - 1] = b'\n';
    }

    fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Room for the newline is kept.
        let end = self.len + s.len();
        if end > RECORD_BYTES - 1 {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Reads a small decimal number written to a file: the whole write, spaces and a newline
/// around it allowed. Anything else is `EINVAL`.
fn read_number(reader: &mut UserSliceReader) -> Result<u64> {
    let mut buf = [0u8; 24];
    let n = reader.len();
    if n > buf.len() {
        return Err(EINVAL);
    }
    reader.read_slice(&mut buf[..n])?;
    let text = core::str::from_utf8(&buf[..n]).map_err(|_| EINVAL)?;
    text.trim().parse::<u64>().map_err(|_| EINVAL)
}

/// The recorder: a ring per shard, and its switch.
pub(crate) struct Recorder {
    rings: [Ring; SHARDS],
    /// Whether handler calls are recorded. Set at load from the `events` parameter, and at
    /// any time through debugfs `events/enable`; a handler call reads it once, at its start.
    enabled: Switch,
}

/// The recorder's switch, and its debugfs file `events/enable`: reading gives `0` or `1`,
/// writing a number sets it (`echo 1 >` on, `echo 0 >` off, any other number on; anything
/// but a number: `EINVAL`, and the switch stays as it was).
pub(crate) struct Switch(Atomic<u32>);

impl Switch {
    fn on(&self) -> bool {
        self.0.load(Relaxed) != 0
    }

    fn set(&self, on: bool) {
        self.0.store(u32::from(on), Relaxed);
    }
}

impl vm::debugfs::Show for Switch {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", u32::from(self.on()))
    }
}

impl vm::debugfs::Store for Switch {
    fn store(&self, reader: &mut UserSliceReader) -> Result {
        let number = read_number(reader)?;
        self.set(number != 0);
        Ok(())
    }
}

/// The flight recorder of all instances.
pub(crate) static RECORDER: Recorder = Recorder::new();

impl Recorder {
    const fn new() -> Self {
        Self {
            rings: [const { Ring::new() }; SHARDS],
            enabled: Switch(Atomic::new(0)),
        }
    }

    /// Whether a handler call starting now is recorded.
    pub(crate) fn on(&self) -> bool {
        self.enabled.on()
    }

    /// Switches recording on or off (at load, from the `events` parameter).
    pub(crate) fn switch_on(&self, on: bool) {
        self.enabled.set(on);
    }

    /// The switch, for its debugfs file `events/enable`.
    pub(crate) fn switch(&self) -> &Switch {
        &self.enabled
    }

    /// The ring of shard `k`, for its `events/cpu<k>` file.
    pub(crate) fn ring(&self, k: usize) -> &Ring {
        &self.rings[k]
    }

    /// Records a handler call that `trace` followed, after [`Trace::finish`]: the rest of the
    /// record is the call's context, taken here. Does nothing when `trace` is off.
    pub(crate) fn record(
        &self,
        trace: &Trace,
        call: Call,
        outcome: &vm::FaultOutcome,
        inst: u64,
        fault: &vm::Fault<'_>,
    ) {
        if !trace.on {
            return;
        }
        let task = kernel::current!();
        let cpu = CpuId::current().as_u32();
        let addr = match trace.path {
            Path::Pmd => fault.address & !((PAGE_SIZE << vm::HUGE_ORDER) - 1),
            _ => fault.address & PAGE_MASK,
        };
        let record = Record {
            t_ns: trace.start,
            cpu,
            pid: task.tgid() as u32,
            tid: task.pid() as u32,
            inst,
            call,
            path: trace.path,
            outcome: outcome.into(),
            addr,
            pgoff: fault.pgoff,
            flags: fault.flags,
            pfn: trace.pfn,
            new: trace.new,
            pages: trace.pages,
            allocs: trace.allocs,
            reserve_ns: trace.reserve_ns,
            alloc_ns: trace.alloc_ns,
            // The rest of the call: the page-table updates and what surrounds them.
            map_ns: trace
                .total_ns
                .saturating_sub(trace.reserve_ns + trace.alloc_ns),
            total_ns: trace.total_ns,
        };
        let kept = self.rings[cpu as usize % SHARDS].push(&record);
        let counter = if kept {
            Counter::EventsRecorded
        } else {
            Counter::EventsLost
        };
        STATS.add(counter, 1);
    }

    /// The `events/heads` file: `cpu<k> <next seq> <oldest seq kept>` per shard.
    pub(crate) fn write_heads(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, ring) in self.rings.iter().enumerate() {
            let (next, oldest) = ring.heads();
            writeln!(f, "cpu{k} {next} {oldest}")?;
        }
        Ok(())
    }
}

/// The names of the `events/cpu<k>` files, one per shard.
pub(crate) const FILE_NAMES: [&CStr; SHARDS] = [
    c"cpu0", c"cpu1", c"cpu2", c"cpu3", c"cpu4", c"cpu5", c"cpu6", c"cpu7",
];

#[kunit_tests(rust_pagefault_demo_recorder)]
mod tests {
    use super::*;

    /// The slots of the rings under test: a few, to wrap around quickly.
    const SMALL: usize = 8;

    fn sample(t_ns: u64) -> Record {
        Record {
            t_ns,
            cpu: 1,
            pid: 300,
            tid: 301,
            inst: 4,
            call: Call::Fault,
            path: Path::Page,
            outcome: Outcome::Mapped,
            addr: 0x7f00_0000_1000,
            pgoff: 1,
            flags: vm::FAULT_FLAG_LETTERS[0].0 | vm::FAULT_FLAG_LETTERS[1].0,
            pfn: Some(0x1a2b3),
            new: true,
            pages: 1,
            allocs: 1,
            reserve_ns: 40,
            alloc_ns: 900,
            map_ns: 300,
            total_ns: 1500,
        }
    }

    fn text(line: &Line) -> &str {
        core::str::from_utf8(line.bytes()).unwrap_or("")
    }

    #[test]
    fn a_record_survives_its_slot() {
        let record = sample(5);
        assert_eq!(Record::unpack(&record.pack()), Some(record));
        let none = Record {
            pfn: None,
            path: Path::Fallback,
            outcome: Outcome::Sigbus,
            ..record
        };
        assert_eq!(Record::unpack(&none.pack()), Some(none));
    }

    #[test]
    fn a_record_line_is_padded_text() {
        let mut line = Line::new();
        line.set(|f| sample(123_456_789).write_line(7, f));
        let text = text(&line);
        assert_eq!(text.len(), RECORD_BYTES);
        assert!(text.ends_with(" \n"));
        assert_eq!(
            text.trim_end(),
            "seq=7 t=123456789 cpu=1 pid=300 tid=301 inst=4 call=fault path=page out=mapped \
             addr=0x7f0000001000 pgoff=1 flags=0x41 how=WU pfn=0x1a2b3 new=1 pages=1 allocs=1 \
             reserve_ns=40 alloc_ns=900 map_ns=300 total_ns=1500"
        );
    }

    #[test]
    fn the_largest_record_fits() {
        let all_flags = vm::FAULT_FLAG_LETTERS
            .iter()
            .fold(0, |flags, (flag, _)| flags | flag);
        let largest = Record {
            t_ns: u64::MAX,
            cpu: u32::MAX,
            pid: u32::MAX,
            tid: u32::MAX,
            inst: u64::MAX,
            call: Call::Fault,
            path: Path::Fallback,
            outcome: Outcome::Fallback,
            addr: usize::MAX,
            pgoff: usize::MAX,
            flags: u32::MAX,
            pfn: Some(usize::MAX),
            new: true,
            pages: u32::MAX,
            allocs: u32::MAX,
            reserve_ns: u64::MAX,
            alloc_ns: u64::MAX,
            map_ns: u64::MAX,
            total_ns: u64::MAX,
        };
        let mut line = Line::new();
        let mut whole = true;
        line.set(|f| {
            let result = largest.write_line(u64::MAX, f);
            whole = result.is_ok();
            result
        });
        assert!(whole);
        assert!(all_flags != 0);
        assert!(text(&line).contains(" total_ns=18446744073709551615 "));
    }

    #[test]
    fn a_ring_keeps_the_newest_and_tells_what_was_overwritten() -> Result {
        let ring = KBox::new(Ring::<SMALL>::new(), GFP_KERNEL)?;
        assert_eq!(ring.heads(), (0, 0));
        assert!(matches!(ring.get(0), Found::NotYet));
        for t in 0..(SMALL as u64 + 3) {
            assert!(ring.push(&sample(t)));
        }
        assert_eq!(ring.heads(), (SMALL as u64 + 3, 3));
        // The first three were overwritten; the oldest kept and the newest are there.
        assert!(matches!(ring.get(2), Found::Overwritten));
        assert!(matches!(ring.get(3), Found::Record(r) if r.t_ns == 3));
        let newest = SMALL as u64 + 2;
        assert!(matches!(ring.get(newest), Found::Record(r) if r.t_ns == newest));
        assert!(matches!(ring.get(newest + 1), Found::NotYet));
        Ok(())
    }

    #[test]
    fn a_writer_leaves_a_slot_that_an_earlier_round_is_writing() -> Result {
        let ring = KBox::new(Ring::<SMALL>::new(), GFP_KERNEL)?;
        // As if the writer of record 0 had claimed its slot and been preempted for a whole
        // round: the writer of record SMALL (the same slot) must drop its record, not wait,
        // and not move the head past a record no one will write.
        ring.head.store(SMALL as u64, Relaxed);
        ring.slots[0].seq.store(1, Relaxed);
        assert!(!ring.push(&sample(2)));
        assert_eq!(ring.heads().0, SMALL as u64);
        assert!(matches!(ring.get(0), Found::NotYet));
        Ok(())
    }

    #[test]
    fn a_writer_helps_a_head_that_lags_behind_a_claimed_record() -> Result {
        let ring = KBox::new(Ring::<SMALL>::new(), GFP_KERNEL)?;
        // Record 0 claimed, its writer preempted before moving the head: the next writer
        // moves the head on for it and takes record 1.
        ring.slots[0].seq.store(1, Relaxed);
        assert!(ring.push(&sample(7)));
        assert_eq!(ring.heads().0, 2);
        assert!(matches!(ring.get(0), Found::NotYet));
        assert!(matches!(ring.get(1), Found::Record(r) if r.t_ns == 7));
        Ok(())
    }
}
