//! What `pfdemo bench` reports: a row per mode and thread count (median, spread, CPU time,
//! paired ratios with their intervals), the scaling and the targets, the ablation of the
//! module's switches, the prefault sweep and the fault loops; printed as text and written as
//! JSON (which scripts/plot_bench.py turns into the plots and BENCHMARKS.md's tables).

use super::interval::{median, Interval};
use super::measure::Sample;
use super::{Mode, MIB};
use serde::Serialize;

/// One configuration's repetitions, summed up by their medians.
#[derive(Serialize, Clone, Debug)]
pub struct Summary {
    pub reps: usize,
    /// ns per 4 KiB page, one per repetition.
    pub samples_ns_per_page: Vec<f64>,
    pub median_ns_per_page: f64,
    /// (max - min) / median, in percent.
    pub spread_pct: f64,
    pub pages_per_s: f64,
    /// Page faults the kernel handled per page (median): 1 for one fault per page, 1/16 for
    /// 16 pages per fault, 1/512 for a PMD per fault, 0 for memory already mapped.
    pub faults_per_page: f64,
    /// CPU time per page (medians), all threads: in the kernel (system) and in the program.
    pub sys_ns_per_page: f64,
    pub user_ns_per_page: f64,
}

impl Summary {
    pub fn of(samples: &[Sample]) -> Summary {
        let ns: Vec<f64> = samples.iter().map(|s| s.ns).collect();
        let m = median(&ns);
        let pick = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
        Summary {
            reps: samples.len(),
            spread_pct: spread_pct(&ns),
            samples_ns_per_page: ns,
            median_ns_per_page: m,
            pages_per_s: 1e9 / m,
            faults_per_page: pick(|s| s.faults),
            sys_ns_per_page: pick(|s| s.sys_ns),
            user_ns_per_page: pick(|s| s.user_ns),
        }
    }
}

/// (max - min) / median of `v`, in percent.
pub fn spread_pct(v: &[f64]) -> f64 {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    (hi - lo) / median(v) * 100.0
}

#[derive(Serialize)]
pub struct Row {
    pub mode: Mode,
    pub threads: usize,
    #[serde(flatten)]
    pub summary: Summary,
    /// Pages per second over `anon`'s (and `memset`'s) of the same repetition and threads.
    pub ratio_to_anon: Option<Interval>,
    pub ratio_to_memset: Option<Interval>,
}

/// Pages per second with `threads` threads over the same mode's with one, paired by
/// repetition; and that speedup over `anon`'s own.
#[derive(Serialize)]
pub struct Scaling {
    pub mode: Mode,
    pub threads: usize,
    pub speedup: Interval,
    pub against_anon: Option<Interval>,
}

/// One of issue 16's targets for the handler, and where the measurement stands.
#[derive(Serialize)]
pub struct Target {
    pub what: String,
    pub goal: f64,
    pub measured: Interval,
    /// "met" (the whole interval at or above the goal), "not met" (below it), or "inside
    /// the noise" (the interval holds the goal).
    pub verdict: String,
}

impl Target {
    pub fn new(what: String, goal: f64, measured: Interval) -> Target {
        let verdict = if measured.lo >= goal {
            "met"
        } else if measured.hi < goal {
            "not met"
        } else {
            "inside the noise"
        };
        Target {
            what,
            goal,
            measured,
            verdict: verdict.into(),
        }
    }
}

/// One switch of the module flipped against the defaults, on `device`, measured in pairs.
#[derive(Serialize)]
pub struct AblationRow {
    /// The module parameters that differ from the defaults, e.g. "map_pages=0".
    pub switch: String,
    /// The mode measured both ways: `device`, or `device-batch` for a batch's switch.
    pub mode: String,
    pub threads: usize,
    pub default: Summary,
    pub switched: Summary,
    /// Pages per second switched over default, paired by repetition: above 1 when the
    /// switch makes the fault path faster.
    pub effect: Interval,
    pub verdict: String,
}

