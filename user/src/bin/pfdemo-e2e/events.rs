//! The flight recorder (`events/` in debugfs) against the kernel's own records: every touch
//! that faults is one record, in order, with the address, page offset and frame (pagemap's)
//! of the access, the core's flags as the core passed them (a write, a user access, the
//! per-VMA lock unless `map_pages=0`), the path the module's parameters choose, and parts
//! that add up to no more than the whole; a ring that overflows says exactly how much it
//! dropped; readers do not disturb each other or the faults; bad reads are refused; and
//! the recorder is off by default, switched by `events/enable`, and on from the load with
//! `events=1`.

use crate::expect::*;
use pfdemo::events::{self, Event, Line, Reader, RECORD_BYTES};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

pub const CASES: &[Case] = &[
    (
        "events: each fault is one record in order: address, offset, flags, path, pagemap's frame",
        every_fault_is_one_record,
    ),
    (
        "events: a 2 MiB aligned mapping with huge: one PMD record of 512 pages (or none without)",
        huge_mapping_is_one_pmd_record,
    ),
    (
        "events: a full ring drops the oldest and says exactly how many",
        full_ring_counts_what_it_dropped,
    ),
    (
        "events: readers at once all see every record; one that never reads holds nothing up",
        readers_do_not_disturb,
    ),
    (
        "events: threads faulting at once: every call is a record read, dropped or lost, no gap",
        threads_at_once_are_all_accounted_for,
    ),
    (
        "events: bad reads get EINVAL, a read past the newest record is the end, files are 0400",
        bad_reads_are_refused,
    ),
    (
        "events: off by default; events/enable switches it on and off; events=1 records from load",
        off_by_default_and_switched,
    ),
];

/// The recorder's records per shard (the module's `RING`).
const RING: u64 = 1024;

fn dir() -> &'static Path {
    Path::new(events::EVENTS_DIR)
}

/// A reader from now on, with the recorder switched on (it is off by default).
fn recording() -> Result<Reader, String> {
    events::switch_on(dir())?;
    Reader::from_now(dir())
}

/// The events of thread `tid` on instance `inst` in `batch`, but for the huge handler's
/// fallbacks. With `huge`, the core calls our huge-fault handler before a 4 KiB fault where
/// the PUD entry is empty (a fresh gigabyte of address space: it asks for a PUD) or the PMD
/// entry is (it asks for a PMD; the core leaves the check that one fits to the driver): where
/// the 2 MiB do not fit, the handler declines (checked here), and the 4 KiB fault that
/// follows is the touch.
fn ours(batch: &events::Batch, inst: u64, tid: u32) -> Result<Vec<Event>, String> {
    let mut ours = Vec::new();
    for e in batch
        .events
        .iter()
        .filter(|e| e.inst == inst && e.tid == tid)
    {
        if e.path == "fallback" {
            ensure!(
                (e.call == "pmd" || e.call == "pud")
                    && e.out == "fallback"
                    && e.pfn.is_none()
                    && e.pages == 0
                    && e.allocs == 0,
                "a huge-fault fallback that did something: {e:?}"
            );
            continue;
        }
        ours.push(e.clone());
    }
    Ok(ours)
}

/// Reads with `reader` until `stop` is set (pausing `pause` between polls), then reads to
/// the end: every event that passes `keep`, and how many records were dropped meanwhile.
fn read_until_stopped(
    reader: &mut Reader,
    stop: &std::sync::atomic::AtomicBool,
    pause: Duration,
    keep: impl Fn(&Event) -> bool,
) -> Result<(Vec<Event>, u64), String> {
    let (mut seen, mut dropped) = (Vec::new(), 0);
    loop {
        let done = stop.load(std::sync::atomic::Ordering::Acquire);
        let batch = if done {
            reader.flush()?
        } else {
            reader.poll()?
        };
        dropped += batch.dropped;
        seen.extend(batch.events.into_iter().filter(|e| keep(e)));
        if done {
            return Ok((seen, dropped));
        }
        std::thread::sleep(pause);
    }
}

