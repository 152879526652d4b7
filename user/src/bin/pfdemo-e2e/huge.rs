//! 2 MiB frames (`huge=1`): one PMD-level fault where a whole frame fits an aligned shared
//! mapping at its file offset, 4 KiB faults elsewhere and wherever THP is turned off; every
//! call of the PMD-level handler counted; and what get_user_pages (`/proc/self/mem`,
//! `process_vm_readv`, `MADV_POPULATE_*`) does with each kind of mapping. Without `huge`,
//! the same mappings take 4 KiB faults.
//!
//! The decision is judged by the kernel's page tables (the module's walk of this process,
//! `RPD_IOC_WALK`): pagemap cannot tell a PMD leaf, and smaps' `FilePmdMapped` skips the
//! special PMDs the module maps.

use crate::expect::*;

const TWO_MIB: usize = 2 << 20;

pub const CASES: &[Case] = &[
    (
        "2 MiB aligned mapping: one PMD fault with huge, 4 KiB faults without",
        aligned_mapping_uses_pmd_when_huge,
    ),
    (
        "PMD only where a whole frame fits, at its file offset; every PMD call counted",
        pmd_only_where_a_whole_frame_fits,
    ),
    (
        "a read, then writes, on a PMD-mapped range",
        read_then_write_on_a_pmd_mapping,
    ),
    (
        "PR_SET_THP_DISABLE and MADV_NOHUGEPAGE turn huge into 4 KiB faults",
        thp_settings_turn_huge_into_4k_faults,
    ),
    (
        "get_user_pages reaches every mapping: /proc/self/mem, process_vm_readv, MADV_POPULATE",
        gup_reaches_every_mapping,
    ),
    (
        "soft-dirty tracking: a write after clear_refs keeps the frame and its leaf",
        soft_dirty_write_keeps_the_leaf,
    ),
];

