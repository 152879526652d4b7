//! One timeline per fault: the CPU's record (`exceptions:page_fault_user`), our handler's
//! (the module's flight recorder) and the buddy allocator's (`kmem:mm_page_alloc`), joined.
//!
//! The join, for the faults of the traced tasks ([`join`]):
//! - a handler call belongs to the CPU fault of the same thread on the same page (for a
//!   `pmd` call, in the same 2 MiB) that came last before it: the thread was inside that
//!   fault's exception when the handler ran. tracefs stamps are whole microseconds, so a
//!   fault stamped in the microsecond of the call may have come just after it: such faults
//!   are passed over unless their page matches. Several calls can belong to one fault (a
//!   huge call that fell back to 4 KiB, a retry after the per-VMA lock);
//! - the allocation of a call that says `new=1` is the `mm_page_alloc` of the same thread,
//!   inside the call's time, whose frames (order 0, or 9 for 2 MiB) hold the call's PFN;
//! - a fault is a row when a handler call belongs to it or its address lies in a device
//!   mapping the caller knows of; the other faults of the traced tasks are counted only.
//!
//! Nothing is dropped silently: a fault in a device mapping with no handler call, a handler
//! call of a traced process with no CPU fault (a kernel-mode access, GUP, or a thread not
//! traced), and a call with `new=1` with no allocation are all listed in [`Timeline`].

use crate::events::{Event, Reader, EVENTS_DIR};
use crate::sys::{Mapping, Pagemap};
use crate::tracefs::{ErrorCode, Kind, Options, Session, TraceEvent};
use crate::Res;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// A device mapping of a traced process: `[start, end)` of process `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceRange {
    pub pid: u32,
    pub start: u64,
    pub end: u64,
}

impl DeviceRange {
    /// The range of `map`, a mapping of this process.
    pub fn of(map: &Mapping) -> Self {
        Self {
            pid: std::process::id(),
            start: map.addr(0) as u64,
            end: (map.addr(0) + map.len()) as u64,
        }
    }
}

/// The allocation the buddy allocator logged for a handler call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alloc {
    pub ts_us: u64,
    pub pfn: u64,
    pub order: u32,
    pub gfp_flags: String,
}

/// One fault in a device mapping: the CPU's record, the handler's calls for it (in order;
/// the last is the one that resolved it), and the allocation of the call that made the
/// frame.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Microseconds since the start of tracing.
    pub t_us: u64,
    pub tid: u32,
    pub pid: Option<u32>,
    pub address: u64,
    pub ip: u64,
    pub error_code: ErrorCode,
    /// The error code in words (`not-present|write|user`).
    pub error: String,
    pub calls: Vec<Event>,
    pub alloc: Option<Alloc>,
    /// `/proc/<pid>/pagemap`'s frame for the page after the run, when the caller read it.
    pub pagemap_pfn: Option<u64>,
}

impl Row {
    /// The handler call that resolved the fault (the last one).
    pub fn handler(&self) -> Option<&Event> {
        self.calls.last()
    }
}

/// Latency of one path's handler calls (`total_ns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathSummary {
    pub path: String,
    pub count: usize,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
}

/// The joined timeline and everything that did not join.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub rows: Vec<Row>,
    /// Faults of the traced tasks outside the device's mappings.
    pub faults_elsewhere: usize,
    /// Faults in a device mapping with no handler call (counted in `rows` too).
    pub faults_without_handler: usize,
    /// Handler calls of the traced processes that no CPU fault explains.
    pub unmatched_calls: Vec<Event>,
    /// Handler calls with `new=1` whose allocation tracefs did not show.
    pub calls_without_alloc: Vec<Event>,
    /// Allocations of the traced tasks that no handler call made (the processes' own
    /// memory, page tables, ...): counted only.
    pub other_allocs: usize,
    /// Records the recorder overwrote before they were read (its drop lines).
    pub recorder_dropped: u64,
    /// Records the recorder's writers lost (the module's `events_lost` during the run).
    pub recorder_lost: u64,
    /// Events tracefs lost.
    pub trace_lost: u64,
    pub summary: Vec<PathSummary>,
}

impl Timeline {
    /// Whether every record joined: no fault without its handler, no call without its
    /// fault or allocation, nothing lost on either side.
    pub fn complete(&self) -> bool {
        self.faults_without_handler == 0
            && self.unmatched_calls.is_empty()
            && self.calls_without_alloc.is_empty()
            && self.recorder_dropped == 0
            && self.recorder_lost == 0
            && self.trace_lost == 0
    }
}

