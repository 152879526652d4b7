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
    (
        "a first touch is one handler call under the per-VMA lock, never retried",
        first_touch_is_not_retried_under_the_mmap_lock,
    ),
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

/// The `map_pages` claim: its presence tells 7.3's `vmf_can_call_fault` that our `fault` needs
/// no mmap lock, so a first touch is handled under the VMA's own lock, once. Judged by the
/// kernel's counts (`/proc/vmstat`'s `vma_lock_*`, CONFIG_PER_VMA_LOCK_STATS): first reads
/// and writes of fresh pages are VMA-locked faults (`vma_lock_success`) and none is retried
/// under the mmap lock (`vma_lock_retry`), each one minor fault and one handler call.
/// Without `map_pages`, every one of them would be a retry.
fn first_touch_is_not_retried_under_the_mmap_lock() -> Check {
    const TOUCHES: usize = 16;
    let vmstat = || -> Result<std::collections::BTreeMap<String, u64>, String> {
        let text = io("/proc/vmstat", std::fs::read_to_string("/proc/vmstat"))?;
        let counts: std::collections::BTreeMap<String, u64> = text
            .lines()
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .filter(|(name, _)| name.starts_with("vma_lock_"))
            .collect();
        Ok(counts)
    };
    // The project's kernels count VMA-lock retries (CONFIG_PER_VMA_LOCK_STATS, in
    // qemu/kernel.config); Debian's stock kernel does not, so there only the handler calls
    // and the kernel's minor faults are checked, and the output says so.
    let counted = vmstat()?.contains_key("vma_lock_retry");
    let debian = std::fs::read_to_string("/proc/cmdline")
        .map(|c| c.split_whitespace().any(|w| w == "rpd.flavour=debian"))
        .unwrap_or(false);
    ensure!(
        counted || debian,
        "/proc/vmstat has no vma_lock_retry/vma_lock_success: the kernel needs \
         CONFIG_PER_VMA_LOCK_STATS (qemu/kernel.config)"
    );
    if !counted {
        println!(
            "# Debian's kernel has no CONFIG_PER_VMA_LOCK_STATS: VMA-lock retries not counted"
        );
    }
    let dev = io("open", Device::open())?;
    let k = prefault()?;
    // One touch every `k` pages (and every 512 with huge frames, a frame each), so that each
    // touch is a first touch and nothing else maps it.
    let stride = k.max(unit()?);
    let map = io("mmap", dev.map(TOUCHES * stride, 0, true))?;
    let sampler = io("open /proc/self/stat", sys::StatSampler::open())?;
    let before = stats()?;
    let v0 = vmstat()?;
    let mut minor = 0;
    for i in 0..TOUCHES {
        let page = i * stride;
        minor += if i % 2 == 0 {
            minor_faults_of(&sampler, || map.write(page, 0, 1))?
        } else {
            minor_faults_of(&sampler, || {
                map.read(page, 0);
            })?
        };
    }
    let v1 = vmstat()?;
    let moved = |name: &str| v1.get(name).unwrap_or(&0) - v0.get(name).unwrap_or(&0);
    // The claim is the `map_pages` hook's; with the hook switched off (`map_pages=0`) the
    // kernel must show the opposite: every first touch refused under the VMA lock, retried.
    if counted {
        if stat(&before, "map_pages")? == 1 {
            ensure!(
                moved("vma_lock_retry") == 0 && moved("vma_lock_success") >= TOUCHES as u64,
                "{TOUCHES} first touches: vma_lock_success +{}, vma_lock_retry +{} (expected \
                 +{TOUCHES} or more, +0)",
                moved("vma_lock_success"),
                moved("vma_lock_retry")
            );
        } else {
            ensure!(
                moved("vma_lock_retry") >= TOUCHES as u64,
                "map_pages=0: {TOUCHES} first touches, vma_lock_retry +{} (expected +{TOUCHES} or \
                 more: each refused under the VMA lock)",
                moved("vma_lock_retry")
            );
        }
    }
    ensure!(
        minor == TOUCHES as u64,
        "the kernel counted {minor} minor faults for {TOUCHES} first touches"
    );
    let now = stats()?;
    let calls = now.delta(&before, "faults") + now.delta(&before, "huge_faults")
        - now.delta(&before, "huge_fallbacks");
    ensure!(
        calls == TOUCHES as i64,
        "{calls} handler calls that mapped something, for {TOUCHES} first touches"
    );
    Ok(())
}
