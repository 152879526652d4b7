//! Loading and unloading: the parameters' defaults and checks, the cap on frames, and `rmmod`
//! while a file is open. Last, since every case here but the first reloads the module.

use crate::expect::*;

pub const CASES: &[Case] = &[
    (
        "max_total_pages defaults to a quarter of RAM",
        max_total_pages_defaults_to_a_quarter_of_ram,
    ),
    (
        "SIGBUS at max_total_pages, counts intact",
        sigbus_at_the_cap,
    ),
    (
        "max_total_pages holds under racing processes: SIGBUS + frames == touches",
        cap_holds_under_concurrent_faults,
    ),
    (
        "rmmod refused while a file is open, clean after",
        rmmod_refused_while_open,
    ),
    (
        "rmmod refused while any debugfs file is open, clean after",
        rmmod_refused_while_debugfs_open,
    ),
    (
        "invalid module parameters are refused with EINVAL and a log line",
        invalid_parameters_refused,
    ),
    (
        "an unknown module parameter is ignored with a warning",
        unknown_parameter_is_ignored_with_a_warning,
    ),
];

/// `max_total_pages` defaults to a quarter of RAM (MemTotal, in 4 KiB pages), unless
/// RPD_PARAMS sets it.
fn max_total_pages_defaults_to_a_quarter_of_ram() -> Check {
    let set = base_params()
        .iter()
        .find_map(|p| p.strip_prefix("max_total_pages=")?.parse::<u64>().ok());
    let mem_kb = io("/proc/meminfo", sys::meminfo_kb("MemTotal"))?;
    let want = match set {
        Some(n) if n > 0 => n,
        _ => (mem_kb / 4 / 4).max(1),
    };
    let got = stat(&stats()?, "max_total_pages")?;
    ensure!(
        got == want,
        "max_total_pages {got}, expected {want} (MemTotal {mem_kb} kB, RPD_PARAMS sets {set:?})"
    );
    Ok(())
}

/// Runs `body` with the module loaded with `max_pages=size` and `max_total_pages=cap`, then
/// loads it again with the base parameters (whatever `body` found).
fn with_cap(size: usize, cap: usize, body: impl FnOnce() -> Check) -> Check {
    reload(&[
        &format!("max_pages={size}"),
        &format!("max_total_pages={cap}"),
    ])?;
    let result = body();
    reload(&[])?;
    result
}

fn sigbus_at_the_cap() -> Check {
    // A cap smaller than the instance: the cap, not the size, stops growth. Sizes are in
    // frames of `u` pages (512 with huge frames), touched one page per frame.
    let u = unit()?;
    let (size, cap) = (64 * u, 16 * u);
    tried(3);
    with_cap(size, cap, || {
        let dev = io("open", Device::open())?;
        let map = io("mmap", dev.map(size, 0, true))?;
        for i in 0..16 {
            map.write(i * u, 0, i as u64);
        }
        let before = stats()?;
        let status = in_child(|| {
            map.write(16 * u, 0, 1);
            0
        })?;
        ensure!(
            status == Err(libc::SIGBUS),
            "touch past the cap ended with {status:?}, expected SIGBUS"
        );
        deltas(
            &before,
            &[("sigbus", 1), ("frames_allocated", 0), ("frames_live", 0)],
        )?;
        let s = stats()?;
        ensure!(
            stat(&s, "frames_live")? == cap as u64,
            "frames_live {} at the cap {cap}",
            s.get("frames_live")
        );
        // Pages below the cap are intact, and a second instance is capped too.
        for i in 0..16 {
            ensure!(map.read(i * u, 0) == i as u64, "frame {i} changed");
        }
        let other = io("open", Device::open())?;
        let om = io("mmap", other.map(1, 0, true))?;
        let status = in_child(|| {
            om.write(0, 0, 1);
            0
        })?;
        ensure!(
            status == Err(libc::SIGBUS),
            "second instance got a frame past the cap"
        );
        drop((om, other, map, dev));
        let s = stats()?;
        ensure!(
            stat(&s, "frames_live")? == 0
                && stat(&s, "frames_allocated")? == stat(&s, "frames_freed")?,
            "frames leaked: {:?}",
            s.0
        );
        // A mapping past max_pages is refused at mmap time.
        let dev = io("open", Device::open())?;
        ensure!(
            errno_of(dev.map(size + 1, 0, true)) == Some(libc::EINVAL),
            "mmap past max_pages={size} not refused"
        );
        Ok(())
    })
}