/// The `q`-quantile (0..=1) of sorted `v`, by nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether handler call `e` covers `address`: its page, or its 2 MiB for a `pmd` call.
fn covers(e: &Event, address: u64) -> bool {
    let span = if e.path == "pmd" { 2 << 20 } else { 4096 };
    e.addr <= address && address < e.addr + span
}

/// What [`join`] joins.
pub struct Input<'a> {
    /// The traced tasks' tracefs events, in the `trace` file's order.
    pub trace: &'a [TraceEvent],
    /// The recorder's events, in time order (all processes: those of other processes are
    /// left out).
    pub records: &'a [Event],
    /// The processes traced (tgids): their records are joined, with those of any task in
    /// `trace`; records of others are not ours.
    pub pids: &'a BTreeSet<u32>,
    /// The device mappings known (a fault there is a row even without a handler call).
    pub ranges: &'a [DeviceRange],
    /// CLOCK_MONOTONIC at the start of tracing, in ns.
    pub started_ns: u64,
    pub recorder_dropped: u64,
    pub recorder_lost: u64,
    pub trace_lost: u64,
}

struct Fault<'a> {
    ev: &'a TraceEvent,
    address: u64,
    ip: u64,
    error_code: ErrorCode,
    calls: Vec<Event>,
}

/// Joins the three sources (see the module documentation).
pub fn join(input: &Input) -> Timeline {
    let mut faults: Vec<Fault> = Vec::new();
    // Allocations by thread, in order: (index into trace, taken).
    let mut allocs: HashMap<u32, Vec<(&TraceEvent, bool)>> = HashMap::new();
    let mut by_tid: HashMap<u32, Vec<usize>> = HashMap::new();
    for ev in input.trace {
        match &ev.kind {
            Kind::PageFaultUser {
                address,
                ip,
                error_code,
            } => {
                by_tid.entry(ev.tid).or_default().push(faults.len());
                faults.push(Fault {
                    ev,
                    address: *address,
                    ip: *ip,
                    error_code: *error_code,
                    calls: Vec::new(),
                });
            }
            Kind::MmPageAlloc { .. } => allocs.entry(ev.tid).or_default().push((ev, false)),
            Kind::Other { .. } => {}
        }
    }
    let mut t = Timeline {
        recorder_dropped: input.recorder_dropped,
        recorder_lost: input.recorder_lost,
        trace_lost: input.trace_lost,
        ..Timeline::default()
    };
    // The recorder's records of the traced processes, or of any task tracefs traced
    // (`record-tgid` knows a task's process only once it has been scheduled out).
    let traced = |e: &&Event| input.pids.contains(&e.pid) || by_tid.contains_key(&e.tid);
    for e in input.records.iter().filter(traced) {
        let owner = by_tid.get(&e.tid).and_then(|list| {
            // The faults of the thread stamped no later than the call, latest first: the
            // first that covers the call's page, passing over those that may be later than
            // the call (stamped in its microsecond), up to one surely before it.
            list.iter()
                .rev()
                .filter(|&&i| faults[i].ev.ts_us * 1000 <= e.t_ns)
                .try_fold((), |(), &i| {
                    if covers(e, faults[i].address) {
                        return Err(Some(i));
                    }
                    if faults[i].ev.ts_us * 1000 + 999 < e.t_ns {
                        return Err(None);
                    }
                    Ok(())
                })
                .err()
                .flatten()
        });
        match owner {
            Some(i) => faults[i].calls.push(e.clone()),
            None => t.unmatched_calls.push(e.clone()),
        }
    }
    let in_range = |f: &Fault| {
        input.ranges.iter().any(|r| {
            f.ev.tgid.is_none_or(|p| p == r.pid) && r.start <= f.address && f.address < r.end
        })
    };
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for f in faults {
        if f.calls.is_empty() && !in_range(&f) {
            t.faults_elsewhere += 1;
            continue;
        }
        if f.calls.is_empty() {
            t.faults_without_handler += 1;
        }
        let mut alloc = None;
        for c in f.calls.iter() {
            latencies
                .entry(c.path.clone())
                .or_default()
                .push(c.total_ns);
            let Some(pfn) = c.pfn.filter(|_| c.new) else {
                continue;
            };
            let (from, to) = (c.t_ns / 1000, (c.t_ns + c.total_ns).div_ceil(1000));
            let found = allocs.get_mut(&c.tid).and_then(|list| {
                list.iter_mut().find(|(a, taken)| {
                    let Kind::MmPageAlloc {
                        pfn: apfn, order, ..
                    } = &a.kind
                    else {
                        return false;
                    };
                    !taken
                        && (*order == 0 || *order == 9)
                        && *apfn <= pfn
                        && pfn < *apfn + (1 << order)
                        && from <= a.ts_us
                        && a.ts_us <= to
                })
            });
            match found {
                Some((a, taken)) => {
                    *taken = true;
                    if let Kind::MmPageAlloc {
                        pfn,
                        order,
                        gfp_flags,
                    } = &a.kind
                    {
                        alloc = Some(Alloc {
                            ts_us: a.ts_us,
                            pfn: *pfn,
                            order: *order,
                            gfp_flags: gfp_flags.clone(),
                        });
                    }
                }
                None => t.calls_without_alloc.push(c.clone()),
            }
        }
        t.rows.push(Row {
            t_us: (f.ev.ts_us * 1000).saturating_sub(input.started_ns) / 1000,
            tid: f.ev.tid,
            pid: f.ev.tgid.or(f.calls.last().map(|c| c.pid)),
            address: f.address,
            ip: f.ip,
            error_code: f.error_code,
            error: f.error_code.decoded(),
            calls: f.calls,
            alloc,
            pagemap_pfn: None,
        });
    }
    t.other_allocs = allocs
        .values()
        .map(|l| l.iter().filter(|(_, taken)| !taken).count())
        .sum();
    t.summary = latencies
        .into_iter()
        .map(|(path, mut v)| {
            v.sort_unstable();
            PathSummary {
                path,
                count: v.len(),
                p50_ns: quantile(&v, 0.5),
                p90_ns: quantile(&v, 0.9),
                p99_ns: quantile(&v, 0.99),
            }
        })
        .collect();
    t
}

