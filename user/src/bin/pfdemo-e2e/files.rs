//! The device node and the module's files: their modes, the counters `stats` promises, the
//! latency histogram, and no kernel pointer in anything the module prints.
//!
//! After the traffic groups: the histogram check needs faults counted since the module's load.

use crate::expect::*;

pub const CASES: &[Case] = &[
    ("device node is 0600 and debugfs files 0400", device_node),
    (
        "stats lists every counter of the contract",
        stats_lists_every_contract_counter,
    ),
    (
        "stats: instances_opened, open_nomem, prefaulted, metadata_bytes move as the contract says",
        stats_counters_move_as_promised,
    ),
    (
        "latency histogram counts every fault the kernel counted",
        latency_histogram_counts_every_fault,
    ),
    (
        "frames: a 100k-row read does not hold up open and close",
        long_frames_read_does_not_block_open,
    ),
    (
        "no kernel pointer in debugfs, fdinfo or the module's log",
        no_kernel_pointers_in_any_output,
    ),
];

fn device_node() -> Check {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let m = io("stat device", std::fs::metadata(sys::DEVICE))?;
    ensure!(m.file_type().is_char_device(), "not a character device");
    ensure!(
        m.permissions().mode() & 0o777 == 0o600,
        "mode {:o}, expected 600",
        m.permissions().mode() & 0o777
    );
    for f in sys::DEBUGFS_FILES {
        let m = io(f, std::fs::metadata(sys::debugfs_path(f)))?;
        ensure!(
            m.permissions().mode() & 0o777 == 0o400,
            "debugfs {f} mode {:o}",
            m.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// The stats file carries every counter the contract names, and the settings the tests
/// derive their expectations from.
fn stats_lists_every_contract_counter() -> Check {
    let s = stats()?;
    let mut names = Stats::REQUIRED.to_vec();
    names.extend([
        "huge_faults",
        "huge_fallbacks",
        "no_huge_frame",
        "frames_discarded",
        "instances_opened",
        "open_nomem",
        "prefaulted",
        "metadata_bytes",
        "mmap_refused",
        "max_total_pages",
        "prefault",
        "huge",
        "map_pages",
        "latency",
        "insert_pages",
    ]);
    let missing = s.missing(&names);
    ensure!(missing.is_empty(), "stats lacks {missing:?}");
    Ok(())
}

/// An open counts in `instances` and `instances_opened`, not in `open_nomem` (only an open
/// the module refuses for lack of memory does: the injection stress checks that side), and
/// its directory and instance in `metadata_bytes` (what fdinfo says of it); a first touch maps `prefault - 1` pages besides
/// its own (`prefaulted`), nothing with `huge`; no `no_huge_frame` without a shortage; the
/// close gives it all back but `instances_opened`.
fn stats_counters_move_as_promised() -> Check {
    let k = prefault()? as i64;
    let huge = unit()? == 512;
    let before = stats()?;
    let dev = io("open", Device::open())?;
    let meta = io("fdinfo", dev.fdinfo())?
        .metadata_bytes
        .ok_or("fdinfo has no metadata_bytes line")?;
    deltas(
        &before,
        &[
            ("instances", 1),
            ("instances_opened", 1),
            ("open_nomem", 0),
            ("metadata_bytes", meta as i64),
        ],
    )
    .map_err(|e| format!("after open: {e}"))?;
    let map = io("mmap", dev.map(64, 0, true))?;
    map.write(0, 0, 1);
    // The first touch of a page needs a leaf of the frame table: 4 KiB more metadata.
    let meta_touched = io("fdinfo", dev.fdinfo())?.metadata_bytes.unwrap_or(0);
    deltas(
        &before,
        &[
            ("prefaulted", if huge { 0 } else { k - 1 }),
            ("no_huge_frame", 0),
            ("metadata_bytes", meta_touched as i64),
        ],
    )
    .map_err(|e| format!("after the first touch: {e}"))?;
    ensure!(
        meta_touched == meta + 4096,
        "metadata_bytes {meta} -> {meta_touched} at the first touch, expected one 4 KiB leaf"
    );
    drop((map, dev));
    deltas(
        &before,
        &[
            ("instances", 0),
            ("instances_opened", 1),
            ("metadata_bytes", 0),
            ("frames_live", 0),
        ],
    )
    .map_err(|e| format!("after close: {e}"))
}

/// The histogram counts every call of the handlers, judged by the kernel's own count of the
/// faults: around each first touch, `/proc/self/stat` must count one minor fault, and the
/// histogram must grow by the calls that fault makes: one 4 KiB call, and with `huge` also
/// each PMD- (and PUD-) level call, which falls back here since the mapping's file offset
/// is not a multiple of 2 MiB. Each touch is in a 2 MiB range of its own, so each makes a
/// PMD-level call.
fn latency_histogram_counts_every_fault() -> Check {
    const TOUCHES: usize = 8;
    let dev = io("open", Device::open())?;
    let map = io(
        "mmap at pgoff 3",
        dev.map_aligned(TOUCHES * 512, 3, true, 2 << 20),
    )?;
    let sampler = io("open /proc/self/stat", sys::StatSampler::open())?;
    let (before, total0) = (stats()?, latency_total()?);
    let mut calls = 0;
    for i in 0..TOUCHES {
        let page = i * 512;
        calls += 1 + huge_calls_at(&dev, map.addr(page))? + retried_pmd_call()?;
        let minor = minor_faults_of(&sampler, || map.write(page, 0, 1))?;
        ensure!(
            minor == 1,
            "the kernel counted {minor} minor faults for the first touch of page {page}"
        );
    }
    // The `latency` switch says which calls are timed: all (1), none (0), or every Nth call
    // of each CPU's shard, whose counters start anywhere: within one per shard of calls / N.
    const SHARDS: i64 = 8;
    let total = (latency_total()? - total0) as i64;
    let (low, high) = match stat(&before, "latency")? as i64 {
        1 => (calls, calls),
        0 => (0, 0),
        n => ((calls / n - SHARDS).max(0), (calls + n - 1) / n + SHARDS),
    };
    ensure!(
        (low..=high).contains(&total),
        "the histogram grew by {total} for {TOUCHES} faults the kernel counted, which made \
         {calls} handler calls (latency={}: expected {low} to {high})",
        stat(&before, "latency")?
    );
    let huge_calls = calls - TOUCHES as i64;
    deltas(
        &before,
        &[
            ("faults", TOUCHES as i64),
            ("huge_faults", huge_calls),
            ("huge_fallbacks", huge_calls),
        ],
    )
}

/// A read of `frames` with over 100k rows (two instances of 50176 pages, or 98 frames of
/// 2 MiB each) while a child opens and closes the device, once a millisecond: an
/// open+close during the reads may take on average at most 4 times (plus 2 ms) what it took
/// just before them. If the render held the list of instances locked, the child's calls
/// would wait for most of it (hundreds of ms each). An average is used, not the slowest
/// call, since under TCG on a busy host any call may stall for a while; the baseline makes
/// it hold on the debug kernel too, where one open+close takes milliseconds. The child runs
/// until the reads are over, and is bounded.
fn long_frames_read_does_not_block_open() -> Check {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    use std::time::{Duration, Instant};
    const PAGES: usize = 98 * 512;
    const BASELINE: u64 = 20;
    let (a, b) = (io("open a", Device::open())?, io("open b", Device::open())?);
    let maps = [
        io("mmap a", a.map(PAGES, 0, true))?,
        io("mmap b", b.map(PAGES, 0, true))?,
    ];
    for map in &maps {
        io("MADV_POPULATE_WRITE", map.madvise(sys::MADV_POPULATE_WRITE))?;
    }
    // Words: 0 stop, 1 reading, 2 opens during the reads, 3 their ns in all, 4 the slowest
    // one's ns, 5 failures, 6 the baseline's ns in all, 7 baseline done.
    let shared = SharedWords::new(8)?;
    let open_close = || {
        let t = Instant::now();
        if Device::open().is_err() {
            shared.word(5).fetch_add(1, Relaxed);
        }
        t.elapsed().as_nanos() as u64
    };
    let opener = || {
        for _ in 0..BASELINE {
            shared.word(6).fetch_add(open_close(), Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
        shared.word(7).store(1, SeqCst);
        while shared.word(0).load(SeqCst) == 0 {
            let during = shared.word(1).load(SeqCst) == 1;
            let ns = open_close();
            if during && shared.word(0).load(SeqCst) == 0 {
                shared.word(2).fetch_add(1, Relaxed);
                shared.word(3).fetch_add(ns, Relaxed);
                shared.word(4).fetch_max(ns, Relaxed);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        0
    };
    // SAFETY: this process is single-threaded (the cases run one after another on the
    // main thread), so the child may do anything.
    let child = io("fork", unsafe { pfdemo::harness::fork(opener) })?;
    let ready = Instant::now() + Duration::from_secs(30);
    while shared.word(7).load(SeqCst) == 0 && Instant::now() < ready {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut reads = Vec::new();
    let mut rows = 0;
    shared.word(1).store(1, SeqCst);
    for _ in 0..3 {
        let t = Instant::now();
        let text = std::fs::read_to_string(sys::debugfs_path("frames"));
        reads.push(t.elapsed());
        rows = text.map(|t| t.lines().count() - 1).unwrap_or(0);
    }
    shared.word(0).store(1, SeqCst);
    let exit = io(
        "wait for the opener",
        child.wait_within(Duration::from_secs(30)),
    )?;
    drop(maps);
    ensure!(
        exit.is_some_and(|e| e.success()),
        "the opening child ended with {exit:?} (None: still running, killed)"
    );
    ensure!(
        rows >= 100_000,
        "frames had {rows} rows, expected 100k or more"
    );
    let (opens, failed) = (shared.word(2).load(SeqCst), shared.word(5).load(SeqCst));
    ensure!(
        opens > 0 && failed == 0,
        "{opens} opens during the reads, {failed} failed"
    );
    let base = Duration::from_nanos(shared.word(6).load(SeqCst) / BASELINE);
    let mean = Duration::from_nanos(shared.word(3).load(SeqCst) / opens);
    let slowest = Duration::from_nanos(shared.word(4).load(SeqCst));
    let bound = base * 4 + Duration::from_millis(2);
    ensure!(
        mean < bound,
        "an open+close took {mean:?} on average during the reads ({opens} of them, the \
         slowest {slowest:?}), {base:?} before them (the bound is {bound:?}), while frames \
         ({rows} rows) was read in {reads:?}: the opener waited behind the reads"
    );
    Ok(())
}

/// No output of the module carries a kernel pointer: debugfs files, fdinfo and its kernel log
/// lines (checked with frames live, so `frames` has rows).
fn no_kernel_pointers_in_any_output() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(8, 0, true))?;
    (0..8).for_each(|p| map.write(p, 0, 1));
    let mut texts = Vec::new();
    for f in sys::DEBUGFS_FILES {
        texts.push((
            f.to_string(),
            io(f, std::fs::read_to_string(sys::debugfs_path(f)))?,
        ));
    }
    texts.push((
        "fdinfo".into(),
        io(
            "fdinfo",
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", dev.fd())),
        )?,
    ));
    let log = io(
        "read /dev/kmsg",
        Kmsg::from_start().and_then(|mut k| k.read_new()),
    )?;
    let ours: Vec<String> = log
        .into_iter()
        .filter(|l| l.contains("rust_pagefault_demo"))
        .collect();
    ensure!(!ours.is_empty(), "no kernel log line of the module");
    texts.push(("kernel log".into(), ours.join("\n")));
    for (what, text) in &texts {
        let found = parse::kernel_pointers(text);
        ensure!(found.is_empty(), "{what} shows kernel pointers {found:x?}");
    }
    Ok(())
}
