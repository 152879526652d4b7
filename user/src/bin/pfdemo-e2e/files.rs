//! The device node and the module's files: their modes, the counters `stats` promises, the
//! latency histogram, and no kernel pointer in anything the module prints.
//!
//! After the traffic groups: the histogram check needs faults counted since the module's load.

use crate::expect::*;

pub const CASES: &[Case] = &[
    ("device node is 0600 and debugfs files 0400", device_node),
    (
        "stats lists every counter of the contract",
        stats_lists_every_contract_counter,
    ),
    (
        "latency histogram counts the faults the latency switch times",
        latency_histogram_counts_the_timed_faults,
    ),
    (
        "no kernel pointer in debugfs, fdinfo or the module's log",
        no_kernel_pointers_in_any_output,
    ),
];

fn device_node() -> Check {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let m = io("stat device", std::fs::metadata(sys::DEVICE))?;
    ensure!(m.file_type().is_char_device(), "not a character device");
    ensure!(
        m.permissions().mode() & 0o777 == 0o600,
        "mode {:o}, expected 600",
        m.permissions().mode() & 0o777
    );
    for f in sys::DEBUGFS_FILES {
        let m = io(f, std::fs::metadata(sys::debugfs_path(f)))?;
        ensure!(
            m.permissions().mode() & 0o777 == 0o400,
            "debugfs {f} mode {:o}",
            m.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// The stats file carries every counter the contract names, and the settings the tests
/// derive their expectations from.
fn stats_lists_every_contract_counter() -> Check {
    let s = stats()?;
    let mut names = Stats::REQUIRED.to_vec();
    names.extend([
        "huge_faults",
        "mmap_refused",
        "max_total_pages",
        "prefault",
        "huge",
        "map_pages",
        "latency",
        "insert_pages",
    ]);
    let missing = s.missing(&names);
    ensure!(missing.is_empty(), "stats lacks {missing:?}");
    Ok(())
}

/// The histogram holds the handler calls that `latency` (in stats) times: all of them with
/// 1, none with 0 (a fault taken now must not move it), and every Nth call of each CPU's
/// shard with N: ceil(calls / N) up to calls / N + one per shard (each shard times its
/// first call).
fn latency_histogram_counts_the_timed_faults() -> Check {
    let histogram = || -> Result<u64, String> {
        Ok(io("latency", sys::read_latency())?
            .iter()
            .map(|(_, c)| c)
            .sum())
    };
    let before = stats()?;
    let total = histogram()?;
    let after = stats()?;
    // Every call of the handler, 4 KiB (`faults`) and PMD-level (`huge_faults`).
    let calls =
        |s: &Stats| -> Result<u64, String> { Ok(stat(s, "faults")? + stat(s, "huge_faults")?) };
    let (calls0, calls1) = (calls(&before)?, calls(&after)?);
    ensure!(
        calls0 == calls1,
        "faults moved while reading ({calls0} -> {calls1})"
    );
    ensure!(calls1 > 0, "no fault was counted at all");
    const SHARDS: u64 = 8;
    match stat(&after, "latency")? {
        0 => {
            ensure!(
                total == 0,
                "latency=0, yet the histogram holds {total} faults"
            );
            let dev = io("open", Device::open())?;
            let map = io("mmap", dev.map(1, 0, true))?;
            map.write(0, 0, 1);
            let (moved, now) = (histogram()?, calls(&stats()?)?);
            ensure!(
                now > calls1 && moved == 0,
                "latency=0: a fault (faults {calls1} -> {now}) put {moved} in the histogram"
            );
        }
        1 => ensure!(
            total == calls1,
            "histogram holds {total} faults, stats says faults + huge_faults = {calls1}"
        ),
        n => ensure!(
            total >= calls1.div_ceil(n) && total <= calls1 / n + SHARDS,
            "latency={n}: histogram holds {total} of {calls1} calls, expected {} to {}",
            calls1.div_ceil(n),
            calls1 / n + SHARDS
        ),
    }
    Ok(())
}

/// No output of the module carries a kernel pointer: debugfs files, fdinfo and its kernel log
/// lines (checked with frames live, so `frames` has rows).
fn no_kernel_pointers_in_any_output() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(8, 0, true))?;
    (0..8).for_each(|p| map.write(p, 0, 1));
    let mut texts = Vec::new();
    for f in sys::DEBUGFS_FILES {
        texts.push((
            f.to_string(),
            io(f, std::fs::read_to_string(sys::debugfs_path(f)))?,
        ));
    }
    texts.push((
        "fdinfo".into(),
        io(
            "fdinfo",
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", dev.fd())),
        )?,
    ));
    let log = io(
        "read /dev/kmsg",
        Kmsg::from_start().and_then(|mut k| k.read_new()),
    )?;
    let ours: Vec<String> = log
        .into_iter()
        .filter(|l| l.contains("rust_pagefault_demo"))
        .collect();
    ensure!(!ours.is_empty(), "no kernel log line of the module");
    texts.push(("kernel log".into(), ours.join("\n")));
    for (what, text) in &texts {
        let found = parse::kernel_pointers(text);
        ensure!(found.is_empty(), "{what} shows kernel pointers {found:x?}");
    }
    Ok(())
}