/// A 2 MiB-aligned mapping: with `huge`, one PMD-level fault maps all 512 pages of a shared
/// mapping's frame (the walk ends at a PMD leaf), while a private mapping falls back to 4 KiB
/// faults (copy on write needs them); without `huge`, every page is its own 4 KiB fault.
fn aligned_mapping_uses_pmd_when_huge() -> Check {
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    let calls = huge_calls_at(&dev, map.addr(3))?;
    let before = stats()?;
    map.write(3, 0, 0x4242);
    let mut pm = io("pagemap", Pagemap::open())?;
    if huge {
        deltas(
            &before,
            &[
                ("huge_faults", calls),
                ("huge_fallbacks", calls - 1),
                ("faults", 0),
                ("frames_allocated", 512),
            ],
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
        let (end, pfn) = mapped_as(&dev, map.addr(3))?;
        ensure!(
            end == End::HugePmd && pfn == frame_pfn(id, 3)?,
            "page 3: the walk ends at {end:?} (pfn {pfn:x?}), expected a PMD leaf on the frame"
        );
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
            mapped_as(&dev, map.addr(3))?.0 == End::Leaf,
            "a 4 KiB fault did not end at a PTE"
        );
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
    let calls = huge_calls_at(&dev, private.addr(3))? + retried_pmd_call()?;
    let before = stats()?;
    ensure!(
        private.read(3, 0) == 0x4242,
        "private mapping does not show the data"
    );
    ensure!(
        mapped_as(&dev, private.addr(3))?.0 == End::Leaf,
        "a private mapping got a PMD leaf"
    );
    private.write(3, 0, 0x5151);
    ensure!(
        map.read(3, 0) == 0x4242,
        "private write reached the instance frame"
    );
    deltas(
        &before,
        &[
            ("huge_faults", calls),
            ("huge_fallbacks", calls),
            ("frames_allocated", 0),
        ],
    )
}

/// Touches page `page` of `map` for the first time and checks how the kernel mapped it: a
/// PMD leaf on the instance's frame for `pgoff` when `pmd`, else a PTE; every call of the
/// PMD-level handler counted, all of them fallbacks unless a PMD was mapped.
fn first_touch_maps(dev: &Device, map: &Mapping, page: usize, pgoff: u64, pmd: bool) -> Check {
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let retried = if pmd { 0 } else { retried_pmd_call()? };
    let calls = huge_calls_at(dev, map.addr(page))? + retried;
    let before = stats()?;
    map.write(page, 0, 0xf11e_0000 + pgoff);
    let (end, pfn) = mapped_as(dev, map.addr(page))?;
    let want = if pmd { End::HugePmd } else { End::Leaf };
    ensure!(
        end == want,
        "page {page} (pgoff {pgoff}): the walk ends at {end:?}, expected {want:?}"
    );
    let listed = frame_pfn(id, pgoff)?;
    ensure!(
        pfn.is_some() && pfn == listed,
        "page {page}: the MMU maps pfn {pfn:x?}, frames lists {listed:x?} for pgoff {pgoff}"
    );
    let pmds = i64::from(pmd);
    deltas(
        &before,
        &[
            ("huge_faults", calls),
            ("huge_fallbacks", calls - pmds),
            ("faults", 1 - pmds),
        ],
    )
    .map_err(|e| format!("page {page} (pgoff {pgoff}): {e}"))
}

/// Where one PMD cannot map a whole frame inside the mapping, every mode takes 4 KiB faults:
/// a 2 MiB-aligned mapping shorter than 2 MiB, an aligned one whose file offset is not a
/// multiple of 2 MiB, and the first 2 MiB range of a mapping that starts in its middle. With
/// `huge`, each of those first touches still calls the PMD-level handler once, which falls
/// back (counted in `huge_faults` and `huge_fallbacks`). Where a frame does fit at a file
/// offset other than 0 (pgoff 512), the PMD maps the frame of that offset, not the VMA's
/// first one.
fn pmd_only_where_a_whole_frame_fits() -> Check {
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let short = io("mmap short", dev.map_aligned(256, 0, true, TWO_MIB))?;
    first_touch_maps(&dev, &short, 0, 0, false).map_err(|e| format!("short mapping: {e}"))?;
    let skewed = io("mmap at pgoff 3", dev.map_aligned(1024, 3, true, TWO_MIB))?;
    first_touch_maps(&dev, &skewed, 0, 3, false).map_err(|e| format!("at pgoff 3: {e}"))?;
    ensure!(
        short.read(3, 0) == 0xf11e_0003,
        "pgoff 3 is not shared between the two mappings"
    );
    // Aligned, at file offset 2 MiB: the PMD must map frame 1 (pgoff 512..1023).
    let second = io(
        "mmap at pgoff 512",
        dev.map_aligned(512, 512, true, TWO_MIB),
    )?;
    first_touch_maps(&dev, &second, 5, 517, huge).map_err(|e| format!("at pgoff 512: {e}"))?;
    // Starting 1 MiB into a 2 MiB range (VA and file offset agree modulo 2 MiB): the first
    // range reaches before the mapping's start, the second one fits.
    let mid = io(
        "mmap from the middle of a 2 MiB range",
        dev.map_skewed(768, 1280, true, TWO_MIB, 256),
    )?;
    first_touch_maps(&dev, &mid, 0, 1280, false).map_err(|e| format!("mid-frame start: {e}"))?;
    first_touch_maps(&dev, &mid, 256 + 7, 1536 + 7, huge)
        .map_err(|e| format!("after a mid-frame start: {e}"))?;
    Ok(())
}

/// A read maps the frame (a PMD leaf with `huge`), and a write after it through the same
/// mapping lands in that frame without a new one: the PMD was inserted with the mapping's
/// own protection (writable for a shared writable mapping), not only "for a write". After
/// `mprotect` made a read-only view writable, a write through it splits (or upgrades) the
/// read-only leaf; the frame stays the same either way.
fn read_then_write_on_a_pmd_mapping() -> Check {
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap aligned", dev.map_aligned(512, 0, true, TWO_MIB))?;
    let before = stats()?;
    ensure!(map.read(5, 0) == 0, "a fresh frame does not read zero");
    let (end, pfn) = mapped_as(&dev, map.addr(5))?;
    ensure!(
        end == if huge { End::HugePmd } else { End::Leaf } && pfn == frame_pfn(id, 5)?,
        "after the read: the walk ends at {end:?} (pfn {pfn:x?})"
    );
    for page in [5, 7, 511] {
        map.write(page, 8, 0x5ead_0000 + page as u64);
    }
    let view = io("mmap another view", dev.map(512, 0, true))?;
    for page in [5, 7, 511] {
        ensure!(
            view.read(page, 8) == 0x5ead_0000 + page as u64,
            "page {page}: the write after the read did not reach the instance's frame"
        );
    }
    let (end, pfn) = mapped_as(&dev, map.addr(7))?;
    ensure!(
        pfn == frame_pfn(id, 7)?,
        "page 7 after the writes: the walk ends at {end:?} (pfn {pfn:x?}), not on the frame"
    );
    let (_, present) = fault_pattern([5, 7, 511], 512)?;
    let touched = (0..512).filter(|&p| present[p]);
    deltas(&before, &[("frames_allocated", allocs(touched)?)])
        .map_err(|e| format!("read then writes: {e}"))?;
    // A read-only view, read (a read-only leaf), then made writable and written.
    let ro = io("mmap aligned", dev.map_aligned(512, 0, true, TWO_MIB))?;
    io("mprotect read-only", ro.mprotect(libc::PROT_READ))?;
    ensure!(ro.read(7, 8) == 0x5ead_0007, "the read-only view lost data");
    io(
        "mprotect read-write",
        ro.mprotect(libc::PROT_READ | libc::PROT_WRITE),
    )?;
    ro.write(9, 8, 0x9999);
    ensure!(
        view.read(9, 8) == 0x9999,
        "the write after mprotect was lost"
    );
    let (end, pfn) = mapped_as(&dev, ro.addr(9))?;
    ensure!(
        end.is_leaf() && pfn == frame_pfn(id, 9)?,
        "after mprotect and a write: the walk ends at {end:?} (pfn {pfn:x?})"
    );
    for page in [5, 7, 511] {
        ensure!(
            ro.read(page, 8) == 0x5ead_0000 + page as u64,
            "page {page} lost its data through the split view"
        );
    }
    Ok(())
}

/// THP settings decide before the module does: with the process's `PR_SET_THP_DISABLE` or a
/// mapping's `MADV_NOHUGEPAGE`, the core never calls the PMD-level handler, and a `huge`
/// instance's pages are mapped by 4 KiB faults (PTE leaves on the 2 MiB frame's pages).
fn thp_settings_turn_huge_into_4k_faults() -> Check {
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    let before = stats()?;
    let status = in_child(|| {
        // SAFETY: a prctl with integer arguments, in the child only.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return 10;
        }
        map.write(3, 0, 0x7d15);
        match pfdemo::walk::walk(dev.fd(), map.addr(3)) {
            Ok(w) if w.end() == End::Leaf => 0,
            Ok(w) => {
                eprintln!("under PR_SET_THP_DISABLE: {w}");
                11
            }
            Err(_) => 12,
        }
    })?;
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (10: prctl, 11: not a PTE leaf, 12: walk)"
    );
    deltas(&before, &[("huge_faults", 0), ("faults", 1)])
        .map_err(|e| format!("under PR_SET_THP_DISABLE: {e}"))?;
    // The parent has no such setting: MADV_NOHUGEPAGE on the second 2 MiB of the mapping.
    let second = io("mmap aligned", dev.map_aligned(512, 512, true, TWO_MIB))?;
    io(
        "madvise(MADV_NOHUGEPAGE)",
        second.madvise(libc::MADV_NOHUGEPAGE),
    )?;
    let before = stats()?;
    second.write(4, 0, 0x40);
    let (end, pfn) = mapped_as(&dev, second.addr(4))?;
    ensure!(
        end == End::Leaf && pfn == frame_pfn(id, 516)?,
        "under MADV_NOHUGEPAGE: the walk ends at {end:?} (pfn {pfn:x?})"
    );
    deltas(&before, &[("huge_faults", 0), ("faults", 1)])
        .map_err(|e| format!("under MADV_NOHUGEPAGE: {e}"))
}