/// `device` with `prefault` pages per fault (one thread).
#[derive(Serialize)]
pub struct SweepRow {
    pub prefault: u32,
    #[serde(flatten)]
    pub summary: Summary,
    /// Over `anon` measured in the same round.
    pub ratio_to_anon: Interval,
}

/// A will-it-scale-like loop: every task maps a region, touches each page, unmaps it, again,
/// for a fixed time.
#[derive(Serialize)]
pub struct LoopRow {
    /// pf1-anon, pf1-device, pf3-file, pf3-device (see bench/loops.rs).
    pub name: String,
    /// Module parameters beyond the defaults (device loops), e.g. "map_pages=0".
    pub params: String,
    pub tasks: usize,
    /// "threads" (one process) or "processes".
    pub tasks_are: String,
    /// Page faults per second per task, one per repetition.
    pub samples_faults_per_s_per_task: Vec<f64>,
    pub faults_per_s_per_task: f64,
    pub spread_pct: f64,
    /// CPU time per page touched, all tasks (medians).
    pub sys_ns_per_page: f64,
    pub user_ns_per_page: f64,
    /// Over the kernel's own loop of the same kind, tasks and repetition (pf1-device over
    /// pf1-anon, pf3-device over pf3-file).
    pub against_kernel: Option<Interval>,
}

#[derive(Serialize)]
pub struct Report {
    pub kernel: String,
    pub clocksource: String,
    pub clock_resolution_ns: f64,
    /// The clock counted instructions, not time (`--icount`).
    pub icount: bool,
    pub vcpus: usize,
    pub bytes: usize,
    pub reps: u64,
    pub max_reps: u64,
    /// The widest interval, (hi - lo) / median, that stops further repetitions.
    pub ci_width: f64,
    pub seed: u64,
    pub batch: u32,
    /// Module parameters added to every device load (`--params`).
    pub params: Vec<String>,
    pub thp: String,
    pub rows: Vec<Row>,
    pub scaling: Vec<Scaling>,
    pub targets: Vec<Target>,
    /// The handler's own mean time per timed call (`handler_ns` over the latency
    /// histogram's count), `device` with one thread.
    pub handler_mean_ns: Option<f64>,
    pub handler_calls: u64,
    pub metadata_bytes_per_frame: Option<f64>,
    pub ablation: Vec<AblationRow>,
    pub sweep: Vec<SweepRow>,
    pub sweep_anon: Option<Summary>,
    pub loop_ms: u64,
    pub loop_mib: u64,
    pub loops: Vec<LoopRow>,
    pub notes: Vec<String>,
}

pub fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// "1.02 [0.97, 1.08]".
fn iv(i: &Interval) -> String {
    format!("{:.2} [{:.2}, {:.2}]", i.median, i.lo, i.hi)
}