/// Processes race first touches of distinct frames of one instance past `max_total_pages`;
/// `frames_live`, sampled while they run and at the end, never exceeds the cap, and at the end the
/// frames allocated and the `SIGBUS`es (one per racer: each dies at its first refused page)
/// add up to the touches made. The budget is exact near the cap, so the racers together fill
/// it exactly.
fn cap_holds_under_concurrent_faults() -> Check {
    use std::sync::atomic::Ordering::SeqCst;
    const RACERS: usize = 4;
    // Touches `stride` pages apart (a frame each, beyond the prefault window), and enough of
    // them for each racer alone to reach the cap: near it a prefault batch does not fit and
    // a touch takes one page only, so up to `cap` pages' worth of touches.
    let (u, k) = (unit()?, prefault()?);
    let stride = u.max(k);
    let cap = 40 * stride;
    let touches_each = 40 * k + 8;
    let size = RACERS * touches_each * stride;
    with_cap(size, cap, || {
        let dev = io("open", Device::open())?;
        let map = io("mmap", dev.map(size, 0, true))?;
        // Word 0: go; word 1 + r: touches racer r started.
        let shared = SharedWords::new(1 + RACERS)?;
        let before = stats()?;
        let mut children = Vec::new();
        for r in 0..RACERS {
            let racer = || {
                // SAFETY: setting a signal disposition in this single-threaded child.
                unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
                while shared.word(0).load(SeqCst) == 0 {
                    std::hint::spin_loop();
                }
                // Frames r, r + RACERS, ...: one page of each, until the cap's SIGBUS.
                for t in (r..size / stride).step_by(RACERS) {
                    shared.word(1 + r).fetch_add(1, SeqCst);
                    map.write(t * stride, 0, t as u64 + 1);
                }
                0
            };
            // SAFETY: this process is single-threaded, so the child may do anything.
            children.push(io("fork", unsafe { pfdemo::harness::fork(racer) })?);
        }
        shared.word(0).store(1, SeqCst);
        let mut highest = 0;
        let mut exits = Vec::new();
        for child in children {
            // Sample frames_live while the racers run (the wait polls).
            let s = stats()?;
            highest = highest.max(stat(&s, "frames_live")?);
            exits.push(io(
                "wait",
                child.wait_within(std::time::Duration::from_secs(60)),
            )?);
        }
        let sigbus = exits
            .iter()
            .filter(|e| e.is_some_and(|e| e.result() == Err(libc::SIGBUS)))
            .count();
        ensure!(
            sigbus == RACERS,
            "{sigbus} of {RACERS} racers ended with SIGBUS: {exits:?}"
        );
        let s = stats()?;
        let live = stat(&s, "frames_live")?;
        highest = highest.max(live);
        let touches: u64 = (0..RACERS).map(|r| shared.word(1 + r).load(SeqCst)).sum();
        // Exact without prefault; a prefault batch that does not fit under the cap is not
        // mapped at all, so with one the racers may stop short of it.
        ensure!(
            highest <= cap as u64 && (k > 1 || live == cap as u64),
            "frames_live reached {highest}, ends at {live}; the cap is {cap}"
        );
        deltas(&before, &[("sigbus", RACERS as i64)])?;
        // Every touch that worked has its frame, holding its racer's value (only those are
        // read: a read of any other page would be refused at the cap).
        let id = io("fdinfo", dev.fdinfo())?.instance;
        let rows = io("frames", read_frames())?;
        let touched: Vec<usize> = rows
            .iter()
            .filter(|r| r.instance == id && r.pgoff % stride as u64 == 0)
            .map(|r| r.pgoff as usize / stride)
            .collect();
        ensure!(
            touched.len() as u64 + RACERS as u64 == touches,
            "{} touched pages have frames, with {RACERS} SIGBUS, for {touches} touches",
            touched.len()
        );
        for t in touched {
            let v = map.read(t * stride, 0);
            ensure!(v == t as u64 + 1, "touch {t}'s page holds {v:#x}");
        }
        Ok(())
    })
}

fn rmmod_refused_while_open() -> Check {
    let dev = io("open", Device::open())?;
    // The open file holds a reference on the module: delete_module says EWOULDBLOCK (EAGAIN).
    tried(1);
    let busy = sys::unload_module();
    if busy.is_ok() {
        reload(&[])?;
    }
    ensure!(
        busy == Err(libc::EAGAIN),
        "rmmod with a file open: {busy:?}, expected Err(EAGAIN)"
    );
    drop(dev);
    ensure!(
        sys::unload_module().is_ok(),
        "rmmod failed after the last close"
    );
    ensure!(
        std::fs::metadata(sys::DEVICE).is_err(),
        "device node left after rmmod"
    );
    reload(&[])?;
    Ok(())
}

