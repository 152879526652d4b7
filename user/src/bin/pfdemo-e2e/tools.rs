//! The `pfdemo` tools, run as the guest's user would: their one-line explanations of a bad
//! environment, and `touch`, `frames`, `verify` and `stats` against debugfs and pagemap.
//!
//! The first case unloads and reloads the module: the counters start again from zero.

pub(crate) mod invoke;

use crate::expect::*;
use invoke::{output, parse_touch, pfdemo, Held};
use std::process::Command;

pub const CASES: &[Case] = &[
    (
        "the tools explain a missing module, root or debugfs in one line",
        tools_explain_what_is_missing,
    ),
    (
        "pfdemo touch --map rows, frames --instance and verify agree with debugfs",
        pfdemo_touch_frames_and_verify,
    ),
    (
        "pfdemo touch --private and --threads 2",
        pfdemo_touch_private_and_threads,
    ),
    (
        "pfdemo stats shows the counters and the histogram",
        pfdemo_stats_shows_the_counters,
    ),
];

/// The tools say in one line what is missing, and how to fix it.
fn tools_explain_what_is_missing() -> Check {
    let (code, _, err) = output("/bin/pfdemo", &["stats"])?;
    ensure!(code == Some(0), "pfdemo stats failed as root: {err}");
    // Not root: a child drops to nobody and asks for the stats.
    refused_in_child(
        "as nobody",
        || {
            // SAFETY: dropping privileges in the child only.
            unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 }
        },
        &["not root", "run as root"],
    )?;
    // No debugfs: a child in a mount namespace of its own unmounts it.
    refused_in_child(
        "without debugfs",
        || {
            // SAFETY: the child alone moves to a new mount namespace, where nothing
            // propagates back, and unmounts debugfs there.
            unsafe {
                libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) == 0
                    && libc::umount2(c"/sys/kernel/debug".as_ptr(), libc::MNT_DETACH) == 0
            }
        },
        &["debugfs is not mounted", "mount -t debugfs"],
    )?;
    ensure!(
        std::fs::metadata(sys::DEBUGFS).is_ok(),
        "debugfs went away outside the child's namespace"
    );
    // A reader that goes away early (`| head`) ends pfdemo quietly, without a panic. 4096
    // frames make `frames` print far more than a pipe holds, so the write must hit EPIPE.
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(4096, 0, true))?;
    (0..4096).for_each(|p| map.write(p, 0, 1));
    let script = "/bin/pfdemo frames 2>/tmp/pipe.err | head -n 1 >/dev/null; cat /tmp/pipe.err";
    let piped = io(
        "pfdemo frames | head",
        Command::new("sh").args(["-c", script]).output(),
    )?;
    drop((map, dev));
    let said = String::from_utf8_lossy(&piped.stdout);
    ensure!(
        !said.contains("panicked"),
        "pfdemo panicked on a closed pipe: {said}"
    );
    // No module: the device is missing.
    tried(1);
    ensure!(sys::unload_module().is_ok(), "rmmod failed");
    let out = output("/bin/pfdemo", &["stats"]);
    reload(&[])?;
    let (code, _, err) = out?;
    ensure!(
        code == Some(2)
            && err.lines().count() == 1
            && err.contains("not loaded")
            && err.contains("insmod"),
        "without the module: status {code:?}, {err:?} (expected exit 2 and one line)"
    );
    Ok(())
}

