//! The MMU's view (`RPD_IOC_WALK`) against the kernel's own records: for every kind of
//! mapping a process has (the device with 4 KiB pages, prefault and 2 MiB frames, anonymous
//! memory and THP, the stack, the program's text, a hole), the walk's leaf is pagemap's frame
//! and present agrees; the entry bits say what the mapping allows and what happened to it
//! (read-only until copy on write, dirty only after a write, no-execute on data only); bad
//! requests get their errno; frame numbers stay hidden from an opener without
//! `CAP_SYS_ADMIN`; walks racing with unmapping, zapping and faulting stay sane.

use crate::expect::*;
use pfdemo::walk::{bits, walk, walk_raw, End, Walk, WalkReply, PFN_BITS, RPD_IOC_WALK};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const CASES: &[Case] = &[
    (
        "walk: device pages, before and after touches (and prefault's neighbours): pagemap's frames",
        device_pages,
    ),
    (
        "walk: a 2 MiB aligned shared mapping ends at a PMD leaf with huge, a PTE leaf without",
        huge_device_mapping,
    ),
    (
        "walk: anonymous memory: a read maps the zero page read-only and clean, a write a dirty copy",
        anonymous_memory,
    ),
    (
        "walk: THP: MADV_HUGEPAGE on a 2 MiB aligned anonymous region gives a PMD leaf",
        transparent_huge_page,
    ),
    (
        "walk: the stack and the program's text: pagemap's frames, no-execute on data only",
        stack_and_text,
    ),
    (
        "walk: an unmapped hole: outside any VMA, the walk ends at an empty entry",
        unmapped_hole,
    ),
    (
        "walk: a private device mapping: a read-only entry, then a writable copy with a new PFN",
        private_mapping_copies_on_write,
    ),
    (
        "walk: bad requests get EINVAL, ENOTTY or EFAULT",
        bad_requests,
    ),
    (
        "walk: PFNs are hidden from an opener without CAP_SYS_ADMIN",
        pfns_hidden_without_cap_sys_admin,
    ),
    (
        "walk: pfdemo walk --touch --json agrees with pagemap",
        pfdemo_walk_json,
    ),
    (
        "walk: concurrent walks while the range is remapped, zapped and faulted stay sane",
        walks_race_with_unmapping,
    ),
];

const TWO_MIB: usize = 2 << 20;

/// Walks the page of `va`, checks the reply is sane and agrees with pagemap: present when
/// pagemap says so, and then with pagemap's frame.
fn agreeing(fd: i32, pm: &mut Pagemap, va: usize) -> Result<Walk, String> {
    let w = io("walk", walk(fd, va))?;
    w.sane()?;
    let e = io("pagemap", pm.entry(va))?;
    ensure!(
        w.end().is_leaf() == e.present,
        "{va:#x}: the walk ends {:?}, pagemap says present: {}",
        w.end(),
        e.present
    );
    if e.present {
        ensure!(
            w.frame_pfn() == e.pfn,
            "{va:#x}: the walk's frame {:?}, pagemap's {:?}",
            w.frame_pfn(),
            e.pfn
        );
    }
    Ok(w)
}

/// The leaf's entry bits, for messages.
fn leaf_bits(w: &Walk) -> String {
    w.last()
        .map(|l| format!("{} {:#x}", l.name(), l.entry))
        .unwrap_or_default()
}

