//! Who sees which frames: instances never share, `MAP_PRIVATE` copies on write, a forked
//! child shares its parent's frames, and threads (of one process or of several) racing on a
//! first touch allocate one frame, which every racer maps.

use crate::expect::*;
use std::sync::{Arc, Barrier};

pub const CASES: &[Case] = &[
    (
        "separate instances never share frames",
        instances_never_share_frames,
    ),
    (
        "MAP_PRIVATE copies on write",
        private_mapping_copies_on_write,
    ),
    (
        "fork: a child's first touch is the parent's frame, allocated once",
        fork_children_share_frames,
    ),
    (
        "concurrent first touch allocates exactly one frame",
        concurrent_first_touch_allocates_once,
    ),
    (
        "threads in several processes race first touches: one frame, every racer maps it",
        processes_and_threads_race_on_one_instance,
    ),
];

fn instances_never_share_frames() -> Check {
    let (a, b) = (io("open a", Device::open())?, io("open b", Device::open())?);
    let (ia, ib) = (
        io("fdinfo", a.fdinfo())?.instance,
        io("fdinfo", b.fdinfo())?.instance,
    );
    ensure!(ia != ib, "two opens got the same instance id {ia}");
    let (ma, mb) = (
        io("mmap a", a.map(8, 0, true))?,
        io("mmap b", b.map(8, 0, true))?,
    );
    for i in 0..8 {
        ma.write(i, 0, 1);
        mb.write(i, 0, 2);
    }
    let mut pm = io("pagemap", Pagemap::open())?;
    for i in 0..8 {
        let (pa, pb) = (
            pagemap_pfn(&mut pm, ma.addr(i))?,
            pagemap_pfn(&mut pm, mb.addr(i))?,
        );
        ensure!(
            pa.is_some() && pa != pb,
            "pgoff {i}: both instances map pfn {pa:?}"
        );
        ensure!(
            ma.read(i, 0) == 1 && mb.read(i, 0) == 2,
            "instances see each other's data"
        );
    }
    Ok(())
}

fn private_mapping_copies_on_write() -> Check {
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let shared = io("mmap shared", dev.map(4, 0, true))?;
    for i in 0..4 {
        shared.write(i, 0, 0xaaaa);
    }
    let private = io("mmap private", dev.map(4, 0, false))?;
    let before = stats()?;
    ensure!(
        private.read(0, 0) == 0xaaaa,
        "private mapping does not show the instance data"
    );
    private.write(1, 0, 0xbbbb);
    ensure!(
        private.read(1, 0) == 0xbbbb,
        "private write not visible to the writer"
    );
    ensure!(
        shared.read(1, 0) == 0xaaaa,
        "private write reached the instance frame"
    );
    // Our handler maps the instance frames read-only (no new frame); the write's copy is the
    // kernel's own work (do_wp_page), after our fault if page 1 was not mapped yet.
    let faults = expected_faults([0, 1], 4)?;
    deltas(&before, &[("frames_allocated", 0), ("faults", faults)])?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let inst = frame_pfn(id, 1)?.ok_or("frames: pgoff 1 missing")?;
    let copy = pagemap_pfn(&mut pm, private.addr(1))?.ok_or("private page not present")?;
    ensure!(copy != inst, "private write did not get its own copy");
    let read_only = pagemap_pfn(&mut pm, private.addr(0))?;
    ensure!(
        read_only == frame_pfn(id, 0)?,
        "private read does not map the instance frame"
    );
    // Writes through the shared mapping after the copy are not seen by the private copy.
    shared.write(1, 0, 0xcccc);
    ensure!(
        private.read(1, 0) == 0xbbbb,
        "private copy changed under the writer"
    );
    Ok(())
}

