//! The ablation: a device mode with one of the module's switches flipped (module
//! parameters, see limits::Switches in the module) against the same mode with the defaults,
//! on the same buffer, measured in pairs one right after the other. The mode is `device`,
//! but for a switch that only acts on a prefault batch: that one is measured on
//! `device-batch`.
//!
//! Each switch's effect is the median of its paired ratios with a bootstrap interval; a
//! switch whose interval is still wider than `--ci-width` after `--reps` pairs gets more, up to
//! `--max-reps`, and only that switch, so the noisy ones do not make the run long for all.
//! Within a pair the order alternates (default first, then switched first), so that a drift
//! of the machine during the pair does not favour either side.

use super::interval::paired;
use super::measure::Sample;
use super::report::{AblationRow, Summary};
use super::{Args, Bench, Mode};
use pfdemo::Res;

/// The switch positions measured, each against the defaults (`map_pages=1 latency=1
/// insert_pages=0 return_page=0 alloc_blocks=1 events=0`), the mode they are measured on,
/// and whether to measure it at every thread count (the mmap lock matters only once two
/// threads fault at the same time) or with one thread.
const SWITCHES: &[(&str, Mode, bool)] = &[
    ("map_pages=0", Mode::Device, true),
    ("latency=0", Mode::Device, false),
    ("latency=16", Mode::Device, false),
    ("insert_pages=1", Mode::Device, false),
    // The core maps the page (finish_fault), not the handler (vm_insert_page).
    ("return_page=1", Mode::Device, true),
    // The flight recorder on: what recording every handler call costs.
    ("events=1", Mode::Device, false),
    // One allocation per frame of a prefault batch, not blocks of up to 8 pages.
    ("alloc_blocks=0", Mode::DeviceBatch, false),
];

pub fn run(bench: &Bench, args: &Args, threads: &[usize]) -> Res<Vec<AblationRow>> {
    let items: Vec<(&str, Mode, usize)> = SWITCHES
        .iter()
        .flat_map(|&(switch, mode, every)| {
            let ts: Vec<usize> = if every { threads.to_vec() } else { vec![1] };
            ts.into_iter().map(move |t| (switch, mode, t))
        })
        .collect();
    let mut pairs: Vec<(Vec<Sample>, Vec<Sample>)> = vec![(Vec::new(), Vec::new()); items.len()];
    let effect = |(a, b): &(Vec<Sample>, Vec<Sample>)| {
        let ns = |v: &[Sample]| v.iter().map(|s| s.ns).collect::<Vec<f64>>();
        paired(&ns(a), &ns(b), args.seed)
    };
    let max_reps = args.max_reps.max(args.reps) as usize;
    for round in 0..max_reps {
        for (i, &(switch, mode, t)) in items.iter().enumerate() {
            let done = pairs[i].0.len();
            if done >= args.reps as usize && effect(&pairs[i]).width() <= args.ci_width {
                continue;
            }
            let switched = vec![switch.to_string()];
            let (a, b) = if round % 2 == 0 {
                let a = bench.sample(mode, t, &[], None)?;
                (a, bench.sample(mode, t, &switched, None)?)
            } else {
                let b = bench.sample(mode, t, &switched, None)?;
                (bench.sample(mode, t, &[], None)?, b)
            };
            eprintln!(
                "bench: ablation pair {} {switch:<15} threads {t}: default {:>6.0} ns/page, switched {:>6.0} ns/page",
                done + 1,
                a.ns,
                b.ns
            );
            pairs[i].0.push(a);
            pairs[i].1.push(b);
        }
    }
    Ok(items
        .iter()
        .zip(&pairs)
        .map(|(&(switch, mode, threads), pair)| {
            let effect = effect(pair);
            AblationRow {
                switch: switch.into(),
                mode: mode.name().into(),
                threads,
                default: Summary::of(&pair.0),
                switched: Summary::of(&pair.1),
                verdict: effect.verdict().into(),
                effect,
            }
        })
        .collect())
}
