//! `pfdemo-stress run`: forks the worker processes, races them with debugfs readers, then
//! checks that nothing was lost, every counter balances, work was done, and, judged by the
//! kernel, that every page charged during the run was given back (the run sits in a memory
//! cgroup of its own).

use crate::inject::{injected, injection, knob, open_burst};
use crate::worker::{reader, shared_counts, worker, Counts};
use crate::RunArgs;
use pfdemo::harness::{self, Exit, Memcg, Tap};
use pfdemo::parse::Stats;
use pfdemo::sys;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Bytes of directly allocated kernel pages the run's memory cgroup may keep after all
/// closes: the statistics' own noise (slab counts in bytes, flushed per CPU), measured at up
/// to 64 KiB after the long default run. One leaked 2 MiB frame, or 64 leaked 4 KiB frames,
/// is more.
const LEAK_SLACK: u64 = 256 << 10;

/// Operations every worker must at least get through (or all of its `--ops`, if fewer).
const MIN_OPS: u64 = 200;

/// `open` ENOMEMs an injection run collects, the workers' and then those of a burst of
/// opens ([`open_burst`]), before it judges how they split between the module and the
/// kernel. The module makes some of the allocations an `open` of the device needs (the
/// instance, its directories, its list slot), the kernel the others (the path's name, the
/// file), each failed as likely as the next; on the debug kernel 7 of 36 and 14 of 33 of the
/// workers' were the module's. At the lower share, none of 100 being the module's has a
/// chance below 1 in 10^9.
const OPEN_NOMEM_SAMPLE: u64 = 100;