fn fork_children_share_frames() -> Check {
    let (u, k) = (unit()?, prefault()?);
    // The child touches a page that the parent never touched and that no fault of the parent
    // mapped (beyond its prefault window), in a frame of its own (beyond the first 2 MiB with
    // huge frames).
    let child_page = u + 2 * k + 40;
    let pages = child_page + 8;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, true))?;
    for i in 0..8 {
        map.write(i, 0, 100 + i as u64);
    }
    let mut pm = io("pagemap", Pagemap::open())?;
    let parent_pfns: Vec<_> = (0..8)
        .map(|i| pagemap_pfn(&mut pm, map.addr(i)))
        .collect::<Result<_, _>>()?;
    ensure!(
        frame_pfn(id, child_page as u64)?.is_none(),
        "pgoff {child_page} has a frame before the child touched it"
    );
    let before = stats()?;
    let status = in_child(|| {
        let Ok(mut pm) = Pagemap::open() else {
            return 10;
        };
        for (i, parent_pfn) in parent_pfns.iter().enumerate() {
            if map.read(i, 0) != 100 + i as u64 {
                return 11;
            }
            if pm.entry(map.addr(i)).ok().and_then(|e| e.pfn) != *parent_pfn {
                return 12;
            }
        }
        map.write(3, 0, 0xc41d);
        if pm.entry(map.addr(child_page)).map_or(true, |e| e.present) {
            return 13;
        }
        map.write(child_page, 0, 0xc41d_0001);
        // Tell the parent which frame the child got, through the frame itself.
        match pm.entry(map.addr(child_page)).ok().and_then(|e| e.pfn) {
            Some(pfn) => map.write(child_page, 8, pfn),
            None => return 14,
        }
        0
    })?;
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (11: data, 12: pfn differs, 13: page present before its touch, 14: not present after)"
    );
    ensure!(
        map.read(3, 0) == 0xc41d,
        "parent does not see the child's write"
    );
    let allocated = allocs(child_page..(child_page + k).min(pages))?;
    deltas(&before, &[("frames_allocated", allocated), ("faults", 1)])
        .map_err(|e| format!("after the child's touch: {e}"))?;
    // The parent's own page table has no entry for that page: its access faults, and our
    // handler maps the frame the child's fault allocated, without allocating again.
    ensure!(
        pm_pfn_absent(&mut pm, &map, child_page)?,
        "pgoff {child_page} present in the parent before it touched it"
    );
    ensure!(
        map.read(child_page, 0) == 0xc41d_0001,
        "parent does not see the value the child wrote to pgoff {child_page}"
    );
    let child_pfn = map.read(child_page, 8);
    let parent_pfn = pagemap_pfn(&mut pm, map.addr(child_page))?;
    let listed = frame_pfn(id, child_page as u64)?;
    ensure!(
        parent_pfn == Some(child_pfn) && listed == Some(child_pfn),
        "pgoff {child_page}: child pfn {child_pfn:#x}, parent pagemap {parent_pfn:x?}, frames {listed:x?}"
    );
    deltas(&before, &[("frames_allocated", allocated), ("faults", 2)])
        .map_err(|e| format!("after the parent's access: {e}"))
}

fn concurrent_first_touch_allocates_once() -> Check {
    const ROUNDS: usize = 64;
    let threads = 4;
    let dev = io("open", Device::open())?;
    let map = Arc::new(io("mmap", dev.map(ROUNDS, 0, true))?);
    let before = stats()?;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (map, barrier) = (map.clone(), barrier.clone());
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    barrier.wait();
                    map.write(i, 8 * t, t as u64 + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")?;
    }
    deltas(
        &before,
        &[
            ("frames_allocated", allocs(0..ROUNDS)?),
            ("frames_live", allocs(0..ROUNDS)?),
        ],
    )?;
    for i in 0..ROUNDS {
        for t in 0..threads {
            ensure!(
                map.read(i, 8 * t) == t as u64 + 1,
                "page {i}: thread {t}'s write was lost"
            );
        }
    }
    Ok(())
}

