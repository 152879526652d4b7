//! `pfdemo bench`: the fault paths side by side, in one run.
//!
//! Every mode touches a buffer of `--bytes` bytes page by page (one byte written per page),
//! split between `--threads` threads over disjoint ranges, and the time from the first touch
//! to the last is what counts. Modes run interleaved (A B C A B C ...) `--reps` times, so a
//! slow moment of the machine hits all of them alike; the report gives the median and the
//! spread. Device modes reload the module with the parameters they need. One untimed round
//! comes first: the host's first touch of the guest's memory is a fault of its own, which
//! would otherwise be charged to whichever mode ran first.

use crate::{io, Res};
use pfdemo::parse;
use pfdemo::sys::{self, page_size, Device, Mapping};
use serde::Serialize;
use std::process::Command;
use std::time::Instant;

const MIB: usize = 1 << 20;
const TWO_MIB: usize = 2 * MIB;

#[derive(clap::Args)]
pub struct Args {
    /// Buffer size in MiB (1..=512).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub mib: u64,
    /// Repetitions of each measurement (at least 5 for a median worth reading).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub reps: u64,
    /// Thread counts to measure, e.g. "1,2" (default: 1 up to the number of CPUs).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Pages per fault for device-batch (the module's prefault).
    #[arg(long, default_value_t = 16)]
    pub batch: u32,
    /// The module to (re)load for the device modes.
    #[arg(
        long,
        env = "RPD_MODULE",
        default_value = "/lib/modules/rust_pagefault_demo.ko"
    )]
    pub module: String,
    /// Only these modes, e.g. "anon,device" (default: every mode this kernel offers).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub modes: Vec<Mode>,
    /// Sum the kernel's own profile (/proc/profile; boot with profile=2) over the timed parts
    /// and write it to this file, in /proc/profile's format (make profile reads it).
    #[arg(long)]
    pub profile_out: Option<String>,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json_out: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Debug, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Anonymous private memory with THP off: the kernel's 4 KiB fault path.
    Anon,
    /// Anonymous memory with MADV_HUGEPAGE: the kernel's 2 MiB fault path.
    AnonThp,
    /// Our handler, one 4 KiB frame per fault, threads sharing one instance.
    Device,
    /// Our handler, each thread on an instance of its own.
    DeviceSeparate,
    /// Our handler mapping `batch` pages per fault.
    DeviceBatch,
    /// Our handler with 2 MiB frames mapped by one PMD.
    DeviceHuge,
    /// Writing the same bytes into memory that is already mapped: the zeroing floor.
    Memset,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Anon => "anon",
            Mode::AnonThp => "anon-thp",
            Mode::Device => "device",
            Mode::DeviceSeparate => "device-separate",
            Mode::DeviceBatch => "device-batch",
            Mode::DeviceHuge => "device-huge",
            Mode::Memset => "memset",
        }
    }

    /// The module parameters a device mode runs with.
    fn params(self, batch: u32) -> Option<Vec<String>> {
        match self {
            Mode::Device | Mode::DeviceSeparate => Some(vec![]),
            Mode::DeviceBatch => Some(vec![format!("prefault={batch}")]),
            Mode::DeviceHuge => Some(vec!["huge=1".into()]),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Row {
    mode: Mode,
    threads: usize,
    /// ns per 4 KiB page, one per repetition.
    samples_ns_per_page: Vec<f64>,
    median_ns_per_page: f64,
    /// (max - min) / median, in percent.
    spread_pct: f64,
    pages_per_s: f64,
    /// Page faults the kernel handled per page (median): 1 for one fault per page, 1/16 for
    /// 16 pages per fault, 1/512 for a PMD per fault, 0 for memory already mapped.
    faults_per_page: f64,
    ratio_to_anon: Option<f64>,
    ratio_to_memset: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    clocksource: String,
    clock_resolution_ns: f64,
    vcpus: usize,
    bytes: usize,
    reps: u64,
    batch: u32,
    thp: String,
    rows: Vec<Row>,
    handler_mean_ns: Option<f64>,
    handler_calls: u64,
    metadata_bytes_per_frame: Option<f64>,
    notes: Vec<String>,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The smallest step of CLOCK_MONOTONIC that the program can see, in ns.
fn clock_resolution_ns() -> f64 {
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

fn reload(module: &str, params: &[String]) -> Res {
    // Not loaded is fine here: the first device mode loads it.
    let _ = Command::new("rmmod").arg("rust_pagefault_demo").output();
    let out = io(
        "insmod",
        Command::new("insmod").arg(module).args(params).output(),
    )?;
    if !out.status.success() {
        return Err(format!(
            "insmod {module} {params:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Touches one byte in every page of `[from, to)` of `map`.
fn touch(map: &Mapping, from: usize, to: usize) {
    for page in from..to {
        map.write(page, 0, 1);
    }
}

/// The kernel's own profile (`/proc/profile`, there when the kernel was booted with
/// `profile=N`), summed over the timed part of the measurements only: not over module
/// reloads, mappings being set up or torn down, or the benchmark's own bookkeeping.
pub struct KernelProfile {
    step: u32,
    hits: Vec<u32>,
}

impl KernelProfile {
    const PATH: &'static str = "/proc/profile";

    /// The profile file: the sampling step in bytes, then one hit count per step of the
    /// kernel's text.
    fn read() -> Res<(u32, Vec<u32>)> {
        let raw = io("read /proc/profile", std::fs::read(Self::PATH))?;
        let mut words = raw
            .chunks_exact(4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        let step = words
            .next()
            .ok_or("/proc/profile is empty: boot with profile=2")?;
        Ok((step, words.collect()))
    }

    pub fn new() -> Res<Self> {
        let (step, hits) = Self::read()?;
        Ok(Self {
            step,
            hits: vec![0; hits.len()],
        })
    }

    /// Adds what the kernel counted between `before` and now.
    fn add_since(&mut self, before: &[u32]) -> Res {
        let (_, now) = Self::read()?;
        for ((sum, now), before) in self.hits.iter_mut().zip(now).zip(before) {
            *sum = sum.wrapping_add(now.wrapping_sub(*before));
        }
        Ok(())
    }

    /// Writes the sums in `/proc/profile`'s own format.
    pub fn write(&self, path: &str) -> Res {
        let mut out = Vec::with_capacity(4 * (self.hits.len() + 1));
        for word in std::iter::once(self.step).chain(self.hits.iter().copied()) {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        io("write profile", std::fs::write(path, out))
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
fn measure(
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

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Bytes of slab objects in use, all caches together (see [`parse::parse_slabinfo`]).
fn slab_bytes_in_use() -> Res<u64> {
    let text = io("slabinfo", std::fs::read_to_string("/proc/slabinfo"))?;
    let caches = parse::parse_slabinfo(&text).map_err(|e| e.to_string())?;
    Ok(caches.values().sum())
}

/// Bytes of slab objects that `pages` frames of one instance add, per frame: the XArray's
/// nodes (the module keeps no other per-frame state). Measured with the frames held.
fn metadata_per_frame(module: &str, pages: usize) -> Res<f64> {
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

pub fn run(args: Args) -> Res {
    let bytes = args.mib as usize * MIB;
    let pages = bytes / page_size();
    let vcpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = if args.threads.is_empty() {
        (1..=vcpus).collect()
    } else {
        args.threads.clone()
    };
    if threads.iter().any(|&t| t == 0 || pages % t != 0) {
        return Err(format!("thread counts must divide the {pages} pages"));
    }
    let clocksource = read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    let resolution = clock_resolution_ns();
    if resolution > 1000.0 {
        return Err(format!(
            "the clock ({clocksource}) only moves in steps of {resolution:.0} ns: too coarse to time faults. \
             Fix: a kernel with a real clocksource (CONFIG_ACPI / HPET / TSC), see qemu/kernel.config"
        ));
    }
    let thp = read_trim("/sys/kernel/mm/transparent_hugepage/enabled");
    let mut notes = Vec::new();
    let mut modes = vec![
        Mode::Anon,
        Mode::Device,
        Mode::DeviceBatch,
        Mode::DeviceHuge,
        Mode::Memset,
    ];
    if thp.contains("[never]") || thp == "unknown" {
        notes.push(format!(
            "anon-thp skipped: transparent huge pages are not available ({thp})"
        ));
    } else {
        modes.insert(1, Mode::AnonThp);
    }
    if threads.iter().any(|&t| t > 1) {
        modes.insert(modes.len() - 1, Mode::DeviceSeparate);
    }
    if !args.modes.is_empty() {
        modes.retain(|m| args.modes.contains(m));
    }
    eprintln!(
        "bench: {} MiB, {} reps, threads {threads:?}, clock {clocksource} ({resolution:.0} ns), {vcpus} vCPUs",
        args.mib, args.reps
    );

    // First, while the slab caches hold no freed XArray nodes of earlier runs to reuse.
    let metadata = if modes.contains(&Mode::Device) {
        Some(metadata_per_frame(&args.module, pages.min(65536))?)
    } else {
        None
    };

    // Device frames of all threads must fit under the cap; a quarter of RAM may be less.
    let cap = format!("max_total_pages={}", pages + 1024);
    eprintln!("bench: one untimed round first (warm-up)");
    for &mode in &modes {
        if let Some(mut params) = mode.params(args.batch) {
            params.push(cap.clone());
            reload(&args.module, &params)?;
        }
        measure(mode, pages, 1, None)?;
    }
    let mut profile = if args.profile_out.is_some() {
        Some(KernelProfile::new()?)
    } else {
        None
    };
    // Per mode and thread count: ns per page and faults per page, one of each per repetition.
    let mut samples: Vec<(Mode, usize, Vec<f64>, Vec<f64>)> = Vec::new();
    let (mut handler_ns, mut handler_calls) = (0u64, 0u64);
    for &t in &threads {
        for rep in 0..args.reps {
            for &mode in &modes {
                if mode == Mode::DeviceSeparate && t == 1 {
                    continue;
                }
                if let Some(mut params) = mode.params(args.batch) {
                    params.push(cap.clone());
                    reload(&args.module, &params)?;
                }
                let before = sys::read_stats().ok();
                let (ns, faults) = measure(mode, pages, t, profile.as_mut())?;
                if let (Some(b), Ok(a)) = (before, sys::read_stats()) {
                    if mode == Mode::Device && t == 1 {
                        handler_ns += a.get("handler_ns") - b.get("handler_ns");
                        handler_calls += a.get("faults") - b.get("faults");
                    }
                }
                match samples
                    .iter_mut()
                    .find(|(m, th, _, _)| *m == mode && *th == t)
                {
                    Some((_, _, v, f)) => {
                        v.push(ns);
                        f.push(faults);
                    }
                    None => samples.push((mode, t, vec![ns], vec![faults])),
                }
                eprintln!(
                    "bench: threads {t} rep {} {:<16} {ns:>8.0} ns/page {faults:>8.4} faults/page",
                    rep + 1,
                    mode.name()
                );
            }
        }
    }

    let med = |mode: Mode, t: usize| {
        samples
            .iter()
            .find(|(m, th, _, _)| *m == mode && *th == t)
            .map(|(_, _, v, _)| median(v))
    };
    let rows: Vec<Row> = samples
        .iter()
        .map(|(mode, t, v, faults)| {
            let m = median(v);
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            Row {
                mode: *mode,
                threads: *t,
                samples_ns_per_page: v.clone(),
                median_ns_per_page: m,
                spread_pct: (hi - lo) / m * 100.0,
                pages_per_s: 1e9 / m,
                faults_per_page: median(faults),
                ratio_to_anon: med(Mode::Anon, *t).map(|a| a / m),
                ratio_to_memset: med(Mode::Memset, *t).map(|z| z / m),
            }
        })
        .collect();
    let report = Report {
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        clocksource,
        clock_resolution_ns: resolution,
        vcpus,
        bytes,
        reps: args.reps,
        batch: args.batch,
        thp,
        rows,
        handler_mean_ns: (handler_calls > 0).then(|| handler_ns as f64 / handler_calls as f64),
        handler_calls,
        metadata_bytes_per_frame: metadata,
        notes,
    };
    print_table(&report);
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if let (Some(profile), Some(path)) = (&profile, &args.profile_out) {
        profile.write(path)?;
    }
    if let Some(path) = &args.json_out {
        io("write json", std::fs::write(path, json + "\n"))?;
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "kernel {}, clocksource {} (resolution {:.0} ns), {} vCPUs, {} MiB, {} reps, THP {}",
        r.kernel,
        r.clocksource,
        r.clock_resolution_ns,
        r.vcpus,
        r.bytes / MIB,
        r.reps,
        r.thp
    );
    println!(
        "{:<16} {:>7} {:>11} {:>10} {:>8} {:>9} {:>10} {:>12}",
        "mode", "threads", "pages/s", "ns/page", "spread", "x anon", "x memset", "faults/page"
    );
    for row in &r.rows {
        let ratio = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or("-".into());
        println!(
            "{:<16} {:>7} {:>11.0} {:>10.0} {:>7.0}% {:>9} {:>10} {:>12.4}",
            row.mode.name(),
            row.threads,
            row.pages_per_s,
            row.median_ns_per_page,
            row.spread_pct,
            ratio(row.ratio_to_anon),
            ratio(row.ratio_to_memset),
            row.faults_per_page
        );
    }
    if let Some(ns) = r.handler_mean_ns {
        println!(
            "handler's own time (device, 1 thread): {ns:.0} ns per fault over {} faults",
            r.handler_calls
        );
    }
    if let Some(b) = r.metadata_bytes_per_frame {
        println!(
            "module metadata: {b:.1} bytes per 4 KiB frame (slab objects added while the frames are held)"
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}