/// `pfdemo touch --pages 16 --stride 2 --map`, held: every row's PFNs against `frames` and
/// pagemap, the per-page fault column and the picture; then `pfdemo frames --instance`
/// and `pfdemo verify` on the held process.
fn pfdemo_touch_frames_and_verify() -> Check {
    let held = Held::start(&["--pages", "16", "--stride", "2", "--map"])?;
    let t = parse_touch(&held.lines)?;
    let targets: Vec<usize> = (0..16).step_by(2).collect();
    let (faulted, present) = fault_pattern(targets.iter().copied(), 16)?;
    let rows: Vec<_> = io("frames", read_frames())?
        .into_iter()
        .filter(|r| r.instance == t.instance)
        .collect();
    let frames: std::collections::BTreeMap<u64, u64> =
        rows.iter().map(|r| (r.pgoff, r.pfn)).collect();
    let file_phys: std::collections::BTreeMap<u64, u64> =
        rows.iter().map(|r| (r.pgoff, r.phys)).collect();
    ensure!(
        t.rows.len() == targets.len(),
        "{} rows for {} touched pages",
        t.rows.len(),
        targets.len()
    );
    for ((row, &page), &fault) in t.rows.iter().zip(&targets).zip(&faulted) {
        let (p, pm_pfn, fr_pfn, faults) = row;
        let listed = frames.get(&(page as u64)).copied();
        ensure!(
            *p == page && pm_pfn.is_some() && pm_pfn == fr_pfn && *fr_pfn == listed,
            "page {page}: row {row:?}, frames file {listed:x?}"
        );
        let want = if fault { "+1" } else { "+0" };
        ensure!(
            faults == want,
            "page {page}: faults column {faults:?}, expected {want}"
        );
    }
    let want_totals = (
        expected_faults(targets.iter().copied(), 16)?,
        allocs(
            present
                .iter()
                .enumerate()
                .filter(|(_, p)| **p)
                .map(|(i, _)| i),
        )?,
    );
    ensure!(
        t.totals == want_totals,
        "module totals (faults, allocated) {:?}, expected {want_totals:?}",
        t.totals
    );
    ensure!(
        t.pictures.len() == targets.len(),
        "{} map lines for {} touches",
        t.pictures.len(),
        targets.len()
    );
    for (pic, &page) in t.pictures.iter().zip(&targets) {
        let cells: Vec<char> = pic.chars().skip(1).take(16).collect();
        ensure!(
            cells.len() == 16
                && cells[page] == '*'
                && cells.iter().filter(|c| **c == '*').count() == 1
                && pic.ends_with(&format!("] touched page {page}")),
            "map line {pic:?} for page {page}"
        );
    }
    // pfdemo frames --instance: exactly that instance's rows, as the frames file has them.
    let id = t.instance.to_string();
    let out = pfdemo(&["frames", "--instance", &id])?;
    let mut listed = std::collections::BTreeMap::new();
    for l in out.lines().skip(1) {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() == 2 && cols[1] == "frame(s)" {
            ensure!(
                cols[0] == frames.len().to_string(),
                "pfdemo frames counts {}, the file has {}",
                cols[0],
                frames.len()
            );
            continue;
        }
        let num = |s: &str| -> Option<u64> {
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        };
        let v: Vec<Option<u64>> = cols.iter().map(|c| num(c)).collect();
        let [Some(inst), Some(pgoff), Some(pfn), Some(phys)] = v[..] else {
            return Err(format!("pfdemo frames: bad row {l:?}"));
        };
        // The phys column is the module's own (the frames file's fourth column, which the
        // tool prints as read): it must be the PFN's address, and what the file says.
        let file_phys = file_phys.get(&pgoff).copied();
        ensure!(
            inst == t.instance && phys == pfn * page_size() as u64 && Some(phys) == file_phys,
            "pfdemo frames --instance {id}: row {l:?}, the file's phys {file_phys:x?}"
        );
        listed.insert(pgoff, pfn);
    }
    ensure!(
        listed == frames && out.lines().last() == Some(&format!("{} frame(s)", frames.len())),
        "pfdemo frames --instance {id} lists {listed:x?}, the frames file {frames:x?}"
    );
    // pfdemo verify, for the held process and for every process: all pages agree.
    let pages = present.iter().filter(|p| **p).count();
    let line = format!(
        "pid {}: {pages} mapped device pages checked, 0 mismatches",
        held.pid()
    );
    let pid = held.pid().to_string();
    for args in [&["verify", "--pid", &pid][..], &["verify"][..]] {
        let out = pfdemo(args)?;
        ensure!(
            out.lines().any(|l| l == line),
            "pfdemo {args:?} said {out:?}, expected a line {line:?}"
        );
    }
    drop(held);
    let left = io("frames", read_frames())?
        .iter()
        .filter(|r| r.instance == t.instance)
        .count();
    ensure!(left == 0, "{left} frames left after pfdemo touch ended");
    Ok(())
}