/// Device pages: no leaf before a touch; after touches, a PTE leaf with the frame that
/// pagemap and `frames` report, present, writable, user, no-execute, for every page a fault
/// mapped (with prefault the neighbours too), and nothing for the others.
fn device_pages() -> Check {
    let pages = 40;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, true))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    for p in 0..pages {
        let w = agreeing(dev.fd(), &mut pm, map.addr(p))?;
        ensure!(!w.end().is_leaf(), "page {p} has a leaf before any touch");
        ensure!(
            w.in_our_vma()
                && w.0.vma_start == map.addr(0) as u64
                && w.0.vma_end == map.addr(pages) as u64,
            "page {p}: flags {:#x}, VMA {:#x}..{:#x}, the mapping is {:#x}..{:#x}",
            w.0.flags,
            w.0.vma_start,
            w.0.vma_end,
            map.addr(0),
            map.addr(pages)
        );
    }
    let touches = [0, 1, 5, 20, 39];
    let (_, present) = fault_pattern(touches, pages)?;
    for p in touches {
        map.write(p, 0, p as u64 + 1);
    }
    let frames = io("frames", read_frames())?;
    let want = bits::PRESENT | bits::WRITABLE | bits::USER | bits::NO_EXECUTE;
    for (p, &present) in present.iter().enumerate() {
        let w = agreeing(dev.fd(), &mut pm, map.addr(p))?;
        ensure!(
            (w.end() == End::Leaf) == present,
            "page {p}: ends {:?}, mapped by a fault: {present}",
            w.end()
        );
        if present {
            let row = frames
                .iter()
                .find(|r| r.instance == id && r.pgoff == p as u64);
            ensure!(
                row.map(|r| r.pfn) == w.frame_pfn() && w.leaf_has(want),
                "page {p}: {}, frames row {row:?}",
                leaf_bits(&w)
            );
        }
    }
    Ok(())
}

/// A 2 MiB aligned shared mapping: with huge, one PMD leaf (the page-size bit) maps the whole
/// frame, and each page's walk gives the page inside it that pagemap reports; the next 2 MiB
/// stays empty. Without huge, a PTE leaf.
fn huge_device_mapping() -> Check {
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    map.write(3, 0, 0x4242);
    let w = agreeing(dev.fd(), &mut pm, map.addr(3))?;
    if !huge {
        ensure!(w.end() == End::Leaf, "without huge: ends {:?}", w.end());
        return Ok(());
    }
    for p in [0, 3, 200, 511] {
        let w = agreeing(dev.fd(), &mut pm, map.addr(p))?;
        ensure!(
            w.end() == End::HugePmd
                && w.leaf_has(bits::HUGE | bits::PRESENT | bits::WRITABLE | bits::NO_EXECUTE),
            "page {p}: ends {:?} at {}",
            w.end(),
            leaf_bits(&w)
        );
    }
    let next = agreeing(dev.fd(), &mut pm, map.addr(512))?;
    ensure!(
        !next.end().is_leaf(),
        "the second 2 MiB has a leaf: {:?}",
        next.end()
    );
    Ok(())
}

/// Fresh anonymous memory (no THP): a read maps the shared zero page, read-only and clean; a
/// write then maps a copy of its own, writable and dirty; a first write maps it dirty at
/// once. Data is never executable.
fn anonymous_memory() -> Check {
    let dev = io("open", Device::open())?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let anon = io("mmap", Mapping::new(None, 2, 0, rw, libc::MAP_PRIVATE))?;
    let _ = anon.madvise(libc::MADV_NOHUGEPAGE);
    let mut pm = io("pagemap", Pagemap::open())?;
    let fd = dev.fd();
    ensure!(
        !agreeing(fd, &mut pm, anon.addr(0))?.end().is_leaf(),
        "a leaf before the first touch"
    );
    ensure!(anon.read(0, 0) == 0, "fresh memory is not zero");
    let read = agreeing(fd, &mut pm, anon.addr(0))?;
    ensure!(
        read.end() == End::Leaf
            && read.leaf_has(bits::PRESENT | bits::USER | bits::NO_EXECUTE)
            && !read.leaf_has(bits::WRITABLE)
            && !read.leaf_has(bits::DIRTY),
        "after a read: {} (want the zero page: present, read-only, clean)",
        leaf_bits(&read)
    );
    anon.write(0, 0, 7);
    let written = agreeing(fd, &mut pm, anon.addr(0))?;
    ensure!(
        written.leaf_has(bits::WRITABLE | bits::DIRTY | bits::NO_EXECUTE)
            && written.frame_pfn() != read.frame_pfn(),
        "after the write: {}, frame {:?} (the zero page was {:?})",
        leaf_bits(&written),
        written.frame_pfn(),
        read.frame_pfn()
    );
    anon.write(1, 0, 7);
    let first = agreeing(fd, &mut pm, anon.addr(1))?;
    ensure!(
        first.leaf_has(bits::WRITABLE | bits::DIRTY),
        "after a first write: {}",
        leaf_bits(&first)
    );
    Ok(())
}

