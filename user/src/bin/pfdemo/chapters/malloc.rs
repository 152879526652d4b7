//! Chapter `malloc`: the C library's own `malloc`, `calloc` and `free` (glibc's, linked in
//! statically), and what each asks of the kernel: a small block comes from the heap that
//! `brk` grows, a large one from a fresh anonymous `mmap`; neither has a frame until touched.

use super::Book;
use crate::tour::minflt_around;
use pfdemo::parse::MapsLine;
use pfdemo::sys::{self, page_size, Pagemap, StatSampler};
use pfdemo::{io, Res};

const SIDE: &str = "malloc";
/// Below glibc's default mmap threshold (128 KiB): served from the heap.
const SMALL: usize = 64 << 10;
/// Above it: served by a mapping of its own.
const LARGE: usize = 1 << 20;

/// The program break (`sbrk(0)`): the end of the heap `brk` grew.
fn brk() -> usize {
    // SAFETY: sbrk(0) only reports the current break.
    unsafe { libc::sbrk(0) as usize }
}

/// The maps line holding `addr`, if any.
fn line_of(maps: &[MapsLine], addr: usize) -> Option<MapsLine> {
    maps.iter().find(|l| l.contains(addr as u64)).cloned()
}

/// The pages lying wholly inside the block `[p, p + len)` but for the last one, which
/// malloc's bookkeeping may write (the next chunk's header): what no one has touched yet.
fn inner_pages(p: usize, len: usize) -> std::ops::Range<usize> {
    let first = p.next_multiple_of(page_size());
    let end = (p + len) / page_size() * page_size();
    first..end.saturating_sub(page_size()).max(first)
}

