//! The prefault sweep: `device` with one thread and prefault K = 1, 2, 4, ... up to
//! `--sweep-max` (512), every K once per round with `anon` at the start of the round, so
//! that each K's ratio to `anon` is paired. Pages per second and faults per page (the
//! kernel's own count) against K are the second plot (scripts/plot_bench.py).

use super::interval::paired;
use super::measure::Sample;
use super::report::{Summary, SweepRow};
use super::{Args, Bench, Mode};
use pfdemo::Res;

pub fn run(bench: &Bench, args: &Args) -> Res<(Vec<SweepRow>, Option<Summary>)> {
    let ks: Vec<u32> = (0..10)
        .map(|i| 1u32 << i)
        .filter(|&k| k <= args.sweep_max)
        .collect();
    let mut anon: Vec<Sample> = Vec::new();
    let mut device: Vec<Vec<Sample>> = vec![Vec::new(); ks.len()];
    for round in 1..=args.reps {
        anon.push(bench.sample(Mode::Anon, 1, &[], None)?);
        for (i, &k) in ks.iter().enumerate() {
            let s = bench.sample(Mode::Device, 1, &[format!("prefault={k}")], None)?;
            eprintln!(
                "bench: sweep round {round} prefault {k:>3}: {:>6.0} ns/page {:>8.5} faults/page",
                s.ns, s.faults
            );
            device[i].push(s);
        }
    }
    let ns = |v: &[Sample]| v.iter().map(|s| s.ns).collect::<Vec<f64>>();
    let rows = ks
        .iter()
        .zip(&device)
        .map(|(&prefault, v)| SweepRow {
            prefault,
            summary: Summary::of(v),
            ratio_to_anon: paired(&ns(&anon), &ns(v), args.seed),
        })
        .collect();
    Ok((rows, Some(Summary::of(&anon))))
}