/// Checks what holds for every record of a fault taken by this thread at `va` of a shared
/// device mapping: the address and offset, the flags, a frame, parts within the whole.
fn check_record(e: &Event, va: usize, pgoff: u64, write: bool, map_pages: bool) -> Check {
    ensure!(
        e.addr == va as u64 && e.pgoff == pgoff,
        "record {e:?}: expected address {va:#x}, offset {pgoff}"
    );
    ensure!(
        e.pid == std::process::id() && e.call == "fault" && e.out == "mapped",
        "record {e:?}: not a mapped fault of this process"
    );
    ensure!(
        e.write() == write && e.how.contains('U'),
        "record {e:?}: how={} for a user {}",
        e.how,
        if write { "write" } else { "read" }
    );
    // Without map_pages, the core retries every fault taken under the per-VMA lock under the
    // mmap lock (vmf_can_call_fault): our handler then runs without FAULT_FLAG_VMA_LOCK.
    ensure!(
        e.how.contains('V') == map_pages,
        "record {e:?}: how={} with map_pages={}",
        e.how,
        u8::from(map_pages)
    );
    ensure!(
        e.reserve_ns + e.alloc_ns + e.map_ns <= e.total_ns && e.total_ns > 0,
        "record {e:?}: the parts exceed the whole"
    );
    Ok(())
}

fn every_fault_is_one_record() -> Check {
    let pages = 64;
    let s = stats()?;
    let (k, huge, map_pages) = (
        prefault()?,
        stat(&s, "huge")? == 1,
        stat(&s, "map_pages")? == 1,
    );
    let dev = io("open", Device::open())?;
    let inst = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, true))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    // Writes, then reads of pages no fault has mapped yet.
    let touches: Vec<(usize, bool)> = [0, 3, 20, 40, 63]
        .into_iter()
        .map(|p| (p, true))
        .chain([10, 30, 50].into_iter().map(|p| (p, false)))
        .collect();
    let (faulted, _) = fault_pattern(touches.iter().map(|t| t.0), pages)?;
    let mut reader = recording()?;
    let before = stats()?;
    let t0 = sys::monotonic_ns();
    for &(p, write) in &touches {
        if write {
            map.write(p, 0, p as u64 + 1);
        } else {
            std::hint::black_box(map.read(p, 0));
        }
    }
    let t1 = sys::monotonic_ns();
    let got = ours(&reader.flush()?, inst, sys::gettid())?;
    let want: Vec<(usize, bool)> = touches
        .iter()
        .zip(&faulted)
        .filter(|(_, f)| **f)
        .map(|(t, _)| *t)
        .collect();
    ensure!(
        got.len() == want.len(),
        "{} records for {} faulting touches: {got:?}",
        got.len(),
        want.len()
    );
    let path = match (huge, k > 1) {
        (true, _) => "subpage",
        (false, true) => "batch",
        (false, false) if stat(&s, "return_page")? == 1 => "core",
        (false, false) if stat(&s, "insert_pages")? == 1 => "pages",
        (false, false) => "page",
    };
    // The pages each fault maps: its own, and with prefault those after it not yet mapped.
    let mut present = vec![false; pages];
    for (e, &(p, write)) in got.iter().zip(&want) {
        check_record(e, map.addr(p), p as u64, write, map_pages)?;
        let span = if huge {
            p..p + 1
        } else {
            p..(p + k).min(pages)
        };
        let fresh = span
            .filter(|&q| !std::mem::replace(&mut present[q], true))
            .count() as u64;
        let allocs = if huge { u64::from(e.new) } else { fresh };
        ensure!(
            e.pages == fresh && e.allocs == allocs,
            "record {e:?}: {} pages mapped and {} frames allocated, expected {fresh} and {allocs}",
            e.pages,
            e.allocs
        );
        ensure!(
            e.t_ns >= t0 && e.t_ns <= t1,
            "record {e:?}: time {} outside the touches' {t0}..{t1}",
            e.t_ns
        );
        ensure!(
            e.path == path,
            "record {e:?}: path {}, expected {path}",
            e.path
        );
        let pfn = pagemap_pfn(&mut pm, map.addr(p))?;
        ensure!(
            e.pfn == pfn,
            "record {e:?}: pfn {:?}, pagemap says {pfn:?}",
            e.pfn
        );
        // The first touch of a frame allocates it: a page's own with 4 KiB frames, and with
        // huge the first touch of the 2 MiB frame (all of these pages are in the first).
        let first = !huge || std::ptr::eq(e, &got[0]);
        ensure!(
            e.new == first,
            "record {e:?}: new={}, expected {first}",
            e.new
        );
    }
    ensure!(
        got.windows(2).all(|w| w[0].t_ns <= w[1].t_ns),
        "records out of order: {got:?}"
    );
    let recorded = stats()?
        .change(&before, "events_recorded")
        .map_err(|e| e.to_string())?;
    ensure!(
        recorded >= got.len() as i64,
        "events_recorded moved by {recorded}, {} records read",
        got.len()
    );
    deltas(&before, &[("events_lost", 0)])?;
    // Zapped and touched again: the same frames, found, not allocated.
    io("madvise", map.madvise(libc::MADV_DONTNEED))?;
    let mut again = recording()?;
    map.write(0, 0, 7);
    let second = ours(&again.flush()?, inst, sys::gettid())?;
    ensure!(
        second.len() == 1 && !second[0].new && second[0].allocs == 0 && second[0].pfn == got[0].pfn,
        "after MADV_DONTNEED: {second:?}, first time {:?}",
        got[0]
    );
    Ok(())
}

