//! Memory cgroups: who pays for what, judged by the kernel's own `memory.current`. Frames and
//! frame-table leaves are charged to the cgroup of the task that faults them in, an
//! instance and its directory to the opener's; a 2 MiB frame the cgroup cannot hold is
//! `SIGBUS`, at once; a 4 KiB frame it cannot hold is the memcg OOM killer's, as for
//! anonymous memory.
//!
//! The opener and the toucher are different tasks in different groups, so that charging the
//! wrong one fails. One case reloads the module with the largest `max_pages` (a 256 KiB
//! directory) and restores the base parameters after it.

use crate::expect::*;
use pfdemo::harness::{in_child_within, spawn_child, Memcg};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub const CASES: &[Case] = &[
    (
        "memcg: frames and leaves charged to the toucher, the directory to the opener",
        metadata_charged_to_opener_and_toucher,
    ),
    (
        "memcg: no 2 MiB frame within memory.max is SIGBUS, at once (huge)",
        no_huge_frame_is_sigbus,
    ),
    (
        "memcg: a 4 KiB frame beyond memory.max is the OOM killer's SIGKILL, bounded, \
         nothing kept, as for anonymous memory",
        frames_beyond_memory_max_are_oom_killed,
    ),
    (
        "memcg: with no task to kill, a 4 KiB fault beyond memory.max waits (VM_FAULT_OOM) \
         until the limit is raised, as for anonymous memory",
        fault_waits_when_no_task_can_be_killed,
    ),
];

/// The largest `max_pages`: its directory is 8 bytes per 512 pages, 256 KiB.
const MAX_PAGES: usize = 16 << 20;

/// Bytes of one frame-table leaf: 512 slots of 8 bytes.
const LEAF: u64 = 4096;

/// An opener in one cgroup, a toucher (a forked child) in another that touches one page in
/// every 512, the worst case for the frame table: each touch is a new leaf. The toucher's
/// `memory.current` must grow by its frames, its leaves and its page tables (one PTE table
/// per 2 MiB touched), and no less: a leaf left uncharged, or charged to the opener, fails.
/// The opener's group pays the instance and its directory at open; the module's
/// `metadata_bytes` (fdinfo and stats) moves by exactly the leaves.
fn metadata_charged_to_opener_and_toucher() -> Check {
    reload(&[&format!("max_pages={MAX_PAGES}")])?;
    let result = charged_where_they_belong();
    let restored = reload(&[]);
    result.and(restored)
}

