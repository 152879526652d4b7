//! `pfdemo trace` and the library's join against the kernel's own records: N first touches
//! give exactly N rows, in the touch order, at the touched addresses, with the error code
//! the CPU pushed (a write: not-present|write|user; a read: not-present|user), and one frame
//! per row that the buddy allocator's `mm_page_alloc`, our handler's record and
//! `/proc/self/pagemap` all name; a command run through `pfdemo trace --` shows its faults,
//! and tracefs is left as it was found; a recorder switched off is switched on, and said so.
//!
//! The last case reloads the module (with `events=0`, then back).

use crate::expect::*;
use crate::tools::invoke::{output, parse_touch, pfdemo};
use pfdemo::trace::{self, DeviceRange, Timeline, Tracer};
use pfdemo::tracefs::{Options, TRACEFS};

pub const CASES: &[Case] = &[
    (
        "trace: 37 writes then 19 reads give 56 joined rows in order: error codes, mm_page_alloc pfn = handler pfn = pagemap pfn",
        touches_join_one_to_one,
    ),
    (
        "trace: pfdemo trace -- pfdemo touch shows the command's faults and leaves tracefs as it was",
        a_command_traced,
    ),
    (
        "trace: a kernel-mode access (read(2) into the mapping) is a handler call without a CPU fault, reported",
        a_kernel_access_is_reported,
    ),
    (
        "trace: copy on write of a private mapping: the CPU's protection fault, no handler call, reported",
        copy_on_write_is_reported,
    ),
    (
        "trace: a trace buffer too small for the run: its losses are counted, every touched page still accounted for",
        a_full_buffer_is_reported,
    ),
    (
        "trace: pfdemo trace -- CMD exits with CMD's status (3 for exit 3, 128+9 for SIGKILL)",
        the_command_status_passes_through,
    ),
    (
        "trace: with the recorder off (its default), pfdemo trace switches it on, says so, and traces",
        recorder_off_is_switched_on,
    ),
];

const WRITES: usize = 37;
const READS: usize = 19;

/// Pages between touches so that every touch is a first touch: one fault maps `prefault`
/// pages, or with `huge` a whole 2 MiB frame.
fn stride() -> Result<usize, String> {
    Ok(prefault()?.max(unit()?))
}

/// Runs `touch` on `map` traced (this process only), and joins; pagemap's frames added.
fn traced(map: &Mapping, touch: impl FnOnce(&Mapping)) -> Result<Timeline, String> {
    traced_with(4096, map, touch)
}

/// [`traced`] with a trace buffer of `buffer_kb` KiB per CPU.
fn traced_with(
    buffer_kb: u64,
    map: &Mapping,
    touch: impl FnOnce(&Mapping),
) -> Result<Timeline, String> {
    let me = std::process::id();
    let mut tracer = Tracer::new(&Options {
        pids: vec![me],
        follow_forks: false,
        buffer_kb,
    })?;
    tracer.start()?;
    touch(map);
    let mut t = tracer.finish(&[me], &[DeviceRange::of(map)])?;
    trace::add_pagemap(&mut t.rows)?;
    Ok(t)
}