/// The kernel's get_user_pages paths on the instance's pages, as a new user would try them:
/// `/proc/self/mem` reads and writes (FOLL_FORCE), `process_vm_readv` (pin_user_pages), and
/// `MADV_POPULATE_READ`/`WRITE` (faulting a range in through GUP). With `huge` the mapping is
/// a PMD one, else 4 KiB pages (or prefault batches): all of them must reach the frames.
fn gup_reaches_every_mapping() -> Check {
    use std::os::unix::fs::FileExt;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    map.write(10, 16, 0x0d1e_c7ed);
    let kind = mapped_as(&dev, map.addr(10))?.0;
    let mem = io(
        "open /proc/self/mem",
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/self/mem"),
    )?;
    let mut word = [0u8; 8];
    io(
        "read /proc/self/mem",
        mem.read_exact_at(&mut word, (map.addr(10) + 16) as u64),
    )?;
    ensure!(
        u64::from_ne_bytes(word) == 0x0d1e_c7ed,
        "/proc/self/mem read {:#x} on a {kind:?} mapping",
        u64::from_ne_bytes(word)
    );
    io(
        "write /proc/self/mem",
        mem.write_all_at(&0xfeed_u64.to_ne_bytes(), (map.addr(10) + 24) as u64),
    )?;
    ensure!(
        map.read(10, 24) == 0xfeed,
        "a /proc/self/mem write did not reach a {kind:?} mapping"
    );
    let mut buf = [0u64; 2];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: 16,
    };
    let remote = libc::iovec {
        iov_base: (map.addr(10) + 16) as *mut libc::c_void,
        iov_len: 16,
    };
    // SAFETY: one local buffer of 16 bytes we own, one remote range inside our mapping.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    ensure!(
        n == 16 && buf == [0x0d1e_c7ed, 0xfeed],
        "process_vm_readv on a {kind:?} mapping: {n} bytes, {buf:x?} ({})",
        std::io::Error::last_os_error()
    );
    // MADV_POPULATE_READ and _WRITE on untouched ranges: the frames appear, as faults would
    // map them.
    for (advice, name, first) in [
        (sys::MADV_POPULATE_READ, "MADV_POPULATE_READ", 512),
        (sys::MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE", 768),
    ] {
        let part = io("mmap a part", dev.map_aligned(256, first, true, TWO_MIB))?;
        io(name, part.madvise(advice))?;
        for page in [0, 255] {
            let (end, pfn) = mapped_as(&dev, part.addr(page))?;
            let listed = frame_pfn(id, (first + page) as u64)?;
            ensure!(
                end.is_leaf() && pfn.is_some() && pfn == listed,
                "{name}: page {page} ends at {end:?} (pfn {pfn:x?}, frames {listed:x?})"
            );
        }
    }
    ensure!(kind.is_leaf(), "the written page is not mapped: {kind:?}");
    Ok(())
}

