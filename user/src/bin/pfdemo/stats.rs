//! `pfdemo stats`: the module's counters and its fault handler's latency histogram.

use pfdemo::parse::Stats;
use pfdemo::sys;
use pfdemo::{io, Res};

pub fn run() -> Res {
    let s: Stats = io("stats", sys::read_stats())?;
    for (name, value) in &s.0 {
        println!("{name:>18} {value}");
    }
    let hist = io("latency", sys::read_latency())?;
    let total: u64 = hist.iter().map(|(_, c)| c).sum();
    if total > 0 {
        println!("\nfault handler latency ({total} faults):");
        for (le, count) in hist {
            let bar = "#".repeat(((count * 40).div_ceil(total)) as usize);
            println!("  < {:>10} ns {:>8} {bar}", le, count);
        }
    }
    Ok(())
}