fn huge_mapping_is_one_pmd_record() -> Check {
    const TWO_MIB_PAGES: usize = 512;
    let huge = stat(&stats()?, "huge")? == 1;
    let dev = io("open", Device::open())?;
    let inst = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map_aligned(TWO_MIB_PAGES, 0, true, 2 << 20))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let mut reader = recording()?;
    map.write(5, 0, 1);
    for p in [6, 100, 511] {
        map.write(p, 0, 1);
    }
    let got = ours(&reader.flush()?, inst, sys::gettid())?;
    if !huge {
        // 4 KiB frames: no huge-fault handler, one record per page touched.
        ensure!(
            got.len() as i64 == expected_faults([5, 6, 100, 511], TWO_MIB_PAGES)?
                && got.iter().all(|e| e.call == "fault"),
            "without huge: {got:?}"
        );
        return Ok(());
    }
    // THP settings decide whether the core asks for a PMD (see README): a process without
    // THP gets 4 KiB faults. The VM's default is to ask (madvise or always, and the module
    // sets VM_HUGEPAGE).
    let pmd: Vec<&Event> = got.iter().filter(|e| e.path == "pmd").collect();
    ensure!(
        got.len() == 1 && pmd.len() == 1,
        "huge, 2 MiB aligned: expected one PMD record, got {got:?}"
    );
    let e = pmd[0];
    let first = pagemap_pfn(&mut pm, map.addr(0))?;
    ensure!(
        e.call == "pmd"
            && e.out == "mapped"
            && e.addr == map.addr(0) as u64
            && e.pages == 512
            && e.new
            && e.allocs == 1
            && e.pfn == first,
        "PMD record {e:?}: expected address {:#x}, 512 pages, a new frame, pfn {first:?}",
        map.addr(0)
    );
    Ok(())
}

fn full_ring_counts_what_it_dropped() -> Check {
    let k = prefault()? as u64;
    // Records on CPU 0 only: this process, pinned, and whatever else runs there.
    let faults = RING + 300;
    let pages = (faults * k) as usize;
    events::switch_on(dir())?;
    let heads = events::parse_heads(&io("heads", std::fs::read_to_string(dir().join("heads")))?)
        .map_err(|e| e.to_string())?;
    let start = heads[0].next;
    in_child(|| {
        if sys::pin_to_cpu(0).is_err() {
            return 3;
        }
        let Ok(dev) = Device::open() else { return 4 };
        let Ok(map) = dev.map(pages, 0, true) else {
            return 5;
        };
        // With huge, 4 KiB faults only (a PMD would map 512 pages with one record).
        if map.madvise(libc::MADV_NOHUGEPAGE).is_err() {
            return 6;
        }
        for p in (0..pages).step_by(k as usize) {
            map.write(p, 0, 1);
        }
        0
    })?
    .map_err(|code| format!("the pinned toucher failed ({code})"))?;
    let heads = events::parse_heads(&io("heads", std::fs::read_to_string(dir().join("heads")))?)
        .map_err(|e| e.to_string())?;
    let end = heads[0].next;
    ensure!(
        end - start >= faults,
        "shard 0 moved from {start} to {end}, fewer than the {faults} faults pinned to CPU 0"
    );
    // Read the shard from where it was before: first a drop line for what the ring no longer
    // holds, then exactly the records it holds, to the end.
    let file = io("open cpu0", std::fs::File::open(dir().join("cpu0")))?;
    let mut buf = vec![0u8; RECORD_BYTES * 2048];
    let n = io(
        "read cpu0",
        file.read_at(&mut buf, start * RECORD_BYTES as u64),
    )?;
    let lines = Line::parse_records(0, &buf[..n]).map_err(|e| e.to_string())?;
    let Some(Line::Dropped { seq, count }) = lines.first() else {
        return Err(format!("no drop line first: {:?}", lines.first()));
    };
    let kept = &lines[1..];
    ensure!(
        *seq == start && *count == end - start - RING,
        "dropped seq={seq} count={count}, expected seq={start} count={}",
        end - start - RING
    );
    ensure!(
        kept.len() as u64 == RING,
        "{count} dropped and {} kept of {} records, the ring holds {RING}",
        kept.len(),
        end - start
    );
    for (i, line) in kept.iter().enumerate() {
        let Line::Event(e) = line else {
            return Err(format!("a second drop line in a quiet ring: {line:?}"));
        };
        ensure!(
            e.seq == start + count + i as u64,
            "record {i} has seq {}",
            e.seq
        );
    }
    deltas(&stats()?, &[("events_lost", 0)])
}