pub fn run(args: &RunArgs) -> ! {
    let &RunArgs {
        seed,
        procs,
        threads,
        ops,
        seconds,
        inject,
    } = args;
    let mut tap = Tap::new("stress");
    if let Some(p) = inject {
        if let Err(e) = injection(p) {
            tap.check("fault injection is available", false, || {
                format!(
                    "{e}: fault injection needs the debug kernel (CONFIG_FAULT_INJECTION_DEBUG_FS)"
                )
            });
            tap.finish();
        }
    }
    let counts = shared_counts();
    // The run's own memory cgroup: every frame, leaf and page table the workers cause is
    // charged to it, and must be uncharged again after the last close.
    let group = match Memcg::create("rpd-stress").and_then(|g| g.join().map(|()| g)) {
        Ok(g) => g,
        Err(e) => {
            tap.check("the run's memory cgroup", false, || e);
            tap.finish();
        }
    };
    let before = sys::read_stats().unwrap_or_default();
    let charged_before = group.direct_kernel_pages().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut children = Vec::new();
    for p in 0..procs {
        let workers = || {
            std::thread::scope(|s| {
                for t in 0..threads {
                    let seed = seed
                        .wrapping_mul(1000)
                        .wrapping_add((p * threads + t) as u64);
                    s.spawn(move || worker(seed, ops, deadline, counts, inject.is_some()));
                }
            });
            0
        };
        // SAFETY: no other thread runs yet (the readers start after the forks), so the child
        // may start threads of its own.
        children.push(unsafe { harness::fork(workers) }.expect("fork failed"));
    }
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let mut statuses = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| reader(&stop, counts, &reads));
        s.spawn(|| reader(&stop, counts, &reads));
        for child in children {
            // A child that cannot be waited for counts as one that did not exit cleanly.
            statuses.push(child.wait().unwrap_or(Exit(-1)));
        }
        stop.store(true, Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let injected = if inject.is_some() {
        if let Err(e) = open_burst(OPEN_NOMEM_SAMPLE, 50 * OPEN_NOMEM_SAMPLE, counts) {
            tap.check("opens under injection", false, || e.to_string());
        }
        let n = injected();
        let _ = knob("fail_page_alloc", "probability", "0");
        let _ = knob("failslab", "probability", "0");
        n
    } else {
        0
    };
    let after = match sys::read_stats() {
        Ok(s) => s,
        Err(e) => {
            tap.check("stats readable after the run", false, || e.to_string());
            tap.finish();
        }
    };
    let charged_after = group.direct_kernel_pages().unwrap_or(u64::MAX);
    group.leave_and_remove();
    let missing = after.missing(&Stats::REQUIRED);
    tap.check(
        "stats has every counter of the contract",
        missing.is_empty(),
        || format!("missing {missing:?}"),
    );
    let g = |n: &str| after.get(n);
    tap.check(
        "every worker process exited cleanly",
        statuses.iter().all(|s| s.success()),
        || {
            format!(
                "statuses {:x?}",
                statuses.iter().map(|s| s.0).collect::<Vec<_>>()
            )
        },
    );
    tap.check(
        "no content was lost (every read matched the model)",
        counts.lost.load(Relaxed) == 0,
        || format!("{} mismatches", counts.lost.load(Relaxed)),
    );
    tap.check(
        "no unexpected error or behaviour",
        counts.unexpected.load(Relaxed) == 0,
        || {
            format!(
                "{} unexpected events (see above)",
                counts.unexpected.load(Relaxed)
            )
        },
    );
    tap.check(
        "frames_allocated - frames_freed == frames_live == 0 after all closes",
        g("frames_allocated") - g("frames_freed") == g("frames_live") && g("frames_live") == 0,
        || format!("{:?}", after.0),
    );
    tap.check("no instance left", g("instances") == 0, || {
        format!("instances {}", g("instances"))
    });
    // Judged by pages, not by the module's counts: a frame kept by an extra reference, lost
    // on an error path or never freed stays charged to the run's group after every close,
    // in its kernel memory outside slab, stacks and page tables.
    let kept = charged_after.saturating_sub(charged_before);
    tap.check(
        &format!(
            "the run's cgroup: its directly allocated kernel pages back within {} KiB after all closes",
            LEAK_SLACK >> 10
        ),
        kept <= LEAK_SLACK,
        || format!("{charged_before} -> {charged_after} bytes: {kept} kept"),
    );
    // A run that did (almost) nothing proves nothing: every worker must have got through a
    // good part of its operations, and the faults must show it.
    let done = counts.ops.load(Relaxed);
    let floor = (procs * threads) as u64 * ops.min(MIN_OPS);
    tap.check(
        &format!("work was done: at least {MIN_OPS} operations per worker, and faults"),
        done >= floor
            && after.delta(&before, "faults") + after.delta(&before, "huge_faults")
                >= (done / 50) as i64,
        || {
            format!(
                "{done} operations (at least {floor}), {} faults",
                after.delta(&before, "faults")
            )
        },
    );
    // The `latency` switch says which calls are timed: all (1), none (0), or every Nth call
    // of each CPU's shard (within one per shard of calls / N).
    let timed: u64 = sys::read_latency()
        .map(|h| h.iter().map(|(_, c)| c).sum())
        .unwrap_or(0);
    let calls = g("faults") + g("huge_faults");
    let (low, high) = match g("latency") {
        1 => (calls, calls),
        0 => (0, 0),
        n => ((calls / n).saturating_sub(8), calls.div_ceil(n) + 8),
    };
    tap.check(
        "the latency histogram counts the handler calls the latency switch times",
        (low..=high).contains(&timed),
        || format!("the histogram holds {timed} of {calls} calls, expected {low} to {high}"),
    );
    let open = OpenNomem::of(&before, &after, counts);
    println!(
        "# open ENOMEM: {} the module's own (open_nomem), {} the kernel's",
        open.module, open.kernel
    );
    if inject.is_none() {
        tap.check(
            "open_nomem did not move without injection",
            open.module == 0,
            || format!("open_nomem moved by {}", open.module),
        );
    }
    if let Some(p) = inject {
        tap.check(
            &format!("fault injection at {p}% failed some allocations"),
            injected > 0,
            || "nothing was injected".into(),
        );
        // The documented outcomes (README, "What bad input gets"): a frame allocation that
        // fails is VM_FAULT_OOM, counted in `oom` (the fault is retried and succeeds later);
        // open and mmap fail with ENOMEM.
        tap.check(
            "failed frame allocations ended as VM_FAULT_OOM (oom counter moved)",
            after.delta(&before, "oom") > 0,
            || format!("oom moved by {}", after.delta(&before, "oom")),
        );
        // The module's mmap allocates nothing: every failed mmap was the kernel's own (its
        // VMA, its file reference), never counted by the module; a fault whose frame
        // allocation failed is the module's, counted in `oom` above.
        tap.check(
            "mmap failures were the kernel's own (mmap_refused did not move)",
            after.delta(&before, "mmap_refused") == 0,
            || {
                format!(
                    "mmap_refused moved by {}",
                    after.delta(&before, "mmap_refused")
                )
            },
        );
        // An open's ENOMEM is the module's when the module counted it (open_nomem), else
        // the kernel's. No other task opens the device during the run, so the
        // module cannot have counted more than open returned.
        tap.check(
            &format!(
                "open ENOMEMs attributed: {} the module's (open_nomem), {} the kernel's, of {} \
                 open returned (the workers' and a burst's)",
                open.module, open.kernel, open.seen
            ),
            open.module >= 0 && open.kernel >= 0,
            || "the module counted more ENOMEMs at open than open returned".into(),
        );
        tap.check(
            &format!(
                "the module counted some of at least {OPEN_NOMEM_SAMPLE} open ENOMEMs as its own"
            ),
            open.seen >= OPEN_NOMEM_SAMPLE as i64 && open.module > 0,
            || {
                format!(
                    "open_nomem moved by {} for {} ENOMEMs: too few ENOMEMs, or the module \
                     does not count its own",
                    open.module, open.seen
                )
            },
        );
        tap.check(
            "open and mmap failed cleanly (ENOMEM) under injection",
            counts.open_errors.load(Relaxed) > 0 && counts.mmap_errors.load(Relaxed) > 0,
            || {
                format!(
                    "open errors {}, mmap errors {}",
                    counts.open_errors.load(Relaxed),
                    counts.mmap_errors.load(Relaxed)
                )
            },
        );
    }
    let faults = after.delta(&before, "faults");
    let params = after.settings_label();
    harness::reliability(
        if inject.is_some() { "inject" } else { "stress" },
        &[
            ("params", &params),
            ("seed", &seed),
            ("procs", &procs),
            ("threads", &threads),
            ("ops", &counts.ops.load(Relaxed)),
            ("touches", &counts.touches.load(Relaxed)),
            ("checks", &counts.checks.load(Relaxed)),
            ("forks", &counts.forks.load(Relaxed)),
            ("dontneed", &counts.dontneed.load(Relaxed)),
            ("faults", &faults),
            ("frames", &after.delta(&before, "frames_allocated")),
            ("debugfs_reads", &reads.load(Relaxed)),
            ("enomem", &counts.errors_enomem.load(Relaxed)),
            ("open_enomem", &open.seen),
            ("open_enomem_module", &open.module),
            ("open_enomem_kernel", &open.kernel),
            ("mmap_enomem", &counts.mmap_errors.load(Relaxed)),
            ("oom", &after.delta(&before, "oom")),
            ("injected", &injected),
            ("lost", &counts.lost.load(Relaxed)),
            ("memcg_kept", &kept),
            (
                "leaked",
                &(g("frames_allocated") as i64 - g("frames_freed") as i64),
            ),
            ("seconds", &format!("{elapsed:.1}")),
        ],
    );
    tap.finish()
}

/// The `ENOMEM`s the workers' `open` calls got, split by who ran out: the module (which
/// counts its own in `open_nomem`) or the kernel (its file, the path lookup: the rest).
/// A negative share is a miscount.
struct OpenNomem {
    seen: i64,
    module: i64,
    kernel: i64,
}

impl OpenNomem {
    fn of(before: &Stats, after: &Stats, counts: &Counts) -> Self {
        let seen = counts.open_nomem.load(Relaxed) as i64;
        let module = after.delta(before, "open_nomem");
        Self {
            seen,
            module,
            kernel: seen - module,
        }
    }
}
