//! The workers of `pfdemo-stress run` and the debugfs readers that race them: a seeded
//! sequence of operations on a worker's own instances, each read checked against the
//! worker's model of what its instances hold.

use pfdemo::harness;
use pfdemo::rng::Rng;
use pfdemo::sys::{self, page_size, Device, Mapping};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Counts of what the workers did, shared through a MAP_SHARED anonymous page so forked
/// processes add to the same numbers.
#[repr(C)]
pub struct Counts {
    pub ops: AtomicU64,
    pub touches: AtomicU64,
    pub checks: AtomicU64,
    pub forks: AtomicU64,
    pub dontneed: AtomicU64,
    pub errors_enomem: AtomicU64,
    /// Of those, the ones `open` and `mmap` returned.
    pub open_errors: AtomicU64,
    pub mmap_errors: AtomicU64,
    /// Of `open`'s, those that were `ENOMEM` itself: the module's (its `open_nomem`) and
    /// the kernel's (its file, the path lookup) together.
    pub open_nomem: AtomicU64,
    pub lost: AtomicU64,
    pub unexpected: AtomicU64,
}

const POOL_PAGES: usize = 64;

/// One open instance of a worker, with the model of its contents.
struct Inst {
    dev: Device,
    /// pgoff -> last value written through a shared mapping (0: never written).
    model: HashMap<usize, u64>,
    maps: Vec<Map>,
}

struct Map {
    map: Mapping,
    pgoff: usize,
    shared: bool,
    /// Pages written through this private mapping: its own copies.
    private: HashMap<usize, u64>,
}

fn value(seed: u64, n: u64) -> u64 {
    (seed << 32) ^ n ^ 0x5a5a_0000_0000_0001
}