fn readers_do_not_disturb() -> Check {
    let pages = 600;
    let dev = io("open", Device::open())?;
    let inst = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, true))?;
    // Opened and never read: it must hold nothing up.
    let _idle = io("open cpu0", std::fs::File::open(dir().join("cpu0")))?;
    let readers = (0..4).map(|_| recording()).collect::<Result<Vec<_>, _>>()?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let tid = sys::gettid();
    let want = expected_faults(0..pages, pages)? as usize;
    let (took, seen) = std::thread::scope(|scope| {
        let threads: Vec<_> = readers
            .into_iter()
            .enumerate()
            .map(|(i, mut reader)| {
                // From eager to lagging: a reader 10 ms behind gets hundreds at once.
                let pause = Duration::from_millis([0, 1, 4, 10][i]);
                let stop = &stop;
                scope.spawn(move || -> Result<Vec<Event>, String> {
                    let (all, dropped) = read_until_stopped(&mut reader, stop, pause, |e| {
                        e.inst == inst && e.tid == tid
                    })?;
                    ensure!(dropped == 0, "a reader lost {dropped} records");
                    ours(
                        &events::Batch {
                            events: all,
                            dropped,
                        },
                        inst,
                        tid,
                    )
                })
            })
            .collect();
        let started = Instant::now();
        for p in 0..pages {
            map.write(p, 0, 1);
        }
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Release);
        let seen: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a reader panicked".into())))
            .collect();
        (took, seen)
    });
    let seen = seen.into_iter().collect::<Result<Vec<_>, _>>()?;
    for (i, got) in seen.iter().enumerate() {
        if got.len() != want {
            let mut seen_addr = std::collections::BTreeSet::new();
            let again: Vec<&Event> = got.iter().filter(|e| !seen_addr.insert(e.addr)).collect();
            return Err(format!(
                "reader {i} saw {} of our {want} records; again for one address: {again:?}",
                got.len()
            ));
        }
        ensure!(
            got == &seen[0],
            "reader {i} saw other records than reader 0"
        );
    }
    // The touches do not wait for readers: a few ms of work, far below this bound.
    ensure!(
        took < Duration::from_secs(20),
        "{pages} touches with 4 readers took {took:?}"
    );
    Ok(())
}

fn threads_at_once_are_all_accounted_for() -> Check {
    let (threads, per_thread) = (4, 400);
    let pages = threads * per_thread;
    let dev = io("open", Device::open())?;
    let inst = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, true))?;
    // 4 KiB faults only, one per touch even with huge.
    io("madvise", map.madvise(libc::MADV_NOHUGEPAGE))?;
    let mut reader = recording()?;
    let before = stats()?;
    let (mut seen, mut dropped) = (Vec::new(), 0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> Check {
        let map = &map;
        let stop = &stop;
        let touchers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    // Interleaved pages, so that the threads' faults mix on both CPUs.
                    for i in 0..per_thread {
                        map.write(i * threads + t, 0, 1);
                    }
                })
            })
            .collect();
        let reading = scope.spawn(move || {
            read_until_stopped(&mut reader, stop, Duration::ZERO, |e| e.inst == inst)
        });
        for t in touchers {
            t.join().map_err(|_| "a toucher panicked".to_string())?;
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        (seen, dropped) = reading
            .join()
            .map_err(|_| "the reader panicked".to_string())??;
        Ok(())
    })?;
    let after = stats()?;
    let delta = |name: &str| after.change(&before, name).map_err(|e| e.to_string());
    let calls = delta("faults")? + delta("huge_faults")?;
    let lost = delta("events_lost")?;
    // Only this case faults now: every handler call is a record this reader got, one the
    // ring overwrote before it got there, or one the recorder counted as lost.
    ensure!(
        seen.len() as i64 + dropped as i64 + lost == calls,
        "{} records read, {dropped} dropped, {lost} lost, for {calls} handler calls",
        seen.len()
    );
    // Each page was mapped once, by whichever call got there first (a fault's own page, or a
    // neighbour's prefault): the pages the records say they mapped add up to all of them.
    // With return_page the core maps a fault's own page after the call, and drops it if a
    // neighbour's prefault got there first, which the record cannot know: it counts the page
    // it offered, so the records may count such a page twice, never miss one.
    let mapped: u64 = seen
        .iter()
        .filter(|e| e.call == "fault")
        .map(|e| e.pages)
        .sum();
    let offered = stat(&after, "return_page")? == 1;
    ensure!(
        dropped > 0 || lost > 0 || mapped == pages as u64 || (offered && mapped > pages as u64),
        "the records mapped {mapped} pages of the {pages} touched (return_page: {offered})"
    );
    // Per ring, in sequence order with no gap a reader was not told of.
    for shard in 0..8 {
        let mut seqs: Vec<u64> = seen
            .iter()
            .filter(|e| e.shard == shard)
            .map(|e| e.seq)
            .collect();
        // The reader gives them in time order; calls that overlapped on one ring may have
        // been recorded in the other order.
        seqs.sort_unstable();
        ensure!(
            dropped > 0 || seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "ring {shard}: a gap in {seqs:?} with nothing dropped"
        );
    }
    Ok(())
}