fn charged_where_they_belong() -> Check {
    let huge = unit()? == 512;
    let opener = Memcg::create("rpd-e2e-opener")?;
    let toucher = Memcg::create("rpd-e2e-toucher")?;
    opener.join()?;
    let at_open = opener.current();
    let dev = Device::open();
    let opened = opener.current();
    opener.leave_and_remove();
    let (dev, at_open, opened) = (io("open", dev)?, at_open?, opened?);
    let info = io("fdinfo", dev.fdinfo())?;
    // The directory of the table that has slots: 4 KiB frames, or 2 MiB ones with huge.
    let slots = if huge { MAX_PAGES / 512 } else { MAX_PAGES };
    let directory = (slots.div_ceil(512) * 8) as u64;
    // Below a page, a charge may come out of a per-CPU stock charged earlier: only the
    // 256 KiB directory is sure to show.
    ensure!(
        huge || opened.saturating_sub(at_open) >= directory,
        "the opener's memory.current grew by {} bytes at open, the directory is {directory}",
        opened.saturating_sub(at_open)
    );
    // The toucher: one page in every 512, `touches` times: with 4 KiB frames, 512 leaves,
    // 2 MiB of them, far above the slack below.
    let touches = if huge { 16 } else { 512 };
    let map = io("mmap", dev.map(touches * 512, 0, true))?;
    let pages: Vec<usize> = (0..touches).map(|i| i * 512).collect();
    let (_, present) = fault_pattern(pages.iter().copied(), touches * 512)?;
    let frames = allocs((0..touches * 512).filter(|&p| present[p]))? as u64 * 4096;
    let leaves = if huge { 1 } else { touches as u64 };
    let tables = if huge { 0 } else { touches as u64 * 4096 };
    let want = frames + leaves * LEAF + tables;
    // memcg charges a group a batch of 64 pages at a time and keeps what the charge did
    // not need in a per-CPU stock, which later charges of up to 64 pages (a 4 KiB frame, a
    // leaf, a page table) take without moving memory.current: whatever the stocks of the
    // VM's two CPUs held at `start` goes uncounted, up to 2 x 64 pages. Seen: 63 and 19
    // pages short with 64 touches, which that hid. With huge, the one leaf hides in that
    // slack; the 512 leaves of 4 KiB frames do not.
    let low = want - 2 * 64 * 4096;
    // Above: the debug kernel's slab debugging pads each 4 KiB leaf to 8 KiB (red zones and
    // tracking), charged as such; a stock charged ahead at the end (64 pages), and the
    // child's own few pages.
    let before = stats()?;
    let status = in_child(|| {
        if toucher.join().is_err() {
            return 10;
        }
        let Ok(start) = toucher.current() else {
            return 11;
        };
        for &p in &pages {
            map.write(p, 0, p as u64 + 1);
        }
        let Ok(end) = toucher.current() else {
            return 11;
        };
        // Through the mapping, which the parent reads after the child has gone.
        map.write(0, 8, end.saturating_sub(start));
        0
    })?;
    let grown = map.read(0, 8);
    toucher.remove();
    ensure!(
        status == Ok(0),
        "toucher ended with {status:?} (10: join, 11: memory.current)"
    );
    ensure!(
        grown >= low && grown < want + leaves * LEAF + (512 << 10),
        "the toucher's memory.current grew by {grown} bytes for {touches} sparse touches; \
         expected {want} (frames {frames}, {leaves} leaves of {LEAF}, page tables {tables})"
    );
    // The module's own account: the directory and the instance at open, then the leaves.
    let at_start = info
        .metadata_bytes
        .ok_or("fdinfo has no metadata_bytes line")?;
    ensure!(
        at_start >= directory && at_start < directory + 4096,
        "metadata_bytes {at_start} at open, expected the directory's {directory} and the instance"
    );
    let after = io("fdinfo", dev.fdinfo())?.metadata_bytes.unwrap_or(0);
    let moved = after.saturating_sub(at_start);
    ensure!(
        moved == leaves * LEAF,
        "metadata_bytes moved by {moved}, expected {leaves} leaves of {LEAF} bytes"
    );
    deltas(&before, &[("metadata_bytes", moved as i64)])
}

/// With `huge`, a cgroup whose `memory.max` leaves less than 2 MiB of headroom cannot hold a
/// new frame: the first touch of it is `SIGBUS` (counted in `sigbus` and `no_huge_frame`),
/// not a fault retried forever: a child that does not end within the limit is killed and
/// fails the case. Both ways to a frame: a PMD fault (an aligned shared mapping) and a
/// 4 KiB fault of the huge instance (a private mapping). Without `huge`, there is nothing
/// to test here: a 4 KiB frame is an ordinary charge, and the memcg OOM killer acts.
fn no_huge_frame_is_sigbus() -> Check {
    if unit()? != 512 {
        return Ok(());
    }
    let limit = Duration::from_secs(30);
    let dev = io("open", Device::open())?;
    let shared = io("mmap aligned", dev.map_aligned(512, 0, true, 2 << 20))?;
    let private = io("mmap private", dev.map_aligned(512, 512, false, 2 << 20))?;
    let group = Memcg::create("rpd-e2e-tight")?;
    for (what, map) in [("a PMD fault", &shared), ("a 4 KiB fault", &private)] {
        let before = stats()?;
        let status = in_child_within(limit, || {
            let Ok(()) = group.join() else { return 10 };
            let Ok(now) = group.current() else { return 11 };
            let max = (now + (1 << 20)).next_multiple_of(4096).to_string();
            let Ok(()) = group.write("memory.max", &max) else {
                return 12;
            };
            map.read(3, 0);
            13
        })
        .map_err(|e| format!("{what}: {e} (the fault was retried instead of failing)"))?;
        ensure!(
            status == Err(libc::SIGBUS),
            "{what}: the child ended with {status:?}, expected SIGBUS \
             (10: join, 11: memory.current, 12: memory.max, 13: the touch worked)"
        );
        deltas(
            &before,
            &[
                ("sigbus", 1),
                ("no_huge_frame", 1),
                ("oom", 0),
                ("frames_allocated", 0),
            ],
        )
        .map_err(|e| format!("{what}: {e}"))?;
    }
    group.remove();
    Ok(())
}