/// One worker: a seeded sequence of operations on its own instances.
pub fn worker(seed: u64, ops: u64, deadline: Instant, counts: &Counts, inject: bool) {
    if inject {
        // Only this task's (and its forked children's) allocations may be failed.
        let _ = std::fs::write("/proc/thread-self/make-it-fail", "1");
    }
    let mut rng = Rng(seed);
    // Capacity up front: with fault injection, growing the heap later could fail in malloc.
    let mut insts: Vec<Inst> = Vec::with_capacity(4);
    // ENOMEM and EAGAIN are clean outcomes only when allocations are failed on purpose: in a
    // plain run, with memory to spare, they are failures too.
    let enomem = |what: &str, e: &std::io::Error| {
        let clean = match e.raw_os_error() {
            Some(libc::ENOMEM | libc::EAGAIN) => inject,
            Some(libc::EINTR) => true,
            _ => false,
        };
        if clean {
            counts.errors_enomem.fetch_add(1, Relaxed);
            if what == "open" && e.raw_os_error() == Some(libc::ENOMEM) {
                counts.open_nomem.fetch_add(1, Relaxed);
            }
            match what {
                "open" => counts.open_errors.fetch_add(1, Relaxed),
                "mmap" => counts.mmap_errors.fetch_add(1, Relaxed),
                _ => 0,
            };
        } else {
            eprintln!("stress: {what}: unexpected error {e}");
            counts.unexpected.fetch_add(1, Relaxed);
        }
    };
    for n in 0..ops {
        if Instant::now() > deadline {
            break;
        }
        counts.ops.fetch_add(1, Relaxed);
        let op = rng.below(100);
        if insts.is_empty() || (op < 5 && insts.len() < 3) {
            match Device::open() {
                Ok(dev) => insts.push(Inst {
                    dev,
                    model: HashMap::with_capacity(POOL_PAGES),
                    maps: Vec::with_capacity(4),
                }),
                Err(e) => enomem("open", &e),
            }
            continue;
        }
        let i = rng.below(insts.len() as u64) as usize;
        let inst = &mut insts[i];
        match op {
            5..=7 => {
                // Close: the frames go; a reopen is a new, empty instance.
                insts.swap_remove(i);
            }
            8..=19 if inst.maps.len() < 4 => {
                let pgoff = rng.below(POOL_PAGES as u64 / 2) as usize;
                let pages = 1 + rng.below((POOL_PAGES - pgoff) as u64) as usize;
                let shared = rng.below(3) > 0;
                match inst.dev.map(pages, pgoff, shared) {
                    Ok(map) => inst.maps.push(Map {
                        map,
                        pgoff,
                        shared,
                        private: HashMap::with_capacity(POOL_PAGES),
                    }),
                    Err(e) => enomem("mmap", &e),
                }
            }
            20..=24 if !inst.maps.is_empty() => {
                let m = rng.below(inst.maps.len() as u64) as usize;
                inst.maps.swap_remove(m);
            }
            25..=54 if !inst.maps.is_empty() => {
                let m = rng.below(inst.maps.len() as u64) as usize;
                let map = &mut inst.maps[m];
                let page = rng.below(map.map.pages() as u64) as usize;
                let v = value(seed, n);
                map.map.write(page, 0, v);
                counts.touches.fetch_add(1, Relaxed);
                if map.shared {
                    inst.model.insert(map.pgoff + page, v);
                    // Other private mappings that did not copy this page yet now see it too.
                } else {
                    map.private.insert(page, v);
                }
            }
            55..=84 if !inst.maps.is_empty() => {
                let m = rng.below(inst.maps.len() as u64) as usize;
                let map = &inst.maps[m];
                let page = rng.below(map.map.pages() as u64) as usize;
                let want = match map.private.get(&page) {
                    Some(v) => *v,
                    None => inst.model.get(&(map.pgoff + page)).copied().unwrap_or(0),
                };
                let got = map.map.read(page, 0);
                counts.checks.fetch_add(1, Relaxed);
                if got != want {
                    eprintln!(
                        "stress: seed {seed} op {n}: pgoff {} reads {got:#x}, expected {want:#x}",
                        map.pgoff + page
                    );
                    counts.lost.fetch_add(1, Relaxed);
                }
            }
            85..=88 if !inst.maps.is_empty() => {
                // MADV_DONTNEED drops the page-table entries; shared pages come back from the
                // instance's frames, private copies are gone (back to the instance's data).
                let m = rng.below(inst.maps.len() as u64) as usize;
                let map = &mut inst.maps[m];
                match map.map.madvise(libc::MADV_DONTNEED) {
                    Ok(()) => {
                        map.private.clear();
                        counts.dontneed.fetch_add(1, Relaxed);
                    }
                    Err(e) => enomem("madvise", &e),
                }
            }
            89..=91 if !inst.maps.is_empty() => {
                // mremap growth must fail; the mapping stays as it was.
                let map = &mut inst.maps[0].map;
                let grown = map.len() + page_size();
                if map.mremap(grown, libc::MREMAP_MAYMOVE).is_ok() {
                    eprintln!("stress: mremap growth succeeded");
                    counts.unexpected.fetch_add(1, Relaxed);
                }
            }
            92..=94 if inst.maps.iter().any(|m| m.shared) => {
                // A child writes through a shared mapping; the parent must see it.
                let m = inst.maps.iter().position(|m| m.shared).unwrap_or(0);
                let map = &inst.maps[m];
                let page = rng.below(map.map.pages() as u64) as usize;
                let v = value(seed, n) | (1 << 63);
                let child = || {
                    map.map.write(page, 0, v);
                    0
                };
                // SAFETY: the child only stores to the mapping (async-signal-safe) and exits.
                let exit = match unsafe { harness::fork(child) }.and_then(|c| c.wait()) {
                    Ok(exit) => exit,
                    Err(e) => {
                        enomem("fork", &e);
                        continue;
                    }
                };
                counts.forks.fetch_add(1, Relaxed);
                if exit.success() {
                    inst.model.insert(map.pgoff + page, v);
                } else {
                    eprintln!("stress: child ended with status {:#x}", exit.0);
                    counts.unexpected.fetch_add(1, Relaxed);
                }
            }
            _ => {
                // Read fdinfo: the instance must know itself.
                match inst.dev.fdinfo() {
                    // procfs reports a failed inode allocation in a lookup as ENOENT.
                    Err(e) if inject && e.raw_os_error() == Some(libc::ENOENT) => {
                        counts.errors_enomem.fetch_add(1, Relaxed);
                    }
                    Err(e) => enomem("fdinfo", &e),
                    Ok(_) => {}
                }
            }
        }
    }
}

/// Reads the debugfs files and fdinfo until told to stop, checking that they parse.
pub fn reader(stop: &AtomicBool, counts: &Counts, reads: &AtomicU64) {
    while !stop.load(Relaxed) {
        for r in [
            sys::read_stats().map(|_| ()),
            sys::read_frames().map(|_| ()),
            sys::read_latency().map(|_| ()),
        ] {
            match r {
                Ok(()) => {
                    reads.fetch_add(1, Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    eprintln!("stress: debugfs did not parse: {e}");
                    counts.unexpected.fetch_add(1, Relaxed);
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The workers' [`Counts`], in a shared anonymous page that forked workers inherit; it lives
/// for the rest of the program.
pub fn shared_counts() -> &'static Counts {
    let page = Mapping::new(
        None,
        1,
        0,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
    )
    .expect("mmap for the counters failed");
    assert!(std::mem::size_of::<Counts>() <= page.len());
    // SAFETY: a new page, zero-filled, which is a valid `Counts` (atomics), never unmapped.
    unsafe { &*(page.leak() as *const Counts) }
}