/// THP (the kernel is built with transparent huge pages on `madvise`): a write to a 2 MiB
/// aligned block of an anonymous region with `MADV_HUGEPAGE` maps a 2 MiB page with one PMD
/// leaf; every page's walk gives the page pagemap reports.
fn transparent_huge_page() -> Check {
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").map_err(|e| {
            format!("transparent huge pages: {e} (the kernel needs CONFIG_TRANSPARENT_HUGEPAGE)")
        })?;
    ensure!(
        !mode.contains("[never]"),
        "transparent huge pages are off ({}); echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
        mode.trim()
    );
    let dev = io("open", Device::open())?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let region = io(
        "mmap 4 MiB",
        Mapping::new(None, 2 * TWO_MIB / page_size(), 0, rw, libc::MAP_PRIVATE),
    )?;
    io(
        "madvise(MADV_HUGEPAGE)",
        region.madvise(libc::MADV_HUGEPAGE),
    )?;
    let first = (region.addr(0).next_multiple_of(TWO_MIB) - region.addr(0)) / page_size();
    region.write(first, 0, 1);
    let mut pm = io("pagemap", Pagemap::open())?;
    let w = agreeing(dev.fd(), &mut pm, region.addr(first))?;
    ensure!(
        w.end() == End::HugePmd && w.leaf_has(bits::HUGE | bits::DIRTY | bits::NO_EXECUTE),
        "the first write to an aligned block ends {:?} at {} (no THP: is memory too fragmented?)",
        w.end(),
        leaf_bits(&w)
    );
    for p in [1, 100, 511] {
        let inside = agreeing(dev.fd(), &mut pm, region.addr(first + p))?;
        ensure!(
            inside.frame_pfn() == w.frame_pfn().map(|f| f + p as u64),
            "page {p} of the THP: frame {:?}, the THP starts at {:?}",
            inside.frame_pfn(),
            w.frame_pfn()
        );
    }
    Ok(())
}

/// The stack (a local variable's page) and the program's text (this function's page): both
/// leaves with pagemap's frames, inside a VMA that is not the device's; the stack writable and
/// no-execute, the text read-only and executable.
fn stack_and_text() -> Check {
    let dev = io("open", Device::open())?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let local = std::hint::black_box(1u64);
    let stack = agreeing(dev.fd(), &mut pm, &local as *const u64 as usize)?;
    ensure!(
        stack.end().is_leaf()
            && stack.in_vma()
            && !stack.in_our_vma()
            && stack.leaf_has(bits::WRITABLE | bits::USER | bits::NO_EXECUTE),
        "the stack: ends {:?} at {}, flags {:#x}",
        stack.end(),
        leaf_bits(&stack),
        stack.0.flags
    );
    let text = agreeing(dev.fd(), &mut pm, stack_and_text as fn() -> Check as usize)?;
    ensure!(
        text.end().is_leaf()
            && text.in_vma()
            && text.leaf_has(bits::PRESENT | bits::USER)
            && !text.leaf_has(bits::NO_EXECUTE)
            && !text.leaf_has(bits::WRITABLE),
        "the text: ends {:?} at {}",
        text.end(),
        leaf_bits(&text)
    );
    Ok(())
}

/// An address no VMA holds (a mapping's page after `munmap`): the walk says so and ends at an
/// empty entry (at the PTE if the table stayed, higher if it went), as pagemap has nothing.
fn unmapped_hole() -> Check {
    let dev = io("open", Device::open())?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let gone = io("mmap", Mapping::new(None, 3, 0, rw, libc::MAP_PRIVATE))?;
    gone.write(1, 0, 1);
    let va = gone.addr(1);
    drop(gone);
    let w = agreeing(dev.fd(), &mut pm, va)?;
    ensure!(
        !w.in_vma() && w.end() == End::Empty,
        "{va:#x} after munmap: flags {:#x}, ends {:?}",
        w.0.flags,
        w.end()
    );
    Ok(())
}