fn bad_reads_are_refused() -> Check {
    let path = dir().join("cpu0");
    let mode = io("stat", std::fs::metadata(&path))?.permissions().mode() & 0o777;
    ensure!(mode == 0o400, "events/cpu0 has mode {mode:o}, not 400");
    let file = io("open", std::fs::File::open(&path))?;
    let mut small = [0u8; 100];
    ensure!(
        errno_of(file.read_at(&mut small, 0)) == Some(libc::EINVAL),
        "a read smaller than a record is not EINVAL"
    );
    let mut buf = vec![0u8; RECORD_BYTES];
    ensure!(
        errno_of(file.read_at(&mut buf, RECORD_BYTES as u64 + 1)) == Some(libc::EINVAL),
        "a read between records is not EINVAL"
    );
    ensure!(
        io(
            "read far ahead",
            file.read_at(&mut buf, (1 << 40) * RECORD_BYTES as u64)
        )? == 0,
        "a read past the newest record is not the end of the file"
    );
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: pread on an open descriptor into a buffer of the length given.
    let negative = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), -512) };
    ensure!(
        negative == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL),
        "a negative offset gave {negative}"
    );
    tried(4);
    Ok(())
}

fn off_by_default_and_switched() -> Check {
    let heads = || io("heads", std::fs::read_to_string(dir().join("heads")));
    let enable = dir().join("enable");
    let touch = |pages: usize| -> Check {
        let dev = io("open", Device::open())?;
        let map = io("mmap", dev.map(pages, 0, true))?;
        for p in 0..pages {
            map.write(p, 0, 1);
        }
        Ok(())
    };
    let result = (|| {
        // Loaded without `events`: off, and nothing recorded. (A parameter set that loads
        // with events=1 checks the switched-off state the same way, loaded with events=0.)
        let by_default = !base_params().iter().any(|p| p.starts_with("events="));
        reload(if by_default { &[] } else { &["events=0"] })?;
        ensure!(
            stat(&stats()?, "events")? == 0,
            "stats does not show events 0 (by default: {by_default})"
        );
        let mode = io("stat", std::fs::metadata(&enable))?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "events/enable has mode {mode:o}, not 600");
        let before = heads()?;
        touch(16)?;
        ensure!(heads()? == before, "the rings moved with the recorder off");
        // Switched on: recorded; off again: not.
        io("enable", std::fs::write(&enable, "1"))?;
        ensure!(
            stat(&stats()?, "events")? == 1,
            "stats does not show events 1 once on"
        );
        // The reader's files are closed before the module is reloaded below: an open one
        // would make rmmod fail.
        let got = {
            let mut reader = Reader::from_now(dir())?;
            touch(16)?;
            reader.flush()?.events.len() as i64
        };
        let want = expected_faults(0..16, 16)?;
        ensure!(
            got >= want,
            "{got} records for {want} faults with the recorder on"
        );
        io("disable", std::fs::write(&enable, "0"))?;
        let before = heads()?;
        touch(16)?;
        ensure!(heads()? == before, "the rings moved once switched off");
        ensure!(
            errno_of(std::fs::write(&enable, "yes")) == Some(libc::EINVAL),
            "writing a word to events/enable is not EINVAL"
        );
        tried(1);
        // events=1 at load: on from the start, and stats say so.
        reload(&["events=1"])?;
        let after_load = stats()?;
        ensure!(
            stat(&after_load, "events")? == 1,
            "events=1 at load: stats show it off"
        );
        touch(4)?;
        ensure!(
            stat(&stats()?, "events_recorded")? as i64 >= expected_faults(0..4, 4)?,
            "events=1 at load: fewer records than faults"
        );
        Ok(())
    })();
    reload(&[])?;
    result
}
