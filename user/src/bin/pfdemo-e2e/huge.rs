//! 2 MiB frames (`huge=1`): one PMD-level fault where a whole frame fits an aligned shared
//! mapping, 4 KiB faults elsewhere; without `huge`, the same mappings take 4 KiB faults.

use crate::expect::*;

pub const CASES: &[Case] = &[
    (
        "2 MiB aligned mapping: one PMD fault with huge, 4 KiB faults without",
        aligned_mapping_uses_pmd_when_huge,
    ),
    (
        "PMD only where a whole frame fits in the mapping",
        pmd_only_where_a_whole_frame_fits,
    ),
];

/// A 2 MiB-aligned mapping: with `huge`, one PMD-level fault maps all 512 pages of a shared
/// mapping's frame, while a private mapping falls back to 4 KiB faults (copy on write needs
/// them); without `huge`, every page is its own 4 KiB fault.
fn aligned_mapping_uses_pmd_when_huge() -> Check {
    const TWO_MIB: usize = 2 << 20;
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    let before = stats()?;
    map.write(3, 0, 0x4242);
    let mut pm = io("pagemap", Pagemap::open())?;
    if huge {
        deltas(
            &before,
            &[("huge_faults", 1), ("faults", 0), ("frames_allocated", 512)],
        )?;
        let frames = io("frames", read_frames())?;
        for i in 0..512 {
            let pm_pfn =
                pagemap_pfn(&mut pm, map.addr(i))?.ok_or(format!("page {i} not present"))?;
            let row = frames
                .iter()
                .find(|r| r.instance == id && r.pgoff == i as u64);
            ensure!(
                row.map(|r| r.pfn) == Some(pm_pfn),
                "page {i}: pagemap {pm_pfn:#x}, frames {row:?}"
            );
        }
        ensure!(
            pm_pfn_absent(&mut pm, &map, 512)?,
            "the second 2 MiB was mapped too"
        );
    } else {
        let k = prefault()?;
        deltas(
            &before,
            &[
                ("huge_faults", 0),
                ("faults", 1),
                ("frames_allocated", allocs(3..3 + k)?),
            ],
        )?;
        ensure!(
            pm_pfn_absent(&mut pm, &map, 3 + k)?,
            "more than the prefault window was mapped"
        );
    }
    // A private mapping of the same frames: reads see the data, writes are private copies.
    let private = io(
        "mmap private aligned",
        dev.map_aligned(512, 0, false, TWO_MIB),
    )?;
    let before = stats()?;
    ensure!(
        private.read(3, 0) == 0x4242,
        "private mapping does not show the data"
    );
    private.write(3, 0, 0x5151);
    ensure!(
        map.read(3, 0) == 0x4242,
        "private write reached the instance frame"
    );
    // With map_pages=0 the 4 KiB fault after the fallback is retried under the mmap lock,
    // and the retry asks for a PMD again: a second fallback.
    let fallbacks = match (huge, stat(&before, "map_pages")?) {
        (false, _) => 0,
        (true, 0) => 2,
        (true, _) => 1,
    };
    deltas(
        &before,
        &[("huge_fallbacks", fallbacks), ("frames_allocated", 0)],
    )
}

/// Where one PMD cannot map a whole frame inside the mapping, every mode takes 4 KiB faults:
/// a 2 MiB-aligned mapping shorter than 2 MiB, and an aligned one whose file offset is not a
/// multiple of 2 MiB.
fn pmd_only_where_a_whole_frame_fits() -> Check {
    const TWO_MIB: usize = 2 << 20;
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let mut pm = io("pagemap", Pagemap::open())?;
    // The core asks a VMA with a `huge_fault` for a PMD (and, where the PUD entry is empty,
    // for a PUD) without checking that it fits: the module must, count every such call, and
    // send each one back to 4 KiB faults. How many calls the core makes is its business;
    // that all of them fell back, and that the MMU then finds 4 KiB PTEs, is ours.
    let short = io("mmap short", dev.map_aligned(256, 0, true, TWO_MIB))?;
    let before = stats()?;
    short.write(0, 0, 1);
    short.write(255, 0, 2);
    let faults = expected_faults([0, 255], 256)?;
    all_pmd_calls_fell_back(&before, huge, faults)?;
    only_ptes(&dev, &mut pm, &short, &[0, 255])?;
    // Aligned and long enough, but pgoff 3 does not start a frame.
    let skewed = io("mmap at pgoff 3", dev.map_aligned(1024, 3, true, TWO_MIB))?;
    let before = stats()?;
    skewed.write(0, 0, 3);
    all_pmd_calls_fell_back(&before, huge, 1)?;
    only_ptes(&dev, &mut pm, &skewed, &[0])?;
    ensure!(
        short.read(3, 0) == 3,
        "pgoff 3 is not shared between the two mappings"
    );
    Ok(())
}

/// Since `before`: `faults` 4 KiB faults, and every PMD-level call (at least one with `huge`,
/// none without) counted as a fallback.
fn all_pmd_calls_fell_back(before: &Stats, huge: bool, faults: i64) -> Check {
    let now = stats()?;
    let change = |name| now.change(before, name).map_err(|e| e.to_string());
    let (calls, fallbacks) = (change("huge_faults")?, change("huge_fallbacks")?);
    ensure!(
        calls == fallbacks && (calls > 0) == huge,
        "huge_faults moved by {calls}, huge_fallbacks by {fallbacks} (huge={huge}): every \
         PMD-level call must be counted and fall back"
    );
    deltas(before, &[("faults", faults)])
}

/// The walk of each of `pages` of `map` ends at a PTE leaf whose frame is pagemap's.
fn only_ptes(dev: &Device, pm: &mut Pagemap, map: &Mapping, pages: &[usize]) -> Check {
    for &page in pages {
        let walk = io("walk", pfdemo::walk::walk(dev.fd(), map.addr(page)))?;
        ensure!(
            walk.end() == pfdemo::walk::End::Leaf,
            "page {page}: the walk ends {:?}, not at a PTE leaf",
            walk.end()
        );
        ensure!(
            walk.frame_pfn() == pagemap_pfn(pm, map.addr(page))?,
            "page {page}: the walk's frame is not pagemap's"
        );
    }
    Ok(())
}
