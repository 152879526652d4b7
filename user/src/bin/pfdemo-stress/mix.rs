//! `pfdemo-stress mix`: 4 KiB and PMD faults in the same 2 MiB ranges of a `huge` instance.
//!
//! Fault threads write and check their own words on an aligned shared mapping and drop its
//! page-table entries (`MADV_DONTNEED`) so that every range faults again and again, while a
//! toggler thread flips what the core decides per fault: the process's `PR_SET_THP_DISABLE`
//! (4 KiB faults only), `MADV_NOHUGEPAGE`/`MADV_HUGEPAGE` on parts of the mapping (which
//! also splits the VMA), and a VMA split in the middle of a 2 MiB range and its merge
//! (`MADV_DONTFORK`/`MADV_DOFORK` on half a range), which splits a PMD leaf there. Two faults in one range may then disagree, one mapping a page table
//! and the other a PMD, each under the VMA's read lock only: the module must fall back or
//! map nothing, never trip the core's checks (`make test-debug` scans the log for any
//! report). Bounded by `--seconds`; the frames' contents must survive.

use crate::MixArgs;
use pfdemo::harness::{self, Tap};
use pfdemo::sys::{self, Device};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const TWO_MIB: usize = 2 << 20;

pub fn mix(args: &MixArgs) -> ! {
    let mut tap = Tap::new("stress-mix");
    let huge = sys::read_stats()
        .map(|s| s.get("huge") == 1)
        .unwrap_or(false);
    tap.check("the module is loaded with huge=1", huge, || {
        "load it with huge=1: the mix needs PMD faults".into()
    });
    if !huge {
        tap.finish();
    }
    let ranges = args.ranges;
    let pages = ranges * 512;
    let dev = Device::open().expect("open the device");
    let map = dev
        .map_aligned(pages, 0, true, TWO_MIB)
        .expect("mmap an aligned range");
    let before = sys::read_stats().unwrap_or_default();
    let stop = AtomicBool::new(false);
    let (lost, rounds, toggles) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (map, stop, lost, rounds) = (&map, &stop, &lost, &rounds);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    n += 1;
                    // Each thread owns word t of every page it touches: one page per range,
                    // a different one each round, so faults land all over each range.
                    for r in 0..ranges {
                        let page = r * 512 + ((n as usize * 37 + t * 131) % 512);
                        let value = ((t as u64) << 48) | (n << 16) | r as u64;
                        map.write(page, 8 * t, value);
                        if map.read(page, 8 * t) != value {
                            lost.fetch_add(1, Relaxed);
                        }
                    }
                    // Drop the entries of one range: its next touch faults again.
                    let r = (n as usize + t) % ranges;
                    // SAFETY: a range inside our own shared mapping of the instance; its
                    // frames stay in the instance, only page-table entries go.
                    unsafe {
                        libc::madvise(
                            map.addr(r * 512) as *mut libc::c_void,
                            TWO_MIB,
                            libc::MADV_DONTNEED,
                        )
                    };
                    rounds.fetch_add(1, Relaxed);
                }
            });
        }
        s.spawn(|| {
            let mut n = 0usize;
            while Instant::now() < deadline {
                n += 1;
                // SAFETY: a prctl with integer arguments; it only changes THP eligibility.
                unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, (n % 2) as libc::c_ulong, 0, 0, 0) };
                let r = n % ranges;
                let advice = if n % 3 == 0 {
                    libc::MADV_NOHUGEPAGE
                } else {
                    libc::MADV_HUGEPAGE
                };
                // SAFETY: a range inside our own mapping; the advice only changes VMA flags.
                unsafe { libc::madvise(map.addr(r * 512) as *mut libc::c_void, TWO_MIB, advice) };
                // Split a VMA in the middle of a 2 MiB range, and merge it back: a split there
                // splits a PMD leaf (as an mprotect of half a range would, but the writers'
                // access stays allowed). MADV_DONTFORK changes only VM_DONTCOPY.
                let split = match n % 4 {
                    1 => Some(libc::MADV_DONTFORK),
                    3 => Some(libc::MADV_DOFORK),
                    _ => None,
                };
                if let Some(advice) = split {
                    // SAFETY: the upper half of a range inside our own mapping; only the
                    // VMA's flags change.
                    unsafe {
                        libc::madvise(
                            map.addr(r * 512 + 256) as *mut libc::c_void,
                            TWO_MIB / 2,
                            advice,
                        )
                    };
                }
                toggles.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
            stop.store(true, Relaxed);
        });
    });
    let elapsed = start.elapsed().as_secs_f64();
    let after = sys::read_stats().unwrap_or_default();
    let pmds = after.delta(&before, "huge_faults") - after.delta(&before, "huge_fallbacks");
    let small = after.delta(&before, "faults");
    tap.check(
        "every write read back (no content lost)",
        lost.load(Relaxed) == 0,
        || format!("{} words lost", lost.load(Relaxed)),
    );
    tap.check(
        "both kinds of fault happened: PMD maps and 4 KiB faults",
        pmds > 0 && small > 0,
        || format!("{pmds} PMDs mapped, {small} 4 KiB faults"),
    );
    tap.check(
        "work was done: rounds and toggles",
        rounds.load(Relaxed) >= 10 && toggles.load(Relaxed) >= 10,
        || {
            format!(
                "{} rounds, {} toggles",
                rounds.load(Relaxed),
                toggles.load(Relaxed)
            )
        },
    );
    let frames = after.delta(&before, "frames_allocated");
    tap.check(
        "frames: at most one 2 MiB frame per range",
        frames <= (ranges * 512) as i64,
        || format!("{frames} pages allocated for {ranges} ranges"),
    );
    drop(map);
    drop(dev);
    harness::reliability(
        "mix",
        &[
            ("threads", &args.threads),
            ("ranges", &ranges),
            ("rounds", &rounds.load(Relaxed)),
            ("toggles", &toggles.load(Relaxed)),
            ("pmds", &pmds),
            ("faults", &small),
            ("lost", &lost.load(Relaxed)),
            ("seconds", &format!("{elapsed:.1}")),
        ],
    );
    tap.finish()
}
