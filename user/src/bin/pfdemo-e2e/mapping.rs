//! Mapping and the first touch: `mmap` allocates nothing, the first touch of a page is one
//! fault and one zeroed frame, and every frame `frames` lists is the one pagemap shows.

use crate::expect::*;

pub const CASES: &[Case] = &[
    ("mmap allocates nothing", mmap_allocates_nothing),
    (
        "first touch: one fault, one frame, PFN equals pagemap",
        first_touch_faults_once_and_pfn_matches,
    ),
    (
        "every touched page: frames PFN equals pagemap PFN",
        every_touched_page_matches_pagemap,
    ),
    ("fresh frames are zero-filled", fresh_frames_are_zero),
];

fn mmap_allocates_nothing() -> Check {
    let dev = io("open", Device::open())?;
    let before = stats()?;
    let map = io("mmap", dev.map(64, 0, true))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    for i in 0..map.pages() {
        ensure!(
            !io("pagemap", pm.entry(map.addr(i)))?.present,
            "page {i} present before any touch"
        );
    }
    deltas(
        &before,
        &[("faults", 0), ("frames_allocated", 0), ("frames_live", 0)],
    )?;
    ensure!(
        io("fdinfo", dev.fdinfo())?.frames == 0,
        "fdinfo counts frames before any touch"
    );
    Ok(())
}

fn first_touch_faults_once_and_pfn_matches() -> Check {
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(1, 0, true))?;
    let before = stats()?;
    map.write(0, 0, 0xfeed);
    deltas(
        &before,
        &[
            ("faults", 1),
            ("write_faults", 1),
            ("read_faults", 0),
            ("frames_allocated", allocs([0])?),
            ("frames_live", allocs([0])?),
        ],
    )?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let pm_pfn =
        pagemap_pfn(&mut pm, map.addr(0))?.ok_or("pagemap: page not present after touch")?;
    let fr_pfn = frame_pfn(id, 0)?.ok_or("frames: no row for the touched page")?;
    ensure!(
        pm_pfn == fr_pfn,
        "frames says pfn {fr_pfn:#x}, pagemap says {pm_pfn:#x}"
    );
    // The second access is a plain memory access: no fault.
    let before = stats()?;
    ensure!(map.read(0, 0) == 0xfeed, "value did not read back");
    deltas(&before, &[("faults", 0)])
}

fn every_touched_page_matches_pagemap() -> Check {
    const N: usize = 256;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(N, 0, true))?;
    let before = stats()?;
    for i in (0..N).step_by(2) {
        map.write(i, 8, i as u64);
    }
    for i in (1..N).step_by(2) {
        let _ = map.read(i, 0);
    }
    let faults = expected_faults((0..N).step_by(2).chain((1..N).step_by(2)), N)?;
    if prefault()? == 1 {
        deltas(
            &before,
            &[
                ("write_faults", N as i64 / 2),
                ("read_faults", N as i64 / 2),
            ],
        )?;
    }
    deltas(
        &before,
        &[("faults", faults), ("frames_allocated", allocs(0..N)?)],
    )?;
    let frames = io("frames", read_frames())?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let mut seen = std::collections::HashSet::new();
    for i in 0..N {
        let fr = frames
            .iter()
            .find(|r| r.instance == id && r.pgoff == i as u64)
            .ok_or(format!("frames: pgoff {i} missing"))?;
        let pm_pfn =
            pagemap_pfn(&mut pm, map.addr(i))?.ok_or(format!("pagemap: page {i} not present"))?;
        ensure!(
            fr.pfn == pm_pfn,
            "pgoff {i}: frames {:#x} != pagemap {pm_pfn:#x}",
            fr.pfn
        );
        ensure!(seen.insert(pm_pfn), "pfn {pm_pfn:#x} used twice");
    }
    ensure!(
        io("fdinfo", dev.fdinfo())?.frames as i64 == allocs(0..N)?,
        "fdinfo frame count"
    );
    Ok(())
}

fn fresh_frames_are_zero() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(128, 0, true))?;
    for i in 0..map.pages() {
        ensure!(map.page_is_zero(i), "page {i} is not zero-filled");
    }
    Ok(())
}