/// `memory.max` of the group the OOM cases' children run in.
const TIGHT: u64 = 8 << 20;

/// Pages those children map and touch: four times what the group may hold.
const OOM_PAGES: usize = 4 * (TIGHT as usize / 4096);

/// How long a child may take: touching `TIGHT` bytes takes well under a second under TCG,
/// the debug kernel's OOM report a few more.
const OOM_LIMIT: Duration = Duration::from_secs(60);

/// What a group with no task left may still have charged to it: memcg's per-CPU stocks
/// keep up to 64 pages charged ahead on each CPU, and the slab objects freed after an RCU
/// grace period come back a little later.
const FALLEN_BACK: u64 = 1 << 20;

/// Bytes of the group's anonymous memory and direct kernel pages (where our frames are
/// charged) it may keep after its last task has gone: the statistics' per-CPU noise.
const STAT_SLACK: u64 = 64 << 10;

/// A 4 KiB frame is charged to the toucher's cgroup like the anonymous memory it stands in
/// for; when the group is at `memory.max` with nothing to reclaim (the VM has no swap), the
/// charge runs the memcg OOM killer, which kills the toucher; the allocation then fails,
/// the module returns `VM_FAULT_OOM` (counted in `oom`; with `prefault`, the failure may
/// be a neighbour's, which only ends the prefault) and the core lets the kill take the
/// task instead of retrying. A child in a group with `memory.max` 8 MiB maps 32 MiB and
/// touches it page by page: first anonymous memory, the kernel's own handler, then the
/// device. Each must end by `SIGKILL` within a bound, with the kernel's account of it
/// (`memory.events`' `oom_kill`, the OOM report naming the child in the kernel log, no
/// warning or bug beside it), and leave nothing behind (see [`nothing_kept`]). Both touch
/// about as many pages before the kill: the frames cost the group what anonymous memory
/// does. With `huge` the device's frames are 2 MiB, which `no_huge_frame_is_sigbus` covers;
/// the anonymous half still runs.
///
/// The kill comes from inside the charge, before the module sees the failed allocation:
/// what the module returns then does not decide the child's end (a `SIGBUS` would lose to
/// the pending `SIGKILL`). [`fault_waits_when_no_task_can_be_killed`] is where it does.
fn frames_beyond_memory_max_are_oom_killed() -> Check {
    no_swap()?;
    let anonymous = oom_killed(Touch::Anonymous)?;
    if unit()? == 512 {
        return Ok(());
    }
    let device = oom_killed(Touch::Device)?;
    // The child's own pages (stack, heap copies, page tables) are in both; the device's
    // instance and frame-table leaves are a few KiB more, and memcg's per-CPU stocks (up to
    // 64 pages charged ahead on each of the VM's CPUs) move the point of the kill a little.
    let apart = anonymous.abs_diff(device);
    ensure!(
        apart <= 128,
        "anonymous memory got {anonymous} pages before the kill, the device {device}: \
         the frames are not charged as anonymous memory is"
    );
    Ok(())
}

/// When the OOM killer has no task it may kill (the toucher is alone in its group, with
/// `oom_score_adj` -1000), a charge that fails is not the task's end. The module returns
/// `VM_FAULT_OOM`, the kernel finds no kill under way ("VM_FAULT_OOM leaked out to the #PF
/// handler. Retrying PF") and runs the fault again, and again, until the charge fits: once
/// the parent raises `memory.max`, the child touches the rest and exits. That is what
/// `VM_FAULT_OOM` means beyond "no memory": `SIGBUS`, or any other answer, would end the
/// child. Anonymous memory first, whose failed charge is `VM_FAULT_OOM` too, then the
/// device (not with `huge`, as above).
fn fault_waits_when_no_task_can_be_killed() -> Check {
    no_swap()?;
    waited(Touch::Anonymous)?;
    if unit()? == 512 {
        return Ok(());
    }
    waited(Touch::Device)
}

