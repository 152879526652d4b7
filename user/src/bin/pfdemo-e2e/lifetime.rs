//! How long frames live: across `munmap` and a new `mmap`, past a close that is not the last,
//! and past the close of the file while a mapping of it remains (the VMA holds the file);
//! freed at the last close. And a prefault over pages that are mapped already.

use crate::expect::*;

pub const CASES: &[Case] = &[
    (
        "data persists across munmap and mmap",
        data_persists_across_remap,
    ),
    (
        "frames survive munmap and a non-last close, freed at the last close",
        frames_freed_at_last_close,
    ),
    (
        "a mapping outlives its closed file: faults work, the frames go with the mapping",
        mapping_touched_after_close,
    ),
    (
        "prefault skips the pages already mapped and maps the ones after them",
        prefault_skips_mapped_pages,
    ),
];

fn data_persists_across_remap() -> Check {
    const N: usize = 32;
    let dev = io("open", Device::open())?;
    {
        let map = io("mmap", dev.map(N, 0, true))?;
        for i in 0..N {
            map.write(i, 0, 0xabc0 + i as u64);
        }
    }
    let before = stats()?;
    let map = io("mmap again", dev.map(N, 0, true))?;
    for i in 0..N {
        ensure!(
            map.read(i, 0) == 0xabc0 + i as u64,
            "page {i} lost its data"
        );
    }
    let faults = expected_faults(0..N, N)?;
    deltas(
        &before,
        &[
            ("faults", faults),
            ("frames_allocated", 0),
            ("frames_freed", 0),
        ],
    )?;
    // A mapping at an offset sees the same frames shifted.
    let off = io("mmap at offset", dev.map(4, 8, true))?;
    ensure!(
        off.read(0, 0) == 0xabc8,
        "offset mapping does not show pgoff 8"
    );
    Ok(())
}

fn frames_freed_at_last_close() -> Check {
    let before = stats()?;
    let n = allocs(0..20)?;
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(20, 0, true))?;
    for i in 0..20 {
        map.write(i, 0, 7);
    }
    drop(map);
    // Frames survive munmap while the file is open.
    deltas(
        &before,
        &[
            ("frames_allocated", n),
            ("frames_freed", 0),
            ("frames_live", n),
            ("instances", 1),
        ],
    )?;
    // A second descriptor of the same open file: closing the first is not the last close.
    // SAFETY: duplicating a descriptor we own; the copy is closed below.
    let second = unsafe { libc::dup(dev.fd()) };
    ensure!(second >= 0, "dup failed");
    drop(dev);
    let after_first = deltas(
        &before,
        &[("frames_freed", 0), ("frames_live", n), ("instances", 1)],
    );
    // SAFETY: closing the duplicate we made; nothing else uses it.
    unsafe { libc::close(second) };
    after_first.map_err(|e| format!("after closing one of two descriptors: {e}"))?;
    deltas(
        &before,
        &[
            ("frames_allocated", n),
            ("frames_freed", n),
            ("frames_live", 0),
            ("instances", 0),
        ],
    )
    .map_err(|e| format!("after the last close: {e}"))?;
    let s = stats()?;
    ensure!(
        stat(&s, "frames_allocated")? - stat(&s, "frames_freed")? == stat(&s, "frames_live")?,
        "allocated - freed != live"
    );
    Ok(())
}

/// The file is closed while a mapping of it remains: the VMA holds the file, so the instance
/// lives on (the proof in `mmap` rests on this; on the debug kernel KASAN watches it). First
/// touches after the close still allocate and map frames, which pagemap and `frames` agree
/// on; the last `munmap` is then the last reference, and frees them all.
fn mapping_touched_after_close() -> Check {
    let before = stats()?;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(16, 0, true))?;
    map.write(0, 0, 0xc105_e000);
    drop(dev);
    deltas(&before, &[("instances", 1)]).map_err(|e| format!("after close: {e}"))?;
    for p in [0, 5, 15] {
        map.write(p, 8, 0xc105_e000 + p as u64);
    }
    let mut pm = io("pagemap", Pagemap::open())?;
    for p in [0, 5, 15] {
        let mapped = pagemap_pfn(&mut pm, map.addr(p))?;
        ensure!(
            mapped.is_some() && mapped == frame_pfn(id, p as u64)?,
            "page {p} after close: pagemap {mapped:x?}, frames {:x?}",
            frame_pfn(id, p as u64)?
        );
        ensure!(
            map.read(p, 8) == 0xc105_e000 + p as u64,
            "page {p} lost its data"
        );
    }
    ensure!(map.read(0, 0) == 0xc105_e000, "page 0 lost its data");
    let live = stat(&stats()?, "frames_live")? - stat(&before, "frames_live")?;
    drop(map);
    deltas(
        &before,
        &[
            ("instances", 0),
            ("frames_live", 0),
            ("frames_freed", live as i64),
        ],
    )
    .map_err(|e| format!("after the munmap: {e}"))
}

/// With `prefault` = k > 1, a fault maps its page and the k - 1 after it in batches, skipping
/// those already mapped (`EBUSY`) and going on past them. Page 5 is left mapped alone (its
/// neighbours' entries dropped by `MADV_DONTNEED`, their frames kept); a touch of page 0 must
/// then map 1..=4 and 6..k - 1 (`prefaulted` + k - 2), allocate only pages 0..=4, and leave
/// pagemap showing exactly pages 0..k - 1 on the frames `frames` lists. Without prefault
/// (or with `huge`), nothing is batched: the case checks that page 0 faults alone.
fn prefault_skips_mapped_pages() -> Check {
    let k = prefault()?;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let pages = 2 * k + 8;
    let map = io("mmap", dev.map(pages, 0, true))?;
    if k == 1 || unit()? != 1 {
        let before = stats()?;
        map.write(0, 0, 1);
        return deltas(&before, &[("faults", 1), ("prefaulted", 0)]);
    }
    map.write(5, 0, 5);
    // Drop the entries of the pages after 5 that its fault mapped; their frames stay.
    // SAFETY: the range lies inside our own mapping; the pages are the instance's (shared),
    // so MADV_DONTNEED only drops page-table entries.
    let r = unsafe {
        libc::madvise(
            map.addr(6) as *mut libc::c_void,
            (pages - 6) * page_size(),
            libc::MADV_DONTNEED,
        )
    };
    ensure!(r == 0, "MADV_DONTNEED: {}", std::io::Error::last_os_error());
    let mut pm = io("pagemap", Pagemap::open())?;
    ensure!(
        !pm_pfn_absent(&mut pm, &map, 5)? && pm_pfn_absent(&mut pm, &map, 6)?,
        "page 5 should be mapped alone before the touch of page 0"
    );
    let before = stats()?;
    map.write(0, 0, 1);
    deltas(
        &before,
        &[
            ("faults", 1),
            ("prefaulted", k as i64 - 2),
            ("frames_allocated", 5),
        ],
    )?;
    for p in 0..pages {
        let mapped = pagemap_pfn(&mut pm, map.addr(p))?;
        if p < k {
            let listed = frame_pfn(id, p as u64)?;
            ensure!(
                mapped.is_some() && mapped == listed,
                "page {p}: pagemap {mapped:x?}, frames {listed:x?}"
            );
        } else {
            ensure!(mapped.is_none(), "page {p} mapped past the prefault window");
        }
    }
    ensure!(map.read(5, 0) == 5, "page 5 lost its data");
    Ok(())
}
