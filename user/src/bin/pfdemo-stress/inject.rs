//! Fault injection for `pfdemo-stress run --inject`: the debug kernel's `fail_page_alloc` and
//! `failslab`, limited to the tasks that ask for it.

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
