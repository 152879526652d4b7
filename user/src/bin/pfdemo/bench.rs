//! `pfdemo bench`: the fault paths side by side, in one run.
//!
//! Every mode touches a buffer of `--bytes` bytes page by page (one byte written per page),
//! split between `--threads` threads over disjoint ranges, and the time from the first touch
//! to the last is what counts. Modes run interleaved (A B C A B C ...) `--reps` times, so a
//! slow moment of the machine hits all of them alike; the report gives the median and the
//! spread. Device modes reload the module with the parameters they need. One untimed round
//! comes first: the host's first touch of the guest's memory is a fault of its own, which
//! would otherwise be charged to whichever mode ran first.

use pfdemo::sys::{self, page_size};
use pfdemo::{io, Res};
use serde::Serialize;

mod measure;
mod profile;
mod report;
mod uffd;

use measure::{clock_resolution_ns, measure, metadata_per_frame};
use profile::KernelProfile;
use report::{median, print_table, read_trim, Report, Row};

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
        default_value = sys::MODULE_PATH
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
    /// Anonymous memory whose missing faults a userfaultfd handler thread resolves.
    Uffd,
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
            Mode::Uffd => "uffd",
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

/// Loads the module afresh with `params` (the first device mode finds it not loaded yet).
fn reload(module: &str, params: &[String]) -> Res {
    let args: Vec<&str> = params.iter().map(String::as_str).collect();
    sys::reload_module(module, &args).map_err(|errno| {
        format!(
            "loading {module} {params:?} failed: {}",
            std::io::Error::from_raw_os_error(errno)
        )
    })
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
        Mode::Uffd,
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