/// A private mapping of the device: a read maps the instance's frame read-only (copy on
/// write); a write gives the process a copy of its own, writable and dirty, with a new PFN,
/// and the instance's frame is unchanged.
fn private_mapping_copies_on_write() -> Check {
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let shared = io("mmap shared", dev.map(1, 0, true))?;
    shared.write(0, 0, 0x77);
    let frame = frame_pfn(id, 0)?.ok_or("no frame after the shared write")?;
    let private = io("mmap private", dev.map(1, 0, false))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    ensure!(
        private.read(0, 0) == 0x77,
        "the private map does not show the frame"
    );
    let read = agreeing(dev.fd(), &mut pm, private.addr(0))?;
    ensure!(
        read.end() == End::Leaf
            && read.in_our_vma()
            && read.frame_pfn() == Some(frame)
            && !read.leaf_has(bits::WRITABLE),
        "after a read: {}, frame {:?}, the instance's is {frame:#x}",
        leaf_bits(&read),
        read.frame_pfn()
    );
    private.write(0, 0, 0x88);
    let copy = agreeing(dev.fd(), &mut pm, private.addr(0))?;
    ensure!(
        copy.end() == End::Leaf
            && copy.leaf_has(bits::WRITABLE | bits::DIRTY)
            && copy.frame_pfn().is_some_and(|f| f != frame),
        "after a write: {}, frame {:?}, the instance's is {frame:#x}",
        leaf_bits(&copy),
        copy.frame_pfn()
    );
    ensure!(
        frame_pfn(id, 0)? == Some(frame) && shared.read(0, 0) == 0x77,
        "the instance's frame changed under a private write"
    );
    Ok(())
}

/// Bad requests, as the README's table says: addresses that are not page-aligned user
/// addresses, a reply of the wrong size or version, other ioctl commands, a bad pointer.
fn bad_requests() -> Check {
    let dev = io("open", Device::open())?;
    let fd = dev.fd();
    let good = io("walk", walk(fd, 0x10_0000))?;
    let user_end: u64 = if good.0.paging_levels == 5 {
        1 << 56
    } else {
        1 << 47
    } - 4096;
    let request = |address: u64, size: u32, version: u32, cmd: u32| {
        let mut r = WalkReply::request(0);
        r.address = address;
        r.size = size;
        r.version = version;
        errno_of(walk_raw(fd, cmd, &mut r))
    };
    let size = std::mem::size_of::<WalkReply>() as u32;
    let v = pfdemo::walk::WALK_VERSION;
    // The same command with another number, and with another size encoded in it.
    let other_nr = (RPD_IOC_WALK & !0xff) | 2;
    let other_size = (RPD_IOC_WALK & !(0x3fff << 16)) | (200 << 16);
    let cases: [(&str, Option<i32>, Option<i32>); 9] = [
        (
            "a kernel address",
            request(0xffff_8880_0000_0000, size, v, RPD_IOC_WALK),
            Some(libc::EINVAL),
        ),
        (
            "an unaligned address",
            request(0x10_0008, size, v, RPD_IOC_WALK),
            Some(libc::EINVAL),
        ),
        (
            "a non-canonical address",
            request(0x0000_8000_0000_0000, size, v, RPD_IOC_WALK),
            Some(libc::EINVAL),
        ),
        (
            "the page at TASK_SIZE_MAX",
            request(user_end, size, v, RPD_IOC_WALK),
            Some(libc::EINVAL),
        ),
        (
            "the last user page",
            request(user_end - 4096, size, v, RPD_IOC_WALK),
            None,
        ),
        (
            "a wrong size",
            request(0x10_0000, size - 8, v, RPD_IOC_WALK),
            Some(libc::EINVAL),
        ),
        (
            "a wrong version",
            request(0x10_0000, size, v + 1, RPD_IOC_WALK),
            Some(libc::EINVAL),
        ),
        (
            "another ioctl number",
            request(0x10_0000, size, v, other_nr),
            Some(libc::ENOTTY),
        ),
        (
            "the command with another size",
            request(0x10_0000, size, v, other_size),
            Some(libc::ENOTTY),
        ),
    ];
    let guard = io(
        "mmap PROT_NONE",
        Mapping::new(None, 1, 0, libc::PROT_NONE, libc::MAP_PRIVATE),
    )?;
    // SAFETY: the argument is a page of our own mapped without access: the kernel's copy
    // from it fails, so nothing is read or written through it.
    let rc = unsafe { libc::ioctl(fd, RPD_IOC_WALK as _, guard.as_ptr()) };
    let efault = (rc < 0)
        .then(|| std::io::Error::last_os_error().raw_os_error())
        .flatten();
    // Eight refused above (the last user page is no bad input) and the bad pointer.
    tried(cases.len());
    for (what, got, want) in cases {
        ensure!(got == want, "{what}: errno {got:?}, expected {want:?}");
    }
    ensure!(
        efault == Some(libc::EFAULT),
        "a reply the kernel cannot read: rc {rc}, errno {efault:?}, expected EFAULT"
    );
    Ok(())
}