/// A traced run: a tracefs [`Session`] and a reader of the recorder, both started before
/// the run, joined after it by [`Tracer::finish`].
pub struct Tracer {
    session: Session,
    reader: Reader,
    /// The module's `events_lost` when tracing began (records a preempted writer dropped).
    lost_before: u64,
}

/// Makes sure the module records events: loaded with its recorder, which is switched on if
/// it is off (it is off by default: recording costs the handler time, see BENCHMARKS.md), with
/// a note on stderr.
pub fn recorder_on() -> Res {
    let stats = crate::io("the module's stats", crate::sys::read_stats())?;
    if !stats.0.contains_key("events") {
        return Err("the module has no flight recorder (no `events` line in its stats): load a rust_pagefault_demo.ko that has one".into());
    }
    if crate::events::switch_on(std::path::Path::new(crate::events::EVENTS_DIR))? {
        eprintln!(
            "pfdemo: switched the module's flight recorder on (echo 0 > {}/enable switches it off)",
            crate::events::EVENTS_DIR
        );
    }
    Ok(())
}

impl Tracer {
    /// Sets up tracing as `opts` say (not started yet: see [`Tracer::start`]).
    pub fn new(opts: &Options) -> Res<Tracer> {
        recorder_on()?;
        let session = Session::new(opts)?;
        let reader = Reader::from_now(Path::new(EVENTS_DIR))?;
        let lost_before = crate::io("stats", crate::sys::read_stats())?.get("events_lost");
        Ok(Tracer {
            session,
            reader,
            lost_before,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Switches tracing on.
    pub fn start(&mut self) -> Res {
        self.session.clear()?;
        self.session.start()
    }

    /// Stops tracing, reads both sides and joins them for the processes `pids` and the
    /// tasks tracefs saw, with the device mappings `ranges`.
    pub fn finish(mut self, pids: &[u32], ranges: &[DeviceRange]) -> Res<Timeline> {
        self.session.stop()?;
        let capture = self.session.read()?;
        let batch = self.reader.flush()?;
        let lost =
            crate::io("stats", crate::sys::read_stats())?.get("events_lost") - self.lost_before;
        let traced: BTreeSet<u32> = pids.iter().copied().collect();
        Ok(join(&Input {
            trace: &capture.events,
            records: &batch.events,
            pids: &traced,
            ranges,
            started_ns: self.session.started_ns,
            recorder_dropped: batch.dropped,
            recorder_lost: lost,
            trace_lost: capture.lost,
        }))
    }
}

/// Touches page `page` of `map`: a write, or a read.
pub fn touch(map: &Mapping, page: usize, write: bool) {
    if write {
        map.write(page, 0, page as u64 + 1);
    } else {
        let _ = map.read(page, 0);
    }
}

/// Fills in each row's `pagemap_pfn` from this process's pagemap (the rows of its main
/// thread, which is all a single-threaded run has).
pub fn add_pagemap(rows: &mut [Row]) -> Res {
    let mut pm = crate::io("pagemap", Pagemap::open())?;
    let me = std::process::id();
    for r in rows.iter_mut().filter(|r| r.tid == me) {
        let e = crate::io("pagemap", pm.entry(r.address as usize))?;
        r.pagemap_pfn = e.pfn.filter(|_| e.present);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x7f00_0000_0000;

    fn fault(ts_us: u64, tid: u32, address: u64, code: u64) -> TraceEvent {
        TraceEvent {
            comm: "t".into(),
            tid,
            tgid: Some(100),
            cpu: 0,
            ts_us,
            kind: Kind::PageFaultUser {
                address,
                ip: 0x401000,
                error_code: ErrorCode(code),
            },
        }
    }

    fn alloc(ts_us: u64, tid: u32, pfn: u64, order: u32) -> TraceEvent {
        TraceEvent {
            kind: Kind::MmPageAlloc {
                pfn,
                order,
                gfp_flags: "GFP_HIGHUSER|__GFP_ZERO".into(),
            },
            ..fault(ts_us, tid, 0, 0)
        }
    }

    fn call(t_ns: u64, tid: u32, addr: u64, pfn: u64, new: bool) -> Event {
        Event {
            shard: 0,
            seq: 0,
            t_ns,
            cpu: 0,
            pid: 100,
            tid,
            inst: 1,
            call: "fault".into(),
            path: "page".into(),
            out: "mapped".into(),
            addr,
            pgoff: 0,
            flags: 0x1255,
            how: "WUV".into(),
            pfn: Some(pfn),
            new,
            pages: 1,
            allocs: u64::from(new),
            reserve_ns: 100,
            alloc_ns: 2000,
            map_ns: 500,
            total_ns: 3000,
        }
    }

    fn run(trace: &[TraceEvent], records: &[Event], ranges: &[DeviceRange]) -> Timeline {
        join(&Input {
            trace,
            records,
            pids: &BTreeSet::from([100]),
            ranges,
            started_ns: 1_000_000,
            recorder_dropped: 0,
            recorder_lost: 0,
            trace_lost: 0,
        })
    }

    /// N faults of one thread, each with its call and its allocation, and faults
    /// elsewhere in between: N rows in order, each with its own call and frame.
    #[test]
    fn joins_each_fault_with_its_call_and_allocation() {
        let (mut trace, mut records) = (Vec::new(), Vec::new());
        for i in 0..5u64 {
            let ts = 2000 + i * 100;
            trace.push(fault(ts, 101, 0x1000 + i * 8, 0x6));
            trace.push(fault(ts + 10, 101, BASE + i * 4096 + 8, 0x6));
            trace.push(alloc(ts + 12, 101, 0x5000 + 7 * i, 0));
            trace.push(alloc(ts + 13, 101, 0x9000 + i, 0));
            records.push(call(
                (ts + 11) * 1000,
                101,
                BASE + i * 4096,
                0x5000 + 7 * i,
                true,
            ));
        }
        let t = run(&trace, &records, &[]);
        assert_eq!(t.rows.len(), 5);
        for (i, r) in t.rows.iter().enumerate() {
            let i = i as u64;
            assert_eq!(r.address, BASE + i * 4096 + 8);
            assert_eq!(r.t_us, 2000 + i * 100 + 10 - 1000);
            assert_eq!(r.error, "not-present|write|user");
            assert_eq!(r.handler().unwrap().pfn, Some(0x5000 + 7 * i));
            assert_eq!(r.alloc.as_ref().unwrap().pfn, 0x5000 + 7 * i);
        }
        assert_eq!((t.faults_elsewhere, t.other_allocs), (5, 5));
        assert!(t.complete());
        assert_eq!(t.summary.len(), 1);
        assert_eq!((t.summary[0].count, t.summary[0].p99_ns), (5, 3000));
    }

    /// A call joins the fault of its own thread and page, not the latest fault overall.
    #[test]
    fn threads_and_pages_are_kept_apart() {
        let trace = [
            fault(100, 101, BASE, 0x6),
            fault(101, 102, BASE + 4096, 0x4),
            alloc(102, 102, 0x20, 0),
            alloc(103, 101, 0x10, 0),
        ];
        let records = [
            call(101_500, 102, BASE + 4096, 0x20, true),
            call(100_500, 101, BASE, 0x10, true),
        ];
        let t = run(&trace, &records, &[]);
        let got: Vec<(u32, Option<u64>, Option<u64>)> = t
            .rows
            .iter()
            .map(|r| {
                (
                    r.tid,
                    r.handler().and_then(|h| h.pfn),
                    r.alloc.as_ref().map(|a| a.pfn),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(101, Some(0x10), Some(0x10)), (102, Some(0x20), Some(0x20))]
        );
        assert!(t.complete());
    }

    /// Whatever does not join is listed: a fault in a device range without a call, a call
    /// without a fault (a kernel-mode access), a new frame without its allocation; the
    /// counts of lost records are carried.
    #[test]
    fn reports_what_does_not_join() {
        let trace = [
            fault(100, 101, BASE, 0x6),
            fault(200, 101, BASE + 4096, 0x7),
            fault(300, 101, 0x1000, 0x4),
        ];
        let records = [
            call(100_300, 101, BASE, 0x10, true),
            call(300_500, 101, BASE + 8192, 0x11, false),
        ];
        let ranges = [DeviceRange {
            pid: 100,
            start: BASE,
            end: BASE + 16 * 4096,
        }];
        let mut t = run(&trace, &records, &ranges);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1].error, "protection|write|user");
        assert!(t.rows[1].calls.is_empty());
        assert_eq!(t.faults_without_handler, 1);
        assert_eq!(t.unmatched_calls.len(), 1);
        assert_eq!(t.unmatched_calls[0].addr, BASE + 8192);
        assert_eq!(t.calls_without_alloc.len(), 1);
        assert_eq!(t.faults_elsewhere, 1);
        assert!(!t.complete());
        t = join(&Input {
            trace: &trace[..1],
            records: &records[..1],
            pids: &BTreeSet::from([100]),
            ranges: &[],
            started_ns: 0,
            recorder_dropped: 3,
            recorder_lost: 0,
            trace_lost: 0,
        });
        assert_eq!(t.recorder_dropped, 3);
        assert!(!t.complete(), "a drop makes the timeline incomplete");
    }

    /// tracefs stamps are microseconds: a later fault stamped in the call's microsecond is
    /// passed over when its page does not match; a call's allocation must lie inside it.
    #[test]
    fn microsecond_ties_and_time_windows() {
        let trace = [
            fault(100, 101, BASE, 0x6),
            fault(103, 101, BASE + 4096, 0x6),
            // An allocation of the frame's PFN long after the call: not its allocation.
            alloc(900, 101, 0x10, 0),
        ];
        let records = [call(103_200, 101, BASE, 0x10, true)];
        let t = run(&trace, &records, &[]);
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0].address, BASE);
        assert_eq!(t.calls_without_alloc.len(), 1);
        assert_eq!((t.other_allocs, t.faults_elsewhere), (1, 1));
    }

    /// A 2 MiB call covers every address of its frame and joins an order-9 allocation
    /// holding its PFN; a fallback call before it is kept with the same fault.
    #[test]
    fn huge_calls() {
        let mut fallback = call(100_100, 101, BASE + 0x3000, 0, false);
        fallback.path = "fallback".into();
        fallback.pfn = None;
        let mut pmd = call(100_400, 101, BASE, 0x200, true);
        pmd.path = "pmd".into();
        let trace = [
            fault(100, 101, BASE + 0x3008, 0x6),
            alloc(101, 101, 0x200, 9),
        ];
        let t = run(&trace, &[fallback, pmd], &[]);
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0].calls.len(), 2);
        assert_eq!(t.rows[0].alloc.as_ref().map(|a| a.order), Some(9));
        assert!(t.complete());
        assert_eq!(
            t.summary
                .iter()
                .map(|s| s.path.as_str())
                .collect::<Vec<_>>(),
            ["fallback", "pmd"]
        );
    }

    #[test]
    fn quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (quantile(&v, 0.5), quantile(&v, 0.9), quantile(&v, 0.99)),
            (50, 90, 99)
        );
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