/// Whether none of the pages `range` (addresses) is present in pagemap.
fn none_present(pm: &mut Pagemap, range: std::ops::Range<usize>) -> Res<bool> {
    for va in range.step_by(page_size()) {
        if io("pagemap", pm.entry(va))?.present {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes one byte at `va` and returns the minor faults it took.
fn touch(sampler: &StatSampler, va: usize) -> Res<u64> {
    // SAFETY: `va` lies inside a block malloc gave us and we have not freed.
    let (a, b) = minflt_around(sampler, || unsafe { (va as *mut u8).write_volatile(0x5a) })?;
    Ok(b - a)
}

pub fn run(b: &mut Book) -> Res {
    let mut pm = io("open pagemap", Pagemap::open())?;
    let sampler = io("open /proc/self/stat", StatSampler::open())?;
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    b.step(
        SIDE,
        1,
        "the C library decides: heap below M_MMAP_THRESHOLD, a mapping of its own above",
        !version.to_bytes().is_empty(),
        format!(
            "glibc {} (static): M_MMAP_THRESHOLD starts at 128 KiB and is dynamic: freeing a mapped block raises it to that block's size (up to 32 MiB), unless mallopt set it",
            version.to_string_lossy()
        ),
    );

    // Give the top of the heap back first, so the small block must grow it.
    // SAFETY: malloc_trim only returns free memory at the heap's top to the kernel.
    unsafe { libc::malloc_trim(0) };
    let brk0 = brk();
    // SAFETY: a plain allocation; freed in step 10.
    let small = unsafe { libc::malloc(SMALL) } as usize;
    let brk1 = brk();
    // A guard after it, so that freeing `small` later does not merge it into the heap's top
    // (which free could then give back with brk).
    // SAFETY: as above; freed at the end.
    let guard = unsafe { libc::malloc(64) };
    let maps = io("maps", sys::read_maps())?;
    let heap = line_of(&maps, small);
    b.step(
        SIDE,
        2,
        "malloc(64 KiB): from the heap, which brk grows",
        small != 0 && heap.as_ref().is_some_and(|h| h.name == "[heap]") && brk1 > brk0 && small + SMALL <= brk1,
        format!(
            "malloc({SMALL}) = {small:#x}, in {}; the program break moved {brk0:#x} -> {brk1:#x} (+{} KiB: the block and glibc's M_TOP_PAD)",
            heap.map_or("no mapping".into(), |h| format!("{} {:#x}-{:#x}", h.name, h.start, h.end)),
            (brk1 - brk0) >> 10
        ),
    );
    let inner = inner_pages(small, SMALL);
    let untouched = none_present(&mut pm, inner.clone())?;
    b.step(
        SIDE,
        3,
        "no frame behind it until touched",
        untouched && !inner.is_empty(),
        format!(
            "pagemap: the {} pages inside the block ({:#x}..{:#x}) not present; only malloc's own header words were written",
            inner.len() / page_size(),
            inner.start,
            inner.end
        ),
    );
    let va = inner.start;
    let faults = touch(&sampler, va)?;
    let present = io("pagemap", pm.entry(va))?;
    b.step(
        SIDE,
        4,
        "the first touch faults, and a frame appears",
        faults == 1 && present.present,
        format!(
            "store to {va:#x}: minor faults +{faults}; pagemap: pfn {}",
            crate::tour::pfn_text(present.pfn)
        ),
    );

    let before = io("maps", sys::read_maps())?;
    // SAFETY: a plain allocation; freed in step 9.
    let large = unsafe { libc::malloc(LARGE) } as usize;
    let after = io("maps", sys::read_maps())?;
    let line = line_of(&after, large);
    let new_line = line.as_ref().is_some_and(|l| {
        l.name.is_empty() && !before.iter().any(|o| o.start == l.start && o.end == l.end)
    });
    b.step(
        SIDE,
        5,
        "malloc(1 MiB): a fresh anonymous mapping, a new line in /proc/self/maps",
        large != 0 && new_line,
        format!(
            "malloc({LARGE}) = {large:#x}; new line {}",
            line.as_ref().map_or("none".into(), |l| format!(
                "{:x}-{:x} {} (anonymous, {} KiB: the block and its header, page-rounded)",
                l.start,
                l.end,
                l.perms,
                (l.end - l.start) >> 10
            ))
        ),
    );
    let inner = inner_pages(large, LARGE);
    let untouched = none_present(&mut pm, inner.clone())?;
    let va = inner.start + 7 * page_size();
    let faults = touch(&sampler, va)?;
    let present = io("pagemap", pm.entry(va))?;
    b.step(
        SIDE,
        6,
        "no frame until touched; the first touch faults one in",
        untouched && faults == 1 && present.present,
        format!(
            "pagemap: {} pages inside not present; store to {va:#x}: minor faults +{faults}, pfn {}",
            inner.len() / page_size(),
            crate::tour::pfn_text(present.pfn)
        ),
    );

    // calloc of a fresh mapping: glibc knows mmap gives zeroed pages and skips the memset.
    let (mut cal, mut cal_faults) = (0usize, 0u64);
    let (f0, f1) = minflt_around(&sampler, || {
        // SAFETY: a plain allocation; freed below.
        cal = unsafe { libc::calloc(LARGE / 8, 8) } as usize;
    })?;
    cal_faults += f1 - f0;
    let inner = inner_pages(cal, LARGE);
    let untouched = none_present(&mut pm, inner.clone())?;
    b.step(
        SIDE,
        7,
        "calloc(1 MiB) of a fresh mapping touches nothing: the kernel's pages are zero already",
        cal != 0 && untouched && cal_faults <= 1,
        format!(
            "calloc = {cal:#x}; minor faults during the call: {cal_faults} (the header's page; a memset would have taken {}); pagemap: {} pages inside not present",
            LARGE / page_size() + 1,
            inner.len() / page_size()
        ),
    );
    // SAFETY: freeing what calloc returned, once.
    unsafe { libc::free(cal as *mut libc::c_void) };

    let touched_large = va;
    // SAFETY: freeing what malloc returned, once; not used after.
    unsafe { libc::free(large as *mut libc::c_void) };
    let maps = io("maps", sys::read_maps())?;
    let gone = line
        .as_ref()
        .is_some_and(|l| !maps.iter().any(|m| m.start <= l.start && l.end <= m.end));
    let entry = io("pagemap", pm.entry(touched_large))?;
    b.step(
        SIDE,
        8,
        "free of the large block unmaps it: line and frame gone",
        gone && !entry.present,
        format!(
            "after free({large:#x}): its maps line {}; pagemap of {touched_large:#x}: {}",
            if gone { "is gone" } else { "is still there" },
            if entry.present {
                "present"
            } else {
                "not present"
            }
        ),
    );

    let touched_small = inner_pages(small, SMALL).start;
    // SAFETY: freeing what malloc returned, once; not used after.
    unsafe { libc::free(small as *mut libc::c_void) };
    let entry = io("pagemap", pm.entry(touched_small))?;
    let maps = io("maps", sys::read_maps())?;
    let in_heap = line_of(&maps, touched_small).is_some_and(|h| h.name == "[heap]");
    b.step(
        SIDE,
        9,
        "free of the small block does not: it goes back to malloc's free lists, still mapped",
        entry.present && in_heap,
        format!(
            "after free({small:#x}): {touched_small:#x} still in [heap], pagemap: {}, pfn {}",
            if entry.present {
                "present"
            } else {
                "not present"
            },
            crate::tour::pfn_text(entry.pfn)
        ),
    );

    // The threshold moved to the freed block's size: the same request now fits the heap.
    // SAFETY: a plain allocation; freed right after.
    let again = unsafe { libc::malloc(LARGE) } as usize;
    let maps = io("maps", sys::read_maps())?;
    let where_ = line_of(&maps, again);
    b.step(
        SIDE,
        10,
        "the threshold is dynamic: after that free, malloc(1 MiB) comes from the heap",
        where_.as_ref().is_some_and(|l| l.name == "[heap]"),
        format!(
            "malloc({LARGE}) = {again:#x}, in {}: M_MMAP_THRESHOLD is now the freed block's size",
            where_.map_or("no mapping".into(), |l| if l.name.is_empty() {
                "an anonymous mapping".into()
            } else {
                l.name
            })
        ),
    );
    // SAFETY: freeing what malloc returned, once each.
    unsafe {
        libc::free(again as *mut libc::c_void);
        libc::free(guard);
    }
    Ok(())
}