fn touches_join_one_to_one() -> Check {
    let (stride, unit) = (stride()?, unit()?);
    let dev = io("open", Device::open())?;
    let pages = (WRITES + READS) * stride;
    // 2 MiB aligned, so that with `huge` every touch is a PMD-level fault.
    let map = io("mmap", dev.map_aligned(pages, 0, true, 512 * page_size()))?;
    let t = traced(&map, |map| {
        for n in 0..WRITES + READS {
            trace::touch(map, n * stride, n < WRITES);
        }
    })?;
    ensure!(
        t.complete(),
        "records that did not join: {} faults without a handler call, calls without a fault {:?}, new frames without an allocation {:?}, recorder dropped {} and lost {}, tracefs lost {}",
        t.faults_without_handler,
        t.unmatched_calls,
        t.calls_without_alloc,
        t.recorder_dropped,
        t.recorder_lost,
        t.trace_lost
    );
    ensure!(
        t.rows.len() == WRITES + READS,
        "{} rows for {} touches: {:?}",
        t.rows.len(),
        WRITES + READS,
        t.rows.iter().map(|r| r.address).collect::<Vec<_>>()
    );
    let order = if unit == 512 { 9 } else { 0 };
    let mut last_t = 0;
    for (n, r) in t.rows.iter().enumerate() {
        let va = map.addr(n * stride) as u64;
        let want = if n < WRITES {
            "not-present|write|user"
        } else {
            "not-present|user"
        };
        ensure!(
            r.address == va,
            "row {n}: address {:#x}, the touch was at {va:#x}",
            r.address
        );
        ensure!(
            r.error == want,
            "row {n} ({va:#x}): error code {:#x} = {}, expected {want}",
            r.error_code.0,
            r.error
        );
        ensure!(
            r.t_us >= last_t,
            "row {n} is earlier than the row before it"
        );
        last_t = r.t_us;
        let h = r.handler().ok_or(format!("row {n}: no handler call"))?;
        let alloc = r
            .alloc
            .as_ref()
            .ok_or(format!("row {n}: no mm_page_alloc"))?;
        ensure!(
            h.out == "mapped" && h.new && h.tid == r.tid,
            "row {n}: handler call {h:?}"
        );
        ensure!(
            alloc.order == order
                && Some(alloc.pfn) == h.pfn
                && h.pfn.is_some()
                && r.pagemap_pfn == h.pfn,
            "row {n} ({va:#x}): mm_page_alloc pfn {:#x} order {}, handler pfn {:?}, pagemap pfn {:?} (expected one frame, order {order})",
            alloc.pfn,
            alloc.order,
            h.pfn,
            r.pagemap_pfn
        );
    }
    let calls: usize = t.summary.iter().map(|s| s.count).sum();
    ensure!(
        calls == t.rows.iter().map(|r| r.calls.len()).sum::<usize>(),
        "the summary counts {calls} calls: {:?}",
        t.summary
    );
    Ok(())
}

/// The tracing instances below tracefs (none if it is not mounted) and whether it is.
fn tracefs_state() -> (bool, Vec<String>) {
    let instances = std::fs::read_dir(format!("{TRACEFS}/instances"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mounted = std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(2) == Some("tracefs")));
    (mounted, instances)
}

