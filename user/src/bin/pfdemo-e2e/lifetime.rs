//! How long frames live: across `munmap` and a new `mmap`, and past a close that is not the
//! last; freed at the last close.

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