/// The OOM cases assume anonymous memory cannot be swapped out instead.
fn no_swap() -> Check {
    let swap = io("SwapTotal", sys::meminfo_kb("SwapTotal"))?;
    ensure!(
        swap == 0,
        "the VM has {swap} kB of swap: anonymous memory could be swapped out instead of \
         charged (run without swap, or set the group's memory.swap.max to 0)"
    );
    Ok(())
}

/// Which memory an OOM case's child touches.
#[derive(Clone, Copy, PartialEq)]
enum Touch {
    Anonymous,
    Device,
}

impl Touch {
    fn what(self) -> &'static str {
        match self {
            Touch::Anonymous => "anonymous memory",
            Touch::Device => "the device",
        }
    }
}

/// What an OOM case's child writes for its parent: its pid, the pages it has touched,
/// whether it is done, and the address of its mapping.
const PID: usize = 0;
const TOUCHED: usize = 1;
const DONE: usize = 2;
const BASE: usize = 3;

/// Whether the page after the `touched` pages of the child's mapping is the first of a page
/// table's 2 MiB. Its fault then charges the page table first, in the core (`do_pte_missing`
/// allocates it before it calls the handler): when that is the charge refused, the
/// `VM_FAULT_OOM` is the core's, and the module's `oom` rightly stays. With `prefault`, a
/// batch that would reach into such a range is cut short there the same way.
fn table_first(words: &SharedWords, touched: u64) -> bool {
    let base = words.word(BASE).load(Relaxed);
    (base + touched * 4096) % (2 << 20) == 0
}

/// Exit codes of [`toucher`] for what it could not do.
const TOUCHER_CODES: &str = "10: join, 11: open, 12: mmap, 13: oom_score_adj";

/// The child of an OOM case: joins `group`, maps [`OOM_PAGES`] pages (of an instance it
/// opens itself, so that the instance is charged there and closes when the child ends, or
/// anonymous memory) and writes each, telling the parent how far it got in `words`.
/// `unkillable`: with `oom_score_adj` -1000 first. Returns 0 once every page is written.
fn toucher(group: &Memcg, touch: Touch, words: &SharedWords, unkillable: bool) -> i32 {
    words
        .word(PID)
        .store(u64::from(std::process::id()), Relaxed);
    let code = (|| {
        if unkillable && std::fs::write("/proc/self/oom_score_adj", "-1000").is_err() {
            return 13;
        }
        if group.join().is_err() {
            return 10;
        }
        let dev = match (touch == Touch::Device).then(Device::open).transpose() {
            Ok(dev) => dev,
            Err(_) => return 11,
        };
        let map = match &dev {
            Some(dev) => dev.map(OOM_PAGES, 0, true),
            None => Mapping::anonymous_4k(OOM_PAGES),
        };
        let Ok(map) = map else { return 12 };
        words.word(BASE).store(map.addr(0) as u64, Relaxed);
        for p in 0..OOM_PAGES {
            map.write(p, 0, p as u64 + 1);
            words.word(TOUCHED).store(p as u64 + 1, Relaxed);
        }
        0
    })();
    words.word(DONE).store(1, Relaxed);
    code
}

/// The group of [`TIGHT`] bytes of an OOM case (one an earlier run left is fine: the
/// cases read its event counters as deltas).
fn tight_group() -> Result<Memcg, String> {
    let group = Memcg::create("rpd-e2e-oom")?;
    group.write("memory.max", &TIGHT.to_string())?;
    Ok(group)
}

/// Runs [`toucher`] until the OOM killer stops it; checks that it was that, and that
/// nothing stayed. Returns how many pages the child touched.
fn oom_killed(touch: Touch) -> Result<u64, String> {
    let group = tight_group()?;
    let result = oom_killed_in(&group, touch);
    group.remove();
    result.map_err(|e| format!("{}: {e}", touch.what()))
}