fn a_command_traced() -> Check {
    let stride = stride()?;
    let pages = 8 * stride;
    let before = tracefs_state();
    let (pages_s, stride_s) = (pages.to_string(), stride.to_string());
    let out = pfdemo(&[
        "trace",
        "--json",
        "--",
        "/bin/pfdemo",
        "touch",
        "--pages",
        &pages_s,
        "--stride",
        &stride_s,
    ])?;
    let after = tracefs_state();
    ensure!(
        before == after,
        "tracefs before pfdemo trace (mounted, instances): {before:?}, after: {after:?}"
    );
    // The command's own output comes first, then the JSON, from its first line "{" on.
    let lines: Vec<String> = out.lines().map(String::from).collect();
    let start = lines
        .iter()
        .rposition(|l| l == "{")
        .ok_or(format!("no JSON in {out}"))?;
    let touched = parse_touch(&lines[..start])?;
    let doc: serde_json::Value = serde_json::from_str(&lines[start..].join("\n"))
        .map_err(|e| format!("pfdemo trace --json: {e}: {out}"))?;
    let rows = doc["rows"].as_array().ok_or(format!("no rows: {doc}"))?;
    ensure!(
        rows.len() == touched.rows.len() && rows.len() == 8,
        "{} rows for the command's {} touches: {doc}",
        rows.len(),
        touched.rows.len()
    );
    for (n, (r, (page, pagemap, _, _))) in rows.iter().zip(&touched.rows).enumerate() {
        let calls = r["calls"].as_array().ok_or(format!("row {n}: no calls"))?;
        let h = calls
            .last()
            .ok_or(format!("row {n}: no handler call: {r}"))?;
        ensure!(
            r["error"] == "not-present|write|user" && h["pgoff"] == *page as u64,
            "row {n}: {r} (the command touched page {page})"
        );
        ensure!(
            h["pfn"].as_u64() == *pagemap,
            "row {n}: handler pfn {} but the command's pagemap says {pagemap:?}",
            h["pfn"]
        );
        if h["new"] == true {
            let alloc = r["alloc"]["pfn"].as_u64().ok_or(format!(
                "row {n}: a new frame without its mm_page_alloc: {r}"
            ))?;
            let order = r["alloc"]["order"].as_u64().unwrap_or(64);
            let pfn = h["pfn"].as_u64().unwrap_or(0);
            ensure!(
                alloc <= pfn && pfn < alloc + (1 << order),
                "row {n}: mm_page_alloc {alloc:#x} order {order} does not hold pfn {pfn:#x}"
            );
        }
    }
    for key in ["unmatched_calls", "calls_without_alloc"] {
        ensure!(doc[key] == serde_json::json!([]), "{key}: {}", doc[key]);
    }
    ensure!(
        doc["faults_without_handler"] == 0
            && doc["recorder_dropped"] == 0
            && doc["recorder_lost"] == 0
            && doc["trace_lost"] == 0,
        "lost or unmatched: {doc}"
    );
    ensure!(
        doc["faults_elsewhere"].as_u64() > Some(0),
        "the command's own faults (its text, stack, heap) are not counted: {}",
        doc["faults_elsewhere"]
    );
    Ok(())
}

/// A page filled by `read(2)` from /dev/zero faults in the kernel (clearing the user
/// buffer), not in user mode: the handler's calls have no `U`, and no page_fault_user names
/// them. The tool lists it, and the user-mode touch before it still joins.
fn a_kernel_access_is_reported() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(2 * stride()?, 0, true))?;
    let zero = io("open /dev/zero", std::fs::File::open("/dev/zero"))?;
    let second = stride()?;
    let mut got = 0;
    let t = traced(&map, |map| {
        trace::touch(map, 0, true);
        // SAFETY: reading 64 bytes into page `second` of our own mapping, which is larger.
        got = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&zero),
                map.addr(second) as *mut libc::c_void,
                64,
            )
        };
    })?;
    ensure!(
        got == 64,
        "read(2) from /dev/zero into the mapping gave {got}"
    );
    ensure!(
        t.rows.len() == 1
            && t.rows[0].address == map.addr(0) as u64
            && t.rows[0].handler().is_some(),
        "expected the one user-mode touch as the one row: {:?}",
        t.rows
    );
    let va = map.addr(second) as u64;
    // One call, or with `huge` a PMD-level call that falls back and the 4 KiB call after it.
    let calls = &t.unmatched_calls;
    ensure!(
        !calls.is_empty()
            && calls.iter().all(|c| c.addr == va && !c.how.contains('U'))
            && calls.last().is_some_and(|c| c.out == "mapped"),
        "expected the handler's calls without a CPU fault at {va:#x}, without U, the last mapping it: {calls:?}"
    );
    ensure!(
        t.faults_without_handler == 0 && t.calls_without_alloc.is_empty() && !t.complete(),
        "{t:?}"
    );
    Ok(())
}

/// A read maps the device's frame read-only in a private mapping; the write after it is a
/// protection fault that the kernel resolves by copying the page, without our handler: a
/// row with the CPU's protection|write|user and no call, counted as such, and the page now
/// on another frame (pagemap).
fn copy_on_write_is_reported() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(stride()?, 0, false))?;
    let t = traced(&map, |map| {
        trace::touch(map, 0, false);
        trace::touch(map, 0, true);
    })?;
    let codes: Vec<&str> = t.rows.iter().map(|r| r.error.as_str()).collect();
    ensure!(
        codes == ["not-present|user", "protection|write|user"],
        "expected a read fault then a protection fault at {:#x}: {:?}",
        map.addr(0),
        t.rows
    );
    let (read, write) = (&t.rows[0], &t.rows[1]);
    ensure!(
        read.handler().is_some() && write.calls.is_empty() && t.faults_without_handler == 1,
        "expected the read handled by us and the write by the kernel alone: {t:?}"
    );
    let ours = read.handler().and_then(|h| h.pfn);
    ensure!(
        write.pagemap_pfn.is_some() && write.pagemap_pfn != ours,
        "after the write, pagemap shows {:?}, our frame was {ours:?}: no copy?",
        write.pagemap_pfn
    );
    Ok(())
}