/// `echo 4 > /proc/self/clear_refs` starts soft-dirty tracking: the kernel write-protects
/// every leaf of the process, our PTEs and PMD leaves too, and a later write faults to make
/// the leaf writable again. That write must land on the same frame through the same kind of
/// leaf: with `huge`, still one PMD leaf (the module makes its own read-only leaf writable
/// instead of letting the core split it into 4 KiB pages), and pagemap must mark the page
/// soft-dirty again.
fn soft_dirty_write_keeps_the_leaf() -> Check {
    const TWO_MIB: usize = 2 << 20;
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let map = io("mmap aligned", dev.map_aligned(512, 0, true, TWO_MIB))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    map.write(7, 0, 0x5d);
    let leaf = |w: &pfdemo::walk::Walk| (w.end(), w.frame_pfn());
    let walk = |page: usize| io("walk", pfdemo::walk::walk(dev.fd(), map.addr(page)));
    let first = walk(7)?;
    let want_end = if huge {
        pfdemo::walk::End::HugePmd
    } else {
        pfdemo::walk::End::Leaf
    };
    ensure!(
        first.end() == want_end,
        "after the first write the walk ends {:?}",
        first.end()
    );
    io("clear_refs", std::fs::write("/proc/self/clear_refs", "4"))?;
    let cleared = walk(7)?;
    ensure!(
        leaf(&cleared) == leaf(&first) && !cleared.leaf_has(pfdemo::walk::bits::WRITABLE),
        "clear_refs 4 left the leaf writable or changed it: {cleared}"
    );
    ensure!(
        !io("pagemap", pm.entry(map.addr(7)))?.soft_dirty,
        "pagemap still says soft-dirty after clear_refs"
    );
    let before = stats()?;
    map.write(7, 8, 0x5e);
    let again = walk(7)?;
    ensure!(
        leaf(&again) == leaf(&first),
        "the write after clear_refs changed the leaf: {:?} then {:?}",
        leaf(&first),
        leaf(&again)
    );
    ensure!(
        again.leaf_has(pfdemo::walk::bits::WRITABLE | pfdemo::walk::bits::DIRTY),
        "the leaf is not writable and dirty after the write: {again}"
    );
    let entry = io("pagemap", pm.entry(map.addr(7)))?;
    ensure!(
        entry.soft_dirty && entry.pfn == again.frame_pfn(),
        "pagemap after the write: soft-dirty {}, PFN {:?}, the walk's {:?}",
        entry.soft_dirty,
        entry.pfn,
        again.frame_pfn()
    );
    ensure!(map.read(7, 0) == 0x5d, "the first write's value is gone");
    // With `huge`, the write to the read-only leaf is one PMD-level call that keeps it; no
    // frame is allocated either way.
    deltas(
        &before,
        &[
            ("huge_faults", i64::from(huge)),
            ("huge_fallbacks", 0),
            ("frames_allocated", 0),
        ],
    )
}