fn oom_killed_in(group: &Memcg, touch: Touch) -> Result<u64, String> {
    let kills = group.event("oom_kill")?;
    let before = stats()?;
    let words = SharedWords::new(4)?;
    let start = Instant::now();
    let (status, log) =
        kernel_log_of(|| in_child_within(OOM_LIMIT, || toucher(group, touch, &words, false)))?;
    let took = start.elapsed();
    let status =
        status.map_err(|e| format!("{e}: the fault was retried instead of the task killed"))?;
    let (pid, touched) = (
        words.word(PID).load(Relaxed),
        words.word(TOUCHED).load(Relaxed),
    );
    ensure!(
        status == Err(libc::SIGKILL),
        "the child ended with {status:?} after {touched} pages, expected SIGKILL by the OOM \
         killer ({TOUCHER_CODES}; 0: all {OOM_PAGES} pages touched within memory.max \
         {TIGHT}: they were not charged to the group)"
    );
    let killed = group.event("oom_kill")?.saturating_sub(kills);
    ensure!(
        killed >= 1,
        "the child was killed ({took:?}) but memory.events counts no oom_kill"
    );
    // The kernel's report: the child invoked the killer for a single page, in our group,
    // and was the victim; the core did not retry a leaked VM_FAULT_OOM.
    let invoked = log
        .iter()
        .any(|l| l.starts_with("pfdemo-e2e invoked oom-killer:") && l.contains("order=0,"));
    let context = format!(",oom_memcg={0},task_memcg={0},", group.name());
    let victim = format!(",task=pfdemo-e2e,pid={pid},");
    let chosen = log.iter().any(|l| {
        l.contains("constraint=CONSTRAINT_MEMCG") && l.contains(&context) && l.contains(&victim)
    });
    let kill = format!("Memory cgroup out of memory: Killed process {pid} (pfdemo-e2e)");
    let retried = log.iter().any(|l| l.contains("VM_FAULT_OOM leaked out"));
    ensure!(
        invoked && chosen && log.iter().any(|l| l.starts_with(&kill)) && !retried,
        "the kernel log lacks the memcg OOM report of child {pid} (invoked an order-0 kill: \
         {invoked}; victim in {context:?}: {chosen}; {kill:?}: absent; a leaked \
         VM_FAULT_OOM retried: {retried}): {log:?}"
    );
    let reports = kernel_reports(&log);
    ensure!(
        reports.is_empty(),
        "kernel reports beside the OOM kill: {reports:?}"
    );
    ensure!(
        touched * 4096 <= TIGHT && touched * 4096 >= TIGHT / 2,
        "the child touched {touched} pages before the kill, expected at most memory.max \
         ({} pages) and most of it",
        TIGHT / 4096
    );
    // One VM_FAULT_OOM, for the fault whose charge failed and killed the child. With
    // `prefault` the charge that fails may be a neighbour's: that ends the prefault, the
    // faulting page is mapped, and the kill takes the child as the fault returns. And the
    // charge may be the core's, of a page table (see `table_first`).
    let oom = stats()?.change(&before, "oom").map_err(|e| e.to_string())?;
    let want = match touch {
        Touch::Anonymous => 0..=0,
        Touch::Device if prefault()? > 1 || table_first(&words, touched) => 0..=1,
        Touch::Device => 1..=1,
    };
    ensure!(
        want.contains(&oom),
        "the module's oom moved by {oom}, expected {want:?}"
    );
    let frames = nothing_kept(group, &before, touch)?;
    ensure!(
        touch == Touch::Anonymous || (frames >= touched && frames * 4096 <= TIGHT),
        "{frames} frames allocated for {touched} pages touched within {TIGHT} bytes"
    );
    println!(
        "# {}: killed after {touched} pages in {:.2} s; oom_kill +{killed}, oom +{oom}",
        touch.what(),
        took.as_secs_f64()
    );
    Ok(touched)
}

/// Runs [`toucher`], unkillable, until its fault fails to charge and is retried; then
/// raises `memory.max` and checks that the child finished, and that nothing stayed.
fn waited(touch: Touch) -> Check {
    let group = tight_group()?;
    let result = waited_in(&group, touch);
    group.remove();
    result.map_err(|e| format!("{}: {e}", touch.what()))
}