/// Every debugfs file of the module pins it while open, as the device does: `rmmod` fails,
/// and the file can still be read and closed. (Without an owner in the file's table, `rmmod`
/// succeeded and the `close()` after it oopsed in debugfs's `full_proxy_release`.)
fn rmmod_refused_while_debugfs_open() -> Check {
    let mut names: Vec<String> = sys::DEBUGFS_FILES.iter().map(|n| n.to_string()).collect();
    names.extend(["heads", "enable", "cpu0"].map(|n| format!("events/{n}")));
    for name in &names {
        let path = sys::debugfs_path(name);
        let mut file = io(&format!("open {path}"), std::fs::File::open(&path))?;
        tried(1);
        let busy = sys::unload_module();
        if busy.is_ok() {
            // The module is gone under an open file: closing it now would oops the kernel.
            // Keep it open for ever and load the module again, so the cases after this one run.
            std::mem::forget(file);
            reload(&[])?;
            return Err(format!(
                "rmmod with {name} open succeeded, expected Err(EAGAIN)"
            ));
        }
        ensure!(
            busy == Err(libc::EAGAIN),
            "rmmod with {name} open: {busy:?}, expected Err(EAGAIN)"
        );
        // Still served: a ring file is read in whole 512-byte records, the others to the end.
        if name.starts_with("events/cpu") {
            let mut record = [0u8; 512];
            io(
                &format!("read {path}"),
                std::io::Read::read(&mut file, &mut record),
            )?;
        } else {
            let mut text = Vec::new();
            io(
                &format!("read {path}"),
                std::io::Read::read_to_end(&mut file, &mut text),
            )?;
            ensure!(!text.is_empty(), "{name} reads empty after a refused rmmod");
        }
    }
    ensure!(
        sys::unload_module().is_ok(),
        "rmmod failed after the debugfs files were closed"
    );
    ensure!(
        std::fs::metadata(sys::DEBUGFS).is_err(),
        "debugfs directory left after rmmod"
    );
    reload(&[])?;
    Ok(())
}

fn invalid_parameters_refused() -> Check {
    let _ = sys::unload_module();
    let ours = "rust_pagefault_demo: invalid module parameters:";
    let range = |p: &str, lo: u32, hi: u32| format!("{ours} {p} must be between {lo} and {hi}");
    let malformed =
        |v: &str, p: &str| format!("rust_pagefault_demo: `{v}' invalid for parameter `{p}'");
    // (parameters, the kernel log line it must cause): values out of range reach the module's
    // own check; malformed ones are refused by the kernel's parameter parser first.
    let cases = [
        ("max_pages=0", range("max_pages", 1, 16777216)),
        ("max_pages=16777217", range("max_pages", 1, 16777216)),
        (
            "max_total_pages=999999999999",
            format!("{ours} max_total_pages must not exceed the machine's RAM in pages"),
        ),
        ("prefault=0", range("prefault", 1, 512)),
        ("prefault=513", range("prefault", 1, 512)),
        (
            "huge=1 prefault=2",
            format!("{ours} prefault and huge cannot be combined"),
        ),
        (
            "huge=1 max_total_pages=511",
            format!("{ours} with huge, max_total_pages must hold one 2 MiB frame (512 pages)"),
        ),
        ("max_pages=abc", malformed("abc", "max_pages")),
        ("max_pages=-1", malformed("-1", "max_pages")),
        ("max_total_pages=1x", malformed("1x", "max_total_pages")),
        ("huge=maybe", malformed("maybe", "huge")),
    ];
    tried(cases.len());
    let mut problems = Vec::new();
    for (bad, line) in &cases {
        let words: Vec<&str> = bad.split_whitespace().collect();
        let (loaded, log) = kernel_log_of(|| sys::load_module(&module_path(), &words))?;
        if loaded.is_ok() {
            let _ = sys::unload_module();
        }
        if loaded != Err(libc::EINVAL) {
            problems.push(format!(
                "{bad}: finit_module {loaded:?}, expected Err(EINVAL)"
            ));
        }
        if !log.iter().any(|l| l == line) {
            problems.push(format!(
                "{bad}: no {line:?} in the kernel log, which says {log:?}"
            ));
        }
    }
    reload(&[])?;
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// An unknown parameter is not ours to refuse: the kernel loads the module and warns.
fn unknown_parameter_is_ignored_with_a_warning() -> Check {
    let _ = sys::unload_module();
    tried(1);
    let params = params_with(&["no_such_knob=1"]);
    let words: Vec<&str> = params.iter().map(String::as_str).collect();
    let (loaded, log) = kernel_log_of(|| sys::load_module(&module_path(), &words))?;
    if loaded.is_err() {
        reload(&[])?;
    }
    ensure!(
        loaded.is_ok(),
        "insmod with an unknown parameter: {loaded:?}"
    );
    let warning = "rust_pagefault_demo: unknown parameter 'no_such_knob' ignored";
    ensure!(
        log.iter().any(|l| l == warning),
        "no {warning:?} in the kernel log: {log:?}"
    );
    Ok(())
}
