//! `pfdemo bench`: the fault paths side by side, in one run.
//!
//! Every mode touches a buffer of `--mib` MiB page by page (one byte written per page),
//! split between `--threads` threads over disjoint ranges, and the time from the first touch
//! to the last is what counts, with the CPU time (user and system, all threads) beside it.
//! Modes run interleaved (A B C A B C ...) `--reps` times, so a slow moment of the machine
//! hits all of them alike, and every ratio is the median of the ratios of one repetition
//! (two modes measured next to each other) with a bootstrap interval; where an interval that
//! decides a target is wider than `--ci-width`, more repetitions run, up to `--max-reps`.
//! Device modes reload the module with the parameters they need. One untimed round comes
//! first: the host's first touch of the guest's memory is a fault of its own, which would
//! otherwise be charged to whichever mode ran first.
//!
//! Besides the modes (the `main` set): the `ablation` (each of the module's switches flipped
//! against the defaults, in pairs), the prefault `sweep`, and the will-it-scale-like fault
//! `loops`, each in a file of its own.

use pfdemo::sys::{self, page_size};
use pfdemo::{io, Res};
use serde::Serialize;

mod ablation;
mod interval;
mod loops;
mod measure;
mod profile;
mod report;
mod sweep;
mod uffd;

use interval::{bootstrap, paired, Interval};
use measure::{clock_resolution_ns, measure, metadata_per_frame, Sample};
use profile::KernelProfile;
use report::{print_table, read_trim, Report, Row, Scaling, Summary, Target};

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
    /// What to run: the modes side by side (main), the switches against the defaults
    /// (ablation), the prefault sweep (sweep), the fault loops (loops). Default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub sets: Vec<Set>,
    /// Module parameters added to every device load, e.g. "map_pages=0" (for make profile).
    #[arg(long, value_delimiter = ',')]
    pub params: Vec<String>,
    /// At most this many repetitions where an interval stays wider than --ci-width.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub max_reps: u64,
    /// The widest acceptable 95% interval of a deciding ratio, as (hi - lo) / median.
    #[arg(long, default_value_t = 0.06)]
    pub ci_width: f64,
    /// Seed of the bootstrap's resampling.
    #[arg(long, default_value_t = 16)]
    pub seed: u64,
    /// Largest prefault of the sweep (1, 2, 4, ... up to it; at most 512).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub sweep_max: u32,
    /// How long each fault loop runs, in ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60000))]
    pub loop_ms: u64,
    /// The region each task of a fault loop maps, touches and unmaps, in MiB.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub loop_mib: u64,
    /// Repetitions of each fault loop.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub loop_reps: u64,
    /// Say in the report that the VM's clock counts the guest's instructions (QEMU's
    /// `-icount shift=0`, as `make bench ICOUNT=1` runs it): every time is then a path length,
    /// one instruction per ns, of all vCPUs together.
    #[arg(long)]
    pub icount: bool,
}

/// The parts of a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Set {
    /// The modes side by side.
    Main,
    /// `device` with each switch flipped, against the defaults, in pairs.
    Ablation,
    /// `device` with prefault 1, 2, 4, ... 512.
    Sweep,
    /// will-it-scale-like loops: map, touch, unmap, again; threads and processes.
    Loops,
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

/// What every measurement of a run shares: the module, the buffer, the parameters every
/// device load gets.
pub struct Bench {
    module: String,
    pages: usize,
    batch: u32,
    /// For every device load: the cap that makes room for all threads' frames, then
    /// `--params`.
    base: Vec<String>,
}

impl Bench {
    /// The parameters a device load gets: `mode`'s own, the base ones, then `extra`; where
    /// a name repeats, the last value replaces the earlier (the kernel refuses a load that
    /// names a parameter twice).
    fn params(&self, mode: Mode, extra: &[String]) -> Option<Vec<String>> {
        let mut params: Vec<String> = Vec::new();
        for p in mode
            .params(self.batch)?
            .iter()
            .chain(&self.base)
            .chain(extra)
        {
            let name = |p: &str| p.split('=').next().unwrap_or_default().to_string();
            params.retain(|q| name(q) != name(p));
            params.push(p.clone());
        }
        Some(params)
    }

