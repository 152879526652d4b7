//! How `pfdemo bench` measures: each mode's buffer touched page by page from `threads`
//! threads started together, timed from the common start to the last one's end, with the page
//! faults and the CPU time (user and system, all threads) taken meanwhile; and the module's
//! metadata per frame.

use super::profile::KernelProfile;
use super::{reload, Mode, TWO_MIB};
use pfdemo::parse;
use pfdemo::sys::{page_size, Device, Mapping};
use pfdemo::{io, Res};
use std::time::Instant;

/// The smallest step of CLOCK_MONOTONIC that the program can see, in ns.
pub fn clock_resolution_ns() -> f64 {
    let mut best = u128::MAX;
    for _ in 0..2000 {
        let a = Instant::now();
        let mut b = Instant::now();
        while b == a {
            b = Instant::now();
        }
        best = best.min((b - a).as_nanos());
    }
    best as f64
}

/// Touches one byte in every page of `[from, to)` of `map`.
pub fn touch(map: &Mapping, from: usize, to: usize) {
    for page in from..to {
        map.write(page, 0, 1);
    }
}

/// What this process has used so far, all threads together (live and exited), as the kernel
/// counts it.
#[derive(Clone, Copy)]
pub struct Usage {
    /// Page faults: one per fault handled to completion (a fault retried under the mmap lock
    /// counts once), major and minor.
    pub faults: u64,
    pub user_ns: u64,
    pub sys_ns: u64,
}

/// [`usage`] of the whole process (`RUSAGE_SELF`) or of the calling thread (`RUSAGE_THREAD`).
fn rusage(who: i32) -> Usage {
    // SAFETY: an all-zero `rusage` is a valid value for `getrusage` to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `rusage`.
    unsafe { libc::getrusage(who, &mut u) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Usage {
        faults: (u.ru_minflt + u.ru_majflt) as u64,
        user_ns: ns(u.ru_utime),
        sys_ns: ns(u.ru_stime),
    }
}

pub fn usage() -> Usage {
    rusage(libc::RUSAGE_SELF)
}

impl Usage {
    /// What was used between `before` and `self`.
    pub fn since(self, before: Usage) -> Usage {
        Usage {
            faults: self.faults - before.faults,
            user_ns: self.user_ns - before.user_ns,
            sys_ns: self.sys_ns - before.sys_ns,
        }
    }
}

/// One measurement, per page: wall time, page faults, and CPU time in the program (user) and
/// in the kernel on its behalf (system), summed over its threads. The kernel splits CPU time
/// between user and system by where its ticks (every 4 ms here) fell, so the split of one short
/// measurement is coarse; their sum is exact, and the median over repetitions is fair.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    pub ns: f64,
    pub faults: f64,
    pub sys_ns: f64,
    pub user_ns: f64,
}

/// What one measurement took: wall time and what the process used meanwhile.
struct Timing {
    ns: f64,
    used: Usage,
}

/// Runs `threads` threads, thread `t` calling `work(t)`, and returns the wall time from
/// their common start to the last one's end, in ns, and the faults and CPU time taken
/// meanwhile; with `profile`, the kernel's samples of that time are added to it.
fn timed<F: Fn(usize) + Sync>(
    threads: usize,
    profile: Option<&mut KernelProfile>,
    work: F,
) -> Res<Timing> {
    let before = if profile.is_some() {
        Some(KernelProfile::read()?.1)
    } else {
        None
    };
    let barrier = std::sync::Barrier::new(threads + 1);
    let used = usage();
    let (start, per_thread) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (work, barrier) = (&work, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    work(t);
                    // The thread's whole life: the work and its own start.
                    rusage(libc::RUSAGE_THREAD)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let per_thread: Vec<Usage> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        (start, per_thread)
    });
    let ns = start.elapsed().as_nanos() as f64;
    // Faults: the process's count, which the kernel keeps exact. Thread start and exit take
    // a few faults of their own (stacks): at most a handful against the thousands of pages
    // measured. CPU time: the measuring threads' own, summed; the process's would carry the
    // module reload just before (insmod runs the module's init in this process), which the
    // kernel's split of a process's time between user and system can shift into the window.
    let faults = usage().since(used).faults;
    let used = per_thread.iter().fold(
        Usage {
            faults,
            user_ns: 0,
            sys_ns: 0,
        },
        |sum, u| Usage {
            faults: sum.faults,
            user_ns: sum.user_ns + u.user_ns,
            sys_ns: sum.sys_ns + u.sys_ns,
        },
    );
    if let (Some(profile), Some(before)) = (profile, before) {
        profile.add_since(&before)?;
    }
    Ok(Timing { ns, used })
}