pub fn print_table(r: &Report) {
    println!(
        "kernel {}, clocksource {} (resolution {:.0} ns), {} vCPUs, {} MiB, {} to {} reps, THP {}",
        r.kernel,
        r.clocksource,
        r.clock_resolution_ns,
        r.vcpus,
        r.bytes / MIB,
        r.reps,
        r.max_reps,
        r.thp
    );
    if r.icount {
        println!("icount: every ns below is one guest instruction (QEMU -icount shift=0)");
    }
    if !r.rows.is_empty() {
        println!("ratios: median of paired ratios [95% bootstrap interval]");
        println!(
            "{:<16} {:>3} {:>4} {:>10} {:>8} {:>7} {:>8} {:>8} {:>20} {:>20} {:>9}",
            "mode",
            "thr",
            "reps",
            "pages/s",
            "ns/page",
            "spread",
            "sys ns",
            "user ns",
            "x anon",
            "x memset",
            "faults/pg"
        );
    }
    let opt = |x: &Option<Interval>| x.as_ref().map(iv).unwrap_or("-".into());
    for row in &r.rows {
        let s = &row.summary;
        println!(
            "{:<16} {:>3} {:>4} {:>10.0} {:>8.0} {:>6.0}% {:>8.0} {:>8.0} {:>20} {:>20} {:>9.4}",
            row.mode.name(),
            row.threads,
            s.reps,
            s.pages_per_s,
            s.median_ns_per_page,
            s.spread_pct,
            s.sys_ns_per_page,
            s.user_ns_per_page,
            opt(&row.ratio_to_anon),
            opt(&row.ratio_to_memset),
            s.faults_per_page
        );
    }
    for s in &r.scaling {
        println!(
            "scaling {} 1 -> {} threads: {} (against anon's own: {})",
            s.mode.name(),
            s.threads,
            iv(&s.speedup),
            opt(&s.against_anon)
        );
    }
    for t in &r.targets {
        println!(
            "target {} >= {:.2}: {} -> {}",
            t.what,
            t.goal,
            iv(&t.measured),
            t.verdict
        );
    }
    if let Some(ns) = r.handler_mean_ns {
        println!(
            "handler's own time (device, 1 thread): {ns:.0} ns per timed call over {} calls",
            r.handler_calls
        );
    }
    if let Some(b) = r.metadata_bytes_per_frame {
        println!(
            "module metadata: {b:.1} bytes per 4 KiB frame (the frame table's slab objects added while the frames are held)"
        );
    }
    if !r.ablation.is_empty() {
        println!("\nablation: device with one switch flipped, against the defaults, in pairs");
        println!(
            "{:<16} {:>3} {:>4} {:>9} {:>9} {:>20} {:>17} {:>17}  verdict",
            "switch",
            "thr",
            "reps",
            "ns dflt",
            "ns sw",
            "effect (pages/s)",
            "sys ns dflt/sw",
            "user ns dflt/sw"
        );
    }
    for a in &r.ablation {
        println!(
            "{:<16} {:>3} {:>4} {:>9.0} {:>9.0} {:>20} {:>8.0}/{:<8.0} {:>8.0}/{:<8.0}  {}",
            a.switch,
            a.threads,
            a.effect.n,
            a.default.median_ns_per_page,
            a.switched.median_ns_per_page,
            iv(&a.effect),
            a.default.sys_ns_per_page,
            a.switched.sys_ns_per_page,
            a.default.user_ns_per_page,
            a.switched.user_ns_per_page,
            a.verdict
        );
    }
    if !r.sweep.is_empty() {
        println!("\nprefault sweep: device, 1 thread");
        println!(
            "{:>8} {:>10} {:>8} {:>7} {:>10} {:>8} {:>20}",
            "prefault", "pages/s", "ns/page", "spread", "faults/pg", "sys ns", "x anon"
        );
    }
    for w in &r.sweep {
        let s = &w.summary;
        println!(
            "{:>8} {:>10.0} {:>8.0} {:>6.0}% {:>10.4} {:>8.0} {:>20}",
            w.prefault,
            s.pages_per_s,
            s.median_ns_per_page,
            s.spread_pct,
            s.faults_per_page,
            s.sys_ns_per_page,
            iv(&w.ratio_to_anon)
        );
    }
    if !r.loops.is_empty() {
        println!(
            "\nfault loops ({} ms each, {} MiB per task per iteration): faults per second per task",
            r.loop_ms, r.loop_mib
        );
        println!(
            "{:<12} {:<12} {:>5} {:<9} {:>10} {:>7} {:>8} {:>8} {:>20}",
            "loop",
            "params",
            "tasks",
            "as",
            "faults/s",
            "spread",
            "sys ns",
            "user ns",
            "x kernel's"
        );
    }
    for l in &r.loops {
        println!(
            "{:<12} {:<12} {:>5} {:<9} {:>10.0} {:>6.0}% {:>8.0} {:>8.0} {:>20}",
            l.name,
            if l.params.is_empty() { "-" } else { &l.params },
            l.tasks,
            l.tasks_are,
            l.faults_per_s_per_task,
            l.spread_pct,
            l.sys_ns_per_page,
            l.user_ns_per_page,
            opt(&l.against_kernel)
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}