/// Processes and their threads race the first touch of the same pages of one instance: each
/// process has page tables of its own (a fork copies none of an untouched mapping), so every
/// racer's touch is a fault of its own, released together by a barrier per page. Judged by
/// the kernel: each racer's pagemap entry for each page must be the frame that `frames`
/// lists, and only one frame per page was allocated while the handler ran more often than
/// there are pages (so the racers did meet). A loser that mapped the frame it allocated and
/// then lost with would show a PFN that `frames` does not list.
fn processes_and_threads_race_on_one_instance() -> Check {
    // The lost-race path must have run: a loser gives its frame back, counted in
    // `frames_discarded`. Racers meet on two vCPUs only by chance, so a round that saw no
    // loser is run again, a few times at most.
    const ROUNDS: usize = 16;
    for round in 1..=ROUNDS {
        let before = stats()?;
        race_round()?;
        let discarded = stats()?.delta(&before, "frames_discarded");
        if discarded > 0 {
            return Ok(());
        }
        eprintln!("# race round {round}: no loser yet");
    }
    Err(format!(
        "in {ROUNDS} rounds no racer lost a first touch (frames_discarded +0): the race \
         path never ran"
    ))
}

/// One round of [`processes_and_threads_race_on_one_instance`], on an instance of its own.
fn race_round() -> Check {
    use std::sync::atomic::Ordering::SeqCst;
    const PROCS: usize = 3;
    const THREADS: usize = 2;
    const RACERS: usize = PROCS * THREADS;
    const PAGES: usize = 32;
    // A page of a frame of its own each (with huge frames), beyond the prefault window of
    // the one before: every round is a first touch.
    let stride = unit()?.max(prefault()?);
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(PAGES * stride, 0, true))?;
    // Word 0: arrivals at the barrier; then one PFN per racer and page.
    let shared = SharedWords::new(1 + RACERS * PAGES)?;
    let before = stats()?;
    let racer = |r: usize| {
        let Ok(mut pm) = Pagemap::open() else {
            return;
        };
        for i in 0..PAGES {
            // Everyone arrives, then everyone touches page i at once.
            shared.word(0).fetch_add(1, SeqCst);
            while shared.word(0).load(SeqCst) < ((i + 1) * RACERS) as u64 {
                std::thread::yield_now();
            }
            map.write(i * stride, 8 * r, r as u64 + 1);
            let pfn = pm.entry(map.addr(i * stride)).ok().and_then(|e| e.pfn);
            shared
                .word(1 + r * PAGES + i)
                .store(pfn.unwrap_or(0), SeqCst);
        }
    };
    let mut children = Vec::new();
    for p in 0..PROCS {
        let body = || {
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    s.spawn(move || racer(p * THREADS + t));
                }
            });
            0
        };
        // SAFETY: this process is single-threaded (the forks come before any thread of the
        // case), so each child may start threads.
        children.push(io("fork", unsafe { pfdemo::harness::fork(body) })?);
    }
    for child in children {
        let exit = io(
            "wait",
            child.wait_within(std::time::Duration::from_secs(60)),
        )?;
        ensure!(
            exit.is_some_and(|e| e.success()),
            "a racing process ended with {exit:?} (None: still running after 60 s, killed)"
        );
    }
    let frames: std::collections::BTreeMap<u64, u64> = io("frames", read_frames())?
        .into_iter()
        .filter(|r| r.instance == id)
        .map(|r| (r.pgoff, r.pfn))
        .collect();
    for i in 0..PAGES {
        let pgoff = (i * stride) as u64;
        let listed = frames.get(&pgoff).copied();
        for r in 0..RACERS {
            let seen = shared.word(1 + r * PAGES + i).load(SeqCst);
            ensure!(
                listed == Some(seen),
                "page {pgoff}: racer {r} maps pfn {seen:#x}, frames lists {listed:x?}"
            );
            ensure!(
                map.read(i * stride, 8 * r) == r as u64 + 1,
                "page {pgoff}: racer {r}'s write was lost"
            );
        }
    }
    let now = stats()?;
    let faults = now.delta(&before, "faults") + now.delta(&before, "huge_faults");
    // Each touch maps its page and the prefault window after it.
    let k = prefault()?;
    let pages = allocs((0..PAGES).flat_map(|i| i * stride..i * stride + k))?;
    ensure!(
        faults > PAGES as i64,
        "the handlers ran {faults} times for {PAGES} pages: the racers never met"
    );
    deltas(
        &before,
        &[("frames_allocated", pages), ("frames_live", pages)],
    )
}
