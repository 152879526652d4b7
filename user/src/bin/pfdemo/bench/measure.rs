//! How `pfdemo bench` measures: each mode's buffer touched page by page from `threads`
//! threads started together, timed from the common start to the last one's end, with the page
//! faults taken meanwhile; and the module's metadata per frame.

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
fn touch(map: &Mapping, from: usize, to: usize) {
    for page in from..to {
        map.write(page, 0, 1);
    }
}

/// The page faults this process has taken so far, all threads together, as the kernel counts
/// them: one per fault handled to completion (a fault retried under the mmap lock counts
/// once), major and minor.
fn faults_taken() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value for `getrusage` to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (usage.ru_minflt + usage.ru_majflt) as u64
}

/// What one measurement took: wall time and the page faults taken meanwhile.
struct Timing {
    ns: f64,
    faults: u64,
}

/// Runs `threads` threads, thread `t` calling `work(t)`, and returns the wall time from
/// their common start to the last one's end, in ns, and the faults taken meanwhile; with
/// `profile`, the kernel's samples of that time are added to it.
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
    let faults = faults_taken();
    let start = std::thread::scope(|s| {
        for t in 0..threads {
            let (work, barrier) = (&work, &barrier);
            s.spawn(move || {
                barrier.wait();
                work(t);
            });
        }
        barrier.wait();
        Instant::now()
    });
    let ns = start.elapsed().as_nanos() as f64;
    // Thread start and exit take a few faults of their own (stacks): at most a handful
    // against the thousands of pages measured.
    let faults = faults_taken() - faults;
    if let (Some(profile), Some(before)) = (profile, before) {
        profile.add_since(&before)?;
    }
    Ok(Timing { ns, faults })
}

/// One measurement of `mode`: ns per page and faults per page.
pub fn measure(
    mode: Mode,
    pages: usize,
    threads: usize,
    profile: Option<&mut KernelProfile>,
) -> Res<(f64, f64)> {
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
    Ok((timing.ns / pages, timing.faults as f64 / pages))
}

/// Bytes of slab objects in use, all caches together (see [`parse::parse_slabinfo`]).
fn slab_bytes_in_use() -> Res<u64> {
    let text = io("slabinfo", std::fs::read_to_string("/proc/slabinfo"))?;
    let caches = parse::parse_slabinfo(&text).map_err(|e| e.to_string())?;
    Ok(caches.values().sum())
}

/// Bytes of slab objects that `pages` frames of one instance add, per frame: the XArray's
/// nodes (the module keeps no other per-frame state). Measured with the frames held.
pub fn metadata_per_frame(module: &str, pages: usize) -> Res<f64> {
    reload(module, &[])?;
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(pages, 0, true))?;
    let before = slab_bytes_in_use()?;
    touch(&map, 0, pages);
    let after = slab_bytes_in_use()?;
    // Page tables for the mapping are not slab memory (they are pages), so they are not in
    // this figure; the kernel needs them for anonymous memory as well.
    Ok(after.saturating_sub(before) as f64 / pages as f64)
}
