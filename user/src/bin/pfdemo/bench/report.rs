//! What `pfdemo bench` reports: a row per mode and thread count (median, spread, ratios),
//! printed as a table and written as JSON.

use super::{Mode, MIB};
use serde::Serialize;

#[derive(Serialize)]
pub struct Row {
    pub mode: Mode,
    pub threads: usize,
    /// ns per 4 KiB page, one per repetition.
    pub samples_ns_per_page: Vec<f64>,
    pub median_ns_per_page: f64,
    /// (max - min) / median, in percent.
    pub spread_pct: f64,
    pub pages_per_s: f64,
    /// Page faults the kernel handled per page (median): 1 for one fault per page, 1/16 for
    /// 16 pages per fault, 1/512 for a PMD per fault, 0 for memory already mapped.
    pub faults_per_page: f64,
    pub ratio_to_anon: Option<f64>,
    pub ratio_to_memset: Option<f64>,
}

#[derive(Serialize)]
pub struct Report {
    pub kernel: String,
    pub clocksource: String,
    pub clock_resolution_ns: f64,
    pub vcpus: usize,
    pub bytes: usize,
    pub reps: u64,
    pub batch: u32,
    pub thp: String,
    pub rows: Vec<Row>,
    pub handler_mean_ns: Option<f64>,
    pub handler_calls: u64,
    pub metadata_bytes_per_frame: Option<f64>,
    pub notes: Vec<String>,
}

pub fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn print_table(r: &Report) {
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