/// 400 first touches into a trace buffer of one page per CPU: tracefs overwrites the oldest
/// of their 800 events. The tool must say it lost events, and no touch may vanish: each
/// touched page is a row (its CPU fault survived) or a handler call listed without its CPU
/// fault. 400 touches stay within the recorder's 1024 records per CPU (two calls each with
/// `huge` on a mapping that is not 2 MiB aligned), so the recorder drops nothing.
fn a_full_buffer_is_reported() -> Check {
    const TOUCHES: usize = 400;
    let stride = prefault()?;
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(TOUCHES * stride, 0, true))?;
    let t = traced_with(4, &map, |map| {
        for n in 0..TOUCHES {
            trace::touch(map, n * stride, true);
        }
    })?;
    ensure!(
        t.recorder_dropped == 0 && t.recorder_lost == 0,
        "the recorder lost records too ({} dropped, {} lost): the case needs fewer touches",
        t.recorder_dropped,
        t.recorder_lost
    );
    ensure!(
        t.trace_lost > 0 && t.rows.len() < TOUCHES && !t.complete(),
        "a 4 KiB buffer held {} of {TOUCHES} faults and says it lost {} events",
        t.rows.len(),
        t.trace_lost
    );
    let page = |a: u64| (a - map.addr(0) as u64) as usize / page_size();
    let mut seen = std::collections::BTreeSet::new();
    seen.extend(
        t.rows
            .iter()
            .filter(|r| !r.calls.is_empty())
            .map(|r| page(r.address)),
    );
    seen.extend(t.unmatched_calls.iter().map(|c| page(c.addr)));
    let want: std::collections::BTreeSet<usize> = (0..TOUCHES).map(|n| n * stride).collect();
    ensure!(
        seen == want,
        "touched pages not accounted for: {:?} (rows {}, calls without a CPU fault {})",
        want.difference(&seen).collect::<Vec<_>>(),
        t.rows.len(),
        t.unmatched_calls.len()
    );
    Ok(())
}

fn the_command_status_passes_through() -> Check {
    for (script, want) in [("exit 3", 3), ("kill -9 $$", 128 + 9), ("true", 0)] {
        let (code, out, err) = output("/bin/pfdemo", &["trace", "--", "sh", "-c", script])?;
        ensure!(
            code == Some(want),
            "pfdemo trace -- sh -c {script:?} exited {code:?}, expected {want} (stdout {out:?}, \
             stderr {err:?})"
        );
    }
    Ok(())
}

fn recorder_off_is_switched_on() -> Check {
    reload(&["events=0"])?;
    let result = (|| {
        let (code, out, err) = output("/bin/pfdemo", &["trace", "--pages", "3", "--json"])?;
        let events = stat(&stats()?, "events")?;
        Ok::<_, String>((code, out, err, events))
    })();
    reload(&[])?;
    let (code, out, err, events) = result?;
    let rows = serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["rows"].as_array().map(|r| r.len()));
    ensure!(
        code == Some(0) && err.contains("switched the module's flight recorder on") && events == 1,
        "pfdemo trace with the recorder off exited {code:?}, said {err:?}, left events {events}"
    );
    let want = expected_faults(0..3, 3)? as usize;
    ensure!(
        rows == Some(want),
        "3 touches, {want} faults, gave {rows:?} rows:\n{out}"
    );
    Ok(())
}