/// One measurement of `mode`, per page.
pub fn measure(
    mode: Mode,
    pages: usize,
    threads: usize,
    profile: Option<&mut KernelProfile>,
) -> Res<Sample> {
    let per = pages / threads;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let timing = match mode {
        Mode::Anon | Mode::AnonThp => {
            let map = io(
                "mmap anon",
                Mapping::new(
                    None,
                    pages + TWO_MIB / page_size(),
                    0,
                    rw,
                    libc::MAP_PRIVATE,
                ),
            )?;
            // Start on a 2 MiB boundary so THP can use every whole 2 MiB.
            let skip = (map.as_ptr() as usize).next_multiple_of(TWO_MIB) - map.as_ptr() as usize;
            let first = skip / page_size();
            let advice = if mode == Mode::Anon {
                libc::MADV_NOHUGEPAGE
            } else {
                libc::MADV_HUGEPAGE
            };
            io("madvise", map.madvise(advice))?;
            timed(threads, profile, |t| {
                touch(&map, first + t * per, first + (t + 1) * per)
            })
        }
        Mode::Memset => {
            let map = io(
                "mmap anon",
                Mapping::new(None, pages, 0, rw, libc::MAP_PRIVATE),
            )?;
            io("madvise", map.madvise(libc::MADV_NOHUGEPAGE))?;
            touch(&map, 0, pages);
            timed(threads, profile, |t| {
                let len = per * page_size();
                // SAFETY: thread `t` writes its own `len` bytes inside the mapping.
                unsafe { std::ptr::write_bytes(map.as_ptr().add(t * len), 0, len) };
            })
        }
        Mode::Device | Mode::DeviceBatch | Mode::DeviceHuge => {
            let dev = io("open", Device::open())?;
            let map = if mode == Mode::DeviceHuge {
                io("mmap", dev.map_aligned(pages, 0, true, TWO_MIB))?
            } else {
                io("mmap", dev.map(pages, 0, true))?
            };
            timed(threads, profile, |t| touch(&map, t * per, (t + 1) * per))
        }
        Mode::Uffd => super::uffd::with_handler(pages, |map| {
            timed(threads, profile, |t| touch(map, t * per, (t + 1) * per))
        }),
        Mode::DeviceSeparate => {
            let maps = (0..threads)
                .map(|_| {
                    let dev = Device::open()?;
                    let map = dev.map(per, 0, true)?;
                    Ok((dev, map))
                })
                .collect::<std::io::Result<Vec<_>>>();
            let maps = io("open and mmap", maps)?;
            timed(threads, profile, |t| touch(&maps[t].1, 0, per))
        }
    }?;
    let pages = (per * threads) as f64;
    Ok(Sample {
        ns: timing.ns / pages,
        faults: timing.used.faults as f64 / pages,
        sys_ns: timing.used.sys_ns as f64 / pages,
        user_ns: timing.used.user_ns as f64 / pages,
    })
}

/// The slab caches the frame table's leaves come from: 4 KiB `kmalloc`s, charged to a memory
/// cgroup (`GFP_KERNEL_ACCOUNT`: `kmalloc-cg-4k`), or not where the kernel has no memcg
/// accounting of kernel memory (`kmalloc-4k`).
const LEAF_CACHES: [&str; 2] = ["kmalloc-cg-4k", "kmalloc-4k"];

/// Bytes of slab objects in use in the leaves' caches (see [`parse::parse_slabinfo`]).
///
/// Those caches only: the sum of all caches also moves with what other work frees or
/// allocates meanwhile. Measured so, the figure read 1.4 to 7.0 bytes per frame from run to
/// run while these caches alone gained exactly a leaf per 512 frames; the rest was the
/// delayed (RCU) freeing of the tasks, VMAs and dentries of the processes that ran before.
fn leaf_cache_bytes_in_use() -> Res<u64> {
    let text = io("slabinfo", std::fs::read_to_string("/proc/slabinfo"))?;
    let caches = parse::parse_slabinfo(&text).map_err(|e| e.to_string())?;
    Ok(LEAF_CACHES.iter().filter_map(|c| caches.get(*c)).sum())
}

/// Bytes of slab objects that `pages` frames of one instance add, per frame: the frame
/// table's leaves, 4 KiB per 512 frames (its directory is allocated at `open`, before the
/// first count; the module keeps no other per-frame state). Measured with the frames held.
pub fn metadata_per_frame(module: &str, pages: usize) -> Res<f64> {
    reload(module, &[])?;
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(pages, 0, true))?;
    let before = leaf_cache_bytes_in_use()?;
    touch(&map, 0, pages);
    let after = leaf_cache_bytes_in_use()?;
    // Page tables for the mapping are not slab memory (they are pages), so they are not in
    // this figure; the kernel needs them for anonymous memory as well.
    Ok(after.saturating_sub(before) as f64 / pages as f64)
}