/// `pfdemo touch --private` and `--threads 2` work, and their rows say what happened.
fn pfdemo_touch_private_and_threads() -> Check {
    let out = pfdemo(&["touch", "--pages", "8", "--private"])?;
    let lines: Vec<String> = out.lines().map(String::from).collect();
    let t = parse_touch(&lines)?;
    ensure!(t.rows.len() == 8, "--private: {} rows", t.rows.len());
    for (page, pm_pfn, fr_pfn, _) in &t.rows {
        // The write made a private copy: not the instance's frame.
        ensure!(
            pm_pfn.is_some() && fr_pfn.is_some() && pm_pfn != fr_pfn,
            "--private page {page}: pagemap {pm_pfn:x?}, frames {fr_pfn:x?}"
        );
    }
    let out = pfdemo(&["touch", "--pages", "16", "--threads", "2"])?;
    let lines: Vec<String> = out.lines().map(String::from).collect();
    let t = parse_touch(&lines)?;
    ensure!(t.rows.len() == 16, "--threads 2: {} rows", t.rows.len());
    let mut column = 0;
    for (page, pm_pfn, fr_pfn, faults) in &t.rows {
        ensure!(
            pm_pfn.is_some() && pm_pfn == fr_pfn,
            "--threads 2 page {page}: pagemap {pm_pfn:x?}, frames {fr_pfn:x?}"
        );
        column += match faults.as_str() {
            "+0" => 0,
            "+1" => 1,
            other => return Err(format!("--threads 2 page {page}: faults column {other:?}")),
        };
    }
    // Each thread touches its own pages, so with one page per fault the column adds up to the
    // module's count. (With prefault, a thread's fault may map its neighbour's pages.)
    if prefault()? == 1 {
        ensure!(
            column == t.totals.0,
            "--threads 2: faults column sums to {column}, the module counted {}",
            t.totals.0
        );
    }
    ensure!(column >= 1, "--threads 2: no page faulted");
    Ok(())
}

/// `pfdemo stats` prints every counter with the value the stats file has, and the latency
/// histogram's total.
fn pfdemo_stats_shows_the_counters() -> Check {
    let before = stats()?;
    let out = pfdemo(&["stats"])?;
    let after = stats()?;
    for name in Stats::REQUIRED {
        let want = stat(&before, name)?;
        let shown = out.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse::<u64>().ok())?
        });
        ensure!(
            shown == Some(want) && stat(&after, name)? == want,
            "pfdemo stats shows {name} {shown:?}, the file {want} (then {})",
            stat(&after, name)?
        );
    }
    // The histogram's total: every fault, or those the `latency` switch times (files.rs).
    let timed: u64 = io("latency", sys::read_latency())?
        .iter()
        .map(|(_, c)| c)
        .sum();
    let header = format!("fault handler latency ({timed} faults):");
    ensure!(
        out.lines().any(|l| l == header) == (timed > 0),
        "line {header:?} expected {}in {out:?}",
        if timed > 0 { "" } else { "not " }
    );
    Ok(())
}

/// A bad environment the tools must explain: in a forked child, after `setup` (false if it
/// could not do its part), `pfdemo stats` must exit 2 with one line holding all of `words`.
fn refused_in_child(what: &str, setup: impl FnOnce() -> bool, words: &[&str]) -> Check {
    tried(1);
    let status = in_child(|| if setup() { one_line_exit_2(words) } else { 20 })?;
    ensure!(
        status == Ok(0),
        "{what}: {status:?} (20: setup, 21: message, 22: exit status)"
    );
    Ok(())
}

/// In a forked child: `pfdemo stats` must exit 2 with one line on stderr holding every one of
/// `words`. Returns the child's exit code: 0 if so, 21 for the message, 22 for the status.
fn one_line_exit_2(words: &[&str]) -> i32 {
    match Command::new("/bin/pfdemo").arg("stats").output() {
        Ok(o) if o.status.code() == Some(2) => {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.lines().count() == 1 && words.iter().all(|w| err.contains(w)) {
                0
            } else {
                eprintln!("pfdemo stats said {err:?}");
                21
            }
        }
        _ => 22,
    }
}
