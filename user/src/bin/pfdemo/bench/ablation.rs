//! The ablation: `device` with one of the module's switches flipped (module parameters,
//! see limits::Switches in the module) against `device` with the defaults, on the same
//! buffer, measured in pairs one right after the other.
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
/// insert_pages=0 return_page=0 events=0`), and whether to measure it at every thread count (the mmap lock matters
/// only once two threads fault at the same time) or with one thread.
const SWITCHES: &[(&str, bool)] = &[
    ("map_pages=0", true),
    ("latency=0", false),
    ("latency=16", false),
    ("insert_pages=1", false),
    // The core maps the page (finish_fault), not the handler (vm_insert_page).
    ("return_page=1", true),
    // The flight recorder on: what recording every handler call costs.
    ("events=1", false),
];

pub fn run(bench: &Bench, args: &Args, threads: &[usize]) -> Res<Vec<AblationRow>> {
    let items: Vec<(&str, usize)> = SWITCHES
        .iter()
        .flat_map(|&(switch, every)| {
            let ts: Vec<usize> = if every { threads.to_vec() } else { vec![1] };
            ts.into_iter().map(move |t| (switch, t))
        })
        .collect();
    let mut pairs: Vec<(Vec<Sample>, Vec<Sample>)> = vec![(Vec::new(), Vec::new()); items.len()];
    let effect = |(a, b): &(Vec<Sample>, Vec<Sample>)| {
        let ns = |v: &[Sample]| v.iter().map(|s| s.ns).collect::<Vec<f64>>();
        paired(&ns(a), &ns(b), args.seed)
    };
    let max_reps = args.max_reps.max(args.reps) as usize;
    for round in 0..max_reps {
        for (i, &(switch, t)) in items.iter().enumerate() {
            let done = pairs[i].0.len();
            if done >= args.reps as usize && effect(&pairs[i]).width() <= args.ci_width {
                continue;
            }
            let switched = vec![switch.to_string()];
            let (a, b) = if round % 2 == 0 {
                let a = bench.sample(Mode::Device, t, &[], None)?;
                (a, bench.sample(Mode::Device, t, &switched, None)?)
            } else {
                let b = bench.sample(Mode::Device, t, &switched, None)?;
                (bench.sample(Mode::Device, t, &[], None)?, b)
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
        .map(|(&(switch, threads), pair)| {
            let effect = effect(pair);
            AblationRow {
                switch: switch.into(),
                threads,
                default: Summary::of(&pair.0),
                switched: Summary::of(&pair.1),
                verdict: effect.verdict().into(),
                effect,
            }
        })
        .collect())
}