    /// One measurement of `mode` with `threads` threads; a device mode first reloads the
    /// module with its parameters and `extra`.
    fn sample(
        &self,
        mode: Mode,
        threads: usize,
        extra: &[String],
        profile: Option<&mut KernelProfile>,
    ) -> Res<Sample> {
        if let Some(params) = self.params(mode, extra) {
            reload(&self.module, &params)?;
        }
        measure(mode, self.pages, threads, profile)
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
    if args.ci_width.is_nan() || args.ci_width <= 0.0 {
        return Err(format!("--ci-width {} must be above 0", args.ci_width));
    }
    let sets = if args.sets.is_empty() {
        vec![Set::Main, Set::Ablation, Set::Sweep, Set::Loops]
    } else {
        args.sets.clone()
    };
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
    if !sets.contains(&Set::Main) {
        modes.clear();
    }
    eprintln!(
        "bench: {} MiB, {} to {} reps, threads {threads:?}, sets {sets:?}, clock {clocksource} ({resolution:.0} ns), {vcpus} vCPUs",
        args.mib, args.reps, args.max_reps
    );

    // First, before the measurements of the other modes allocate and free in the same caches.
    // Over 256 MiB whatever the run's size (the default max_pages): 128 leaves, so that other
    // users' 4 KiB objects coming and going meanwhile (a few) move the figure by little.
    let metadata = if modes.contains(&Mode::Device) {
        Some(metadata_per_frame(&args.module, 65536)?)
    } else {
        None
    };

    // Device frames of all threads must fit under the cap; a quarter of RAM may be less.
    let mut base = vec![format!("max_total_pages={}", pages + 1024)];
    base.extend(args.params.iter().cloned());
    let bench = Bench {
        module: args.module.clone(),
        pages,
        batch: args.batch,
        base,
    };
    eprintln!("bench: one untimed round first (warm-up)");
    let mut warm = modes.clone();
    for m in [Mode::Anon, Mode::Device] {
        if !warm.contains(&m) {
            warm.push(m);
        }
    }
    for &mode in &warm {
        bench.sample(mode, 1, &[], None)?;
    }
    let mut profile = if args.profile_out.is_some() {
        Some(KernelProfile::new()?)
    } else {
        None
    };
    let main = main_set(&bench, &args, &modes, &threads, profile.as_mut())?;
    let ablation = if sets.contains(&Set::Ablation) {
        ablation::run(&bench, &args, &threads)?
    } else {
        Vec::new()
    };
    let (sweep, sweep_anon) = if sets.contains(&Set::Sweep) {
        sweep::run(&bench, &args)?
    } else {
        (Vec::new(), None)
    };
    let loops = if sets.contains(&Set::Loops) {
        loops::run(&bench, &args, &threads)?
    } else {
        Vec::new()
    };
    let report = Report {
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        clocksource,
        clock_resolution_ns: resolution,
        icount: args.icount,
        vcpus,
        bytes,
        reps: args.reps,
        max_reps: args.max_reps.max(args.reps),
        ci_width: args.ci_width,
        seed: args.seed,
        batch: args.batch,
        params: args.params.clone(),
        thp,
        rows: main.rows,
        scaling: main.scaling,
        targets: main.targets,
        handler_mean_ns: (main.handler_calls > 0)
            .then(|| main.handler_ns as f64 / main.handler_calls as f64),
        handler_calls: main.handler_calls,
        metadata_bytes_per_frame: metadata,
        ablation,
        sweep,
        sweep_anon,
        loop_ms: args.loop_ms,
        loop_mib: args.loop_mib,
        loops,
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

/// What the main set found.
struct Main {
    rows: Vec<Row>,
    scaling: Vec<Scaling>,
    targets: Vec<Target>,
    handler_ns: u64,
    handler_calls: u64,
}

/// The handler calls the latency histogram holds (as many as were timed).
fn timed_calls() -> u64 {
    sys::read_latency()
        .map(|h| h.iter().map(|(_, c)| c).sum())
        .unwrap_or(0)
}

/// The modes side by side: rounds of every mode at every thread count (so that the two
/// measurements of a paired ratio, or of a scaling, are at most one round apart), `--reps`
/// of them, and more, up to `--max-reps`, while an interval that decides a target is wider
/// than `--ci-width`.
fn main_set(
    bench: &Bench,
    args: &Args,
    modes: &[Mode],
    threads: &[usize],
    mut profile: Option<&mut KernelProfile>,
) -> Res<Main> {
    let configs: Vec<(Mode, usize)> = threads
        .iter()
        .flat_map(|&t| modes.iter().map(move |&m| (m, t)))
        .filter(|&(m, t)| !(m == Mode::DeviceSeparate && t == 1))
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    let (mut handler_ns, mut handler_calls) = (0u64, 0u64);
    let ns_of = |samples: &[Vec<Sample>], mode: Mode, t: usize| -> Option<Vec<f64>> {
        let i = configs.iter().position(|&c| c == (mode, t))?;
        Some(samples[i].iter().map(|s| s.ns).collect())
    };
    let t2 = threads.iter().copied().filter(|&t| t > 1).min();
    let targets = |samples: &[Vec<Sample>]| -> Vec<Target> {
        let mut out = Vec::new();
        let anon1 = ns_of(samples, Mode::Anon, 1);
        if let (Some(a), Some(d)) = (&anon1, ns_of(samples, Mode::Device, 1)) {
            let what = "device / anon, 1 thread".to_string();
            out.push(Target::new(what, 1.0, paired(a, &d, args.seed)));
        }
        if let Some(t) = t2 {
            let all = (
                &anon1,
                ns_of(samples, Mode::Device, 1),
                ns_of(samples, Mode::Anon, t),
                ns_of(samples, Mode::Device, t),
            );
            if let (Some(a1), Some(d1), Some(at), Some(dt)) = all {
                // Per round: device's speedup over anon's.
                let r: Vec<f64> = (0..a1.len())
                    .map(|i| (d1[i] / dt[i]) / (a1[i] / at[i]))
                    .collect();
                let what = format!("device scaling 1 -> {t} threads (one instance) / anon's");
                out.push(Target::new(what, 1.0, bootstrap(&r, args.seed)));
            }
        }
        if let (Some(a), Some(b)) = (&anon1, ns_of(samples, Mode::DeviceBatch, 1)) {
            let what = format!("device-batch (K={}) / anon, 1 thread", args.batch);
            out.push(Target::new(what, 2.5, paired(a, &b, args.seed)));
        }
        out
    };
    let max_reps = args.max_reps.max(args.reps);
    let mut round = 0;
    while !configs.is_empty() {
        let wide: Vec<String> = targets(&samples)
            .iter()
            .filter(|t| t.measured.width() > args.ci_width)
            .map(|t| format!("{} {:.0}%", t.what, t.measured.width() * 100.0))
            .collect();
        if round >= max_reps || (round >= args.reps && wide.is_empty()) {
            break;
        }
        if round >= args.reps {
            eprintln!("bench: one more round: intervals wider than the target: {wide:?}");
        }
        round += 1;
        for (i, &(mode, t)) in configs.iter().enumerate() {
            let s = bench.sample(mode, t, &[], profile.as_deref_mut())?;
            // A device sample runs on a module loaded afresh for it: its counters are the
            // sample's own. (Comparing them with those read before the sample compared two
            // loads, and gave no mean at all.)
            if mode == Mode::Device && t == 1 {
                if let Ok(a) = sys::read_stats() {
                    handler_ns += a.get("handler_ns");
                    handler_calls += timed_calls();
                }
            }
            eprintln!(
                "bench: round {round} threads {t} {:<16} {:>8.0} ns/page {:>8.4} faults/page {:>6.0} sys ns {:>6.0} user ns",
                mode.name(),
                s.ns,
                s.faults,
                s.sys_ns,
                s.user_ns
            );
            samples[i].push(s);
        }
    }
    let ratio = |to: Mode, mode: Mode, t: usize| -> Option<Interval> {
        Some(paired(
            &ns_of(&samples, to, t)?,
            &ns_of(&samples, mode, t)?,
            args.seed,
        ))
    };
    let rows = configs
        .iter()
        .zip(&samples)
        .map(|(&(mode, t), v)| Row {
            mode,
            threads: t,
            summary: Summary::of(v),
            ratio_to_anon: ratio(Mode::Anon, mode, t),
            ratio_to_memset: ratio(Mode::Memset, mode, t),
        })
        .collect();
    let mut scaling = Vec::new();
    for &(mode, t) in configs.iter().filter(|&&(_, t)| t > 1) {
        // Separate instances scale from one thread on one instance.
        let one = if mode == Mode::DeviceSeparate {
            Mode::Device
        } else {
            mode
        };
        let (Some(n1), Some(nt)) = (ns_of(&samples, one, 1), ns_of(&samples, mode, t)) else {
            continue;
        };
        let speedup = paired(&n1, &nt, args.seed);
        let against_anon = match (
            ns_of(&samples, Mode::Anon, 1),
            ns_of(&samples, Mode::Anon, t),
        ) {
            (Some(a1), Some(at)) => {
                let r: Vec<f64> = (0..n1.len())
                    .map(|i| (n1[i] / nt[i]) / (a1[i] / at[i]))
                    .collect();
                Some(bootstrap(&r, args.seed))
            }
            _ => None,
        };
        scaling.push(Scaling {
            mode,
            threads: t,
            speedup,
            against_anon,
        });
    }
    Ok(Main {
        rows,
        targets: targets(&samples),
        scaling,
        handler_ns,
        handler_calls,
    })
}