fn waited_in(group: &Memcg, touch: Touch) -> Check {
    let (ooms, kills) = (group.event("oom")?, group.event("oom_kill")?);
    let before = stats()?;
    let words = SharedWords::new(4)?;
    let (status, stalled_at, retries, log) = {
        let mut kmsg = io("open /dev/kmsg", Kmsg::from_now())?;
        let child = spawn_child(|| toucher(group, touch, &words, true))?;
        // Each failed charge asks the killer, counted in memory.events' oom: a few of
        // them are the fault failing, retried and failing again.
        let deadline = Instant::now() + OOM_LIMIT;
        let done = || words.word(DONE).load(Relaxed) == 1;
        let mut retries = 0;
        while retries < 3 && !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            retries = group
                .event("oom")
                .map_or(retries, |n| n.saturating_sub(ooms));
        }
        let stalled_at = words.word(TOUCHED).load(Relaxed);
        let raised = group.write("memory.max", "max");
        let status = io("wait", child.wait_within(OOM_LIMIT))?;
        raised?;
        (
            status,
            stalled_at,
            retries,
            io("read /dev/kmsg", kmsg.read_new())?,
        )
    };
    let touched = words.word(TOUCHED).load(Relaxed);
    let status = status.map(|s| s.result());
    ensure!(
        status == Some(Ok(0)) && touched == OOM_PAGES as u64,
        "the child ended with {status:?} (None: still running after {OOM_LIMIT:?}) after \
         {touched} of {OOM_PAGES} pages, expected to finish once memory.max was raised \
         ({TOUCHER_CODES})"
    );
    ensure!(
        retries >= 3 && stalled_at * 4096 <= TIGHT && stalled_at * 4096 >= TIGHT / 2,
        "the child's charges failed {retries} times, at page {stalled_at}: expected it to \
         wait at memory.max ({} pages), its fault failing again and again",
        TIGHT / 4096
    );
    let killed = group.event("oom_kill")?.saturating_sub(kills);
    let nothing = log
        .iter()
        .any(|l| l.starts_with("Out of memory and no killable processes"));
    let again = log
        .iter()
        .any(|l| l.starts_with("Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF"));
    let reports = kernel_reports(&log);
    ensure!(
        killed == 0 && nothing && again && reports.is_empty(),
        "expected no kill (oom_kill +{killed}), the killer finding no task ({nothing}), the \
         fault retried ({again}) and no kernel report ({reports:?}): {log:?}"
    );
    let oom = stats()?.change(&before, "oom").map_err(|e| e.to_string())?;
    let core = table_first(&words, stalled_at);
    ensure!(
        match touch {
            Touch::Device => oom >= 1 || core,
            Touch::Anonymous => oom == 0,
        },
        "the module's oom moved by {oom} for {retries} failed charges at page {stalled_at}, \
         which does not start a page table's range"
    );
    let frames = nothing_kept(group, &before, touch)?;
    ensure!(
        touch == Touch::Anonymous || frames == OOM_PAGES as u64,
        "{frames} frames allocated for {OOM_PAGES} pages touched once each"
    );
    println!(
        "# {}: waited at page {stalled_at}, {retries} failed charges, oom +{oom}; \
         finished once memory.max was raised",
        touch.what()
    );
    Ok(())
}

/// After an OOM case's child has gone, nothing it had may stay: the module's instances and
/// frames are back where they were, and, judged by the group's own pages, its
/// `memory.current` falls back and its anonymous and direct kernel pages (where the frames
/// are charged) to nothing. Returns the frames the child got.
fn nothing_kept(group: &Memcg, before: &Stats, touch: Touch) -> Result<u64, String> {
    let now = stats()?;
    let moved = |name| now.change(before, name).map_err(|e| e.to_string());
    for name in ["instances", "frames_live"] {
        let got = moved(name)?;
        ensure!(
            got == 0,
            "the module's {name} moved by {got} once the child had gone"
        );
    }
    let frames = moved("frames_allocated")?;
    ensure!(
        touch == Touch::Device || frames == 0,
        "{frames} frames allocated for anonymous memory"
    );
    // Once the child's RCU-freed objects are gone too.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut current = group.current()?;
    while current > FALLEN_BACK && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        current = group.current()?;
    }
    ensure!(
        current <= FALLEN_BACK,
        "the group keeps {current} bytes in memory.current after its task has gone"
    );
    let kernel = group.direct_kernel_pages()?;
    let anon = group.stat("anon")?;
    ensure!(
        kernel <= STAT_SLACK && anon <= STAT_SLACK,
        "the group keeps {kernel} bytes of direct kernel pages (frames) and {anon} of \
         anonymous memory after its task has gone"
    );
    Ok(frames as u64)
}
