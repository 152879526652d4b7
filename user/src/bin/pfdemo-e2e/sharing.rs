//! Who sees which frames: instances never share, `MAP_PRIVATE` copies on write, a forked
//! child shares its parent's frames, and threads racing on a first touch allocate one.

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