/// `CAP_SYS_ADMIN`, as numbered in `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`; version 3 takes two (capabilities 0-31 and 32-63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops `CAP_SYS_ADMIN` from this process's effective and permitted sets (capget, then
/// capset), so that a file it opens afterwards is opened without it.
fn drop_cap_sys_admin() -> std::io::Result<()> {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 reads the header and writes two `CapData`, which `data` holds.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    data[0].effective &= !(1 << CAP_SYS_ADMIN);
    data[0].permitted &= !(1 << CAP_SYS_ADMIN);
    // SAFETY: version 3 reads the header and two `CapData`, which `data` holds.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A child drops `CAP_SYS_ADMIN` and opens the device itself: its walks show no frame
/// number anywhere (PFN fields and the PFN bits of the entries zero, `PFNS_HIDDEN` set) but
/// the rest of the walk. The file the parent opened with the capability still shows them to
/// the child: the rule is the opener's, as pagemap's.
fn pfns_hidden_without_cap_sys_admin() -> Check {
    let with_cap = io("open", Device::open())?;
    let status = in_child(|| {
        if drop_cap_sys_admin().is_err() {
            return 10;
        }
        let Ok(dev) = Device::open() else { return 11 };
        let Ok(map) = dev.map(1, 0, true) else {
            return 12;
        };
        map.write(0, 0, 1);
        let Ok(hidden) = walk(dev.fd(), map.addr(0)) else {
            return 13;
        };
        let zero = hidden
            .levels()
            .iter()
            .all(|l| l.pfn == 0 && l.table_pfn == 0 && l.entry & PFN_BITS == 0);
        if !(hidden.pfns_hidden() && zero && hidden.end() == End::Leaf && hidden.sane().is_ok()) {
            eprintln!("# without CAP_SYS_ADMIN: {hidden}");
            return 14;
        }
        let Ok(shown) = walk(with_cap.fd(), map.addr(0)) else {
            return 15;
        };
        if shown.pfns_hidden() || shown.frame_pfn().is_none() {
            eprintln!("# through the file opened with CAP_SYS_ADMIN: {shown}");
            return 16;
        }
        0
    })?;
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (10: capset, 11/12: open/mmap, 13/15: walk, 14: PFNs shown without the capability, 16: hidden through a file opened with it)"
    );
    Ok(())
}

