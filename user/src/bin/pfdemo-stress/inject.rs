//! Fault injection for `pfdemo-stress run --inject`: the debug kernel's `fail_page_alloc` and
//! `failslab`, limited to the tasks that ask for it.

use crate::worker::Counts;
use pfdemo::sys::Device;
use std::sync::atomic::Ordering::Relaxed;

/// Sets a fault-injection knob of the debug kernel.
pub fn knob(attr: &str, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/sys/kernel/debug/{attr}/{file}"), value)
}

pub fn injection(percent: u32) -> std::io::Result<()> {
    // fail_page_alloc leaves order-0 pages alone by default (min-order 1): our 4 KiB frames
    // are order 0, and the point is to fail them. (User memory, __GFP_HIGHMEM, stays exempt.)
    knob("fail_page_alloc", "min-order", "0")?;
    for attr in ["fail_page_alloc", "failslab"] {
        knob(attr, "task-filter", "Y")?;
        knob(attr, "probability", &percent.to_string())?;
        knob(attr, "interval", "1")?;
        knob(attr, "times", "1000000")?;
        knob(attr, "verbose", "0")?;
        knob(attr, "ignore-gfp-wait", "N")?;
    }
    Ok(())
}

/// Failures injected so far, summed over both attributes (`times` counts down).
pub fn injected() -> u64 {
    ["fail_page_alloc", "failslab"]
        .iter()
        .map(|a| {
            let left = std::fs::read_to_string(format!("/sys/kernel/debug/{a}/times"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(1_000_000);
            (1_000_000 - left).max(0) as u64
        })
        .sum()
}

/// Opens (and closes at once) the device with this thread's allocations failed as the
/// workers' are, until `want` opens have got `ENOMEM` or `tries` opens were made, adding
/// those to `counts.open_nomem` (any other error to `counts.unexpected`). The workers open
/// a few hundred times, and get a few dozen `ENOMEM`s: too few to judge how they split
/// between the module and the kernel. Nothing here allocates in user space (the path is
/// made a C string on the stack), so the failed allocations are the kernel's only.
pub fn open_burst(want: u64, tries: u64, counts: &Counts) -> std::io::Result<()> {
    std::fs::write("/proc/thread-self/make-it-fail", "1")?;
    let mut got = 0;
    for _ in 0..tries {
        if got >= want {
            break;
        }
        match Device::open() {
            Ok(dev) => drop(dev),
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => got += 1,
            Err(e) => {
                eprintln!("stress: open under injection: unexpected error {e}");
                counts.unexpected.fetch_add(1, Relaxed);
            }
        }
    }
    counts.open_nomem.fetch_add(got, Relaxed);
    // Turning injection off opens the proc file, an allocation that the injection still on
    // for this thread may fail: try again until it takes.
    let mut refused = 0;
    loop {
        match std::fs::write("/proc/thread-self/make-it-fail", "0") {
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && refused < 1000 => refused += 1,
            done => return done,
        }
    }
}
