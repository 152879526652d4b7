//! Memory cgroups: who pays for what, judged by the kernel's own `memory.current`. Frames and
//! frame-table leaves are charged to the cgroup of the task that faults them in, an
//! instance and its directory to the opener's; a 2 MiB frame the cgroup cannot hold is
//! `SIGBUS`, at once.
//!
//! The opener and the toucher are different tasks in different groups, so that charging the
//! wrong one fails. One case reloads the module with the largest `max_pages` (a 256 KiB
//! directory) and restores the base parameters after it.

use crate::expect::*;
use pfdemo::harness::{in_child_within, Memcg};
use std::time::Duration;

pub const CASES: &[Case] = &[
    (
        "memcg: frames and leaves charged to the toucher, the directory to the opener",
        metadata_charged_to_opener_and_toucher,
    ),
    (
        "memcg: no 2 MiB frame within memory.max is SIGBUS, at once (huge)",
        no_huge_frame_is_sigbus,
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
    // The toucher: one page in every 512, `touches` times.
    let touches = if huge { 16 } else { 64 };
    let map = io("mmap", dev.map(touches * 512, 0, true))?;
    let pages: Vec<usize> = (0..touches).map(|i| i * 512).collect();
    let (_, present) = fault_pattern(pages.iter().copied(), touches * 512)?;
    let frames = allocs((0..touches * 512).filter(|&p| present[p]))? as u64 * 4096;
    let leaves = if huge { 1 } else { touches as u64 };
    let tables = if huge { 0 } else { touches as u64 * 4096 };
    let want = frames + leaves * LEAF + tables;
    // A charge below a page may be paid from the per-CPU stock of bytes charged earlier
    // (the group's own reads of memory.current leave some): up to two pages of it. With
    // huge, the one leaf hides in that slack; the 64 leaves of 4 KiB frames do not.
    let low = want - 2 * 4096;
    // Above: the debug kernel's slab debugging pads each 4 KiB leaf to 8 KiB (red zones and
    // tracking), charged as such; and the child's own few pages.
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
        grown >= low && grown < want + leaves * LEAF + (256 << 10),
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