/// `pfdemo walk --touch --json`: the tool's own walk, before (no leaf) and after the touch (a
/// PTE leaf whose frame is pagemap's, which the tool checked in its process).
fn pfdemo_walk_json() -> Check {
    let out = crate::tools::invoke::pfdemo(&["walk", "--touch", "--json"])?;
    let doc: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("pfdemo walk --json: {e}: {out}"))?;
    let walks = doc["walks"]
        .as_array()
        .ok_or(format!("no walks in {out}"))?;
    ensure!(walks.len() == 2, "{} walks, expected 2: {out}", walks.len());
    let (before, after) = (&walks[0], &walks[1]);
    ensure!(
        before["walk"]["end"] == "empty" && before["pagemap_pfn"].is_null(),
        "before the touch: {before}"
    );
    ensure!(
        after["walk"]["end"] == "leaf"
            && after["walk"]["frame_pfn"].is_u64()
            && after["walk"]["frame_pfn"] == after["pagemap_pfn"],
        "after the touch: {after}"
    );
    Ok(())
}

/// Walks racing with everything that changes the tables under them, for two seconds: two
/// threads walk every page of a device mapping (2 MiB aligned: a PMD leaf with huge)
/// while one maps it anew again and again (an inaccessible anonymous mapping, then the device:
/// each unmaps the old pages and frees their tables), one zaps it (`MADV_DONTNEED`, after which
/// 7.3 may free empty PTE tables) and one faults it in (`MADV_POPULATE_WRITE`, which fails
/// cleanly while the range is inaccessible). Every walk must succeed and be sane; the debug
/// kernel's checkers (KASAN, lockdep, RCU) watch the module's reads.
fn walks_race_with_unmapping() -> Check {
    let dev = io("open", Device::open())?;
    let fd = dev.fd();
    // One 2 MiB block with huge (one PMD leaf), else 64 pages: small enough that a populate
    // of it ends between two zaps also on the debug kernel, where a fault takes milliseconds.
    let pages = if unit()? == 512 { 512 } else { 64 };
    let map = io("mmap aligned", dev.map_aligned(pages, 0, true, TWO_MIB))?;
    let stop = AtomicBool::new(false);
    let (walks, leaves, remaps, zaps, faults) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let bad = Mutex::new(Vec::<String>::new());
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    std::thread::scope(|s| {
        for start in 0..2 {
            let (map, stop, walks, leaves, bad) = (&map, &stop, &walks, &leaves, &bad);
            s.spawn(move || {
                let mut p = start;
                while !stop.load(Ordering::Relaxed) {
                    match walk(fd, map.addr(p % pages)) {
                        Ok(w) => {
                            if let Err(e) = w.sane() {
                                bad.lock().unwrap().push(e);
                            }
                            if w.end().is_leaf() {
                                leaves.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => bad.lock().unwrap().push(format!("a walk failed: {e}")),
                    }
                    walks.fetch_add(1, Ordering::Relaxed);
                    p += 7;
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let gone = map.remap_fixed(None, 0, libc::PROT_NONE, libc::MAP_PRIVATE);
                let back = map.remap_fixed(Some(fd), 0, rw, libc::MAP_SHARED);
                if let Err(e) = gone.and(back) {
                    bad.lock().unwrap().push(format!("remap: {e}"));
                    break;
                }
                remaps.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if map.madvise(libc::MADV_DONTNEED).is_ok() {
                    zaps.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if map.madvise(libc::MADV_POPULATE_WRITE).is_ok() {
                    faults.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Two seconds, and on until a walk has met a leaf (at most eight: the debug kernel
        // is slow).
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2)
            || (leaves.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(8))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let bad = bad.into_inner().unwrap();
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "# walk race: {} walks ({} at a leaf), {} remaps, {} zaps, {} populates",
        n(&walks),
        n(&leaves),
        n(&remaps),
        n(&zaps),
        n(&faults)
    );
    ensure!(bad.is_empty(), "{} bad walks, first: {}", bad.len(), bad[0]);
    ensure!(
        n(&walks) > 0 && n(&leaves) > 0 && n(&remaps) > 0 && n(&zaps) > 0 && n(&faults) > 0,
        "the race did not happen: walks {}, leaves {}, remaps {}, zaps {}, populates {}",
        n(&walks),
        n(&leaves),
        n(&remaps),
        n(&zaps),
        n(&faults)
    );
    Ok(())
}
