//! What the cases expect and how they read the module: counters and their deltas, PFNs from
//! `frames` and pagemap, the pages a fault maps under `prefault` and `huge`, and the tally of
//! bad inputs for the reliability figures. Every group `use`s all of it.

pub use pfdemo::ensure;
pub use pfdemo::harness::{base_params, in_child, module_path, params_with, reload, Case, Check};
pub use pfdemo::io;
pub use pfdemo::parse::{self, Stats};
pub use pfdemo::sys::{self, page_size, read_frames, read_stats, Device, Kmsg, Mapping, Pagemap};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn stats() -> Result<Stats, String> {
    io("read stats", read_stats())
}

/// Bad inputs tried (each refused or handled as the README's table says), for the
/// reliability figures.
pub static BAD_INPUTS: AtomicUsize = AtomicUsize::new(0);

pub fn tried(n: usize) {
    BAD_INPUTS.fetch_add(n, Ordering::Relaxed);
}

/// The counter `name`; a stats file without it fails the case (no silent 0).
pub fn stat(s: &Stats, name: &str) -> Result<u64, String> {
    s.value(name).map_err(|e| e.to_string())
}

/// Checks the counter deltas since `before` (name, expected delta).
pub fn deltas(before: &Stats, expect: &[(&str, i64)]) -> Check {
    let now = stats()?;
    for (name, want) in expect {
        let got = now.change(before, name).map_err(|e| e.to_string())?;
        if got != *want {
            let moved: Vec<String> = now
                .0
                .keys()
                .filter(|k| now.delta(before, k) != 0)
                .map(|k| format!("{k} {:+}", now.delta(before, k)))
                .collect();
            return Err(format!(
                "{name} moved by {got}, expected {want} (moved: {})",
                moved.join(", ")
            ));
        }
    }
    Ok(())
}

/// The PFN that `frames` lists for (instance, pgoff).
pub fn frame_pfn(instance: u64, pgoff: u64) -> Result<Option<u64>, String> {
    Ok(io("read frames", read_frames())?
        .into_iter()
        .find(|r| r.instance == instance && r.pgoff == pgoff)
        .map(|r| r.pfn))
}

pub fn pagemap_pfn(pm: &mut Pagemap, va: usize) -> Result<Option<u64>, String> {
    Ok(io("read pagemap", pm.entry(va))?.pfn)
}

pub fn pm_pfn_absent(pm: &mut Pagemap, map: &Mapping, page: usize) -> Result<bool, String> {
    Ok(!io("pagemap", pm.entry(map.addr(page)))?.present)
}

/// Pages each fault maps (the module's `prefault` setting).
pub fn prefault() -> Result<usize, String> {
    Ok(stat(&stats()?, "prefault")?.max(1) as usize)
}

/// Which of `touches` (in order) fault when a mapping of `pages` pages, none mapped yet, is
/// touched: a fault maps the page and up to `prefault - 1` after it, within the mapping. Also
/// returns the pages present afterwards.
pub fn fault_pattern(
    touches: impl IntoIterator<Item = usize>,
    pages: usize,
) -> Result<(Vec<bool>, Vec<bool>), String> {
    let k = prefault()?;
    let mut present = vec![false; pages];
    let mut faulted = Vec::new();
    for p in touches {
        faulted.push(!present[p]);
        if !present[p] {
            present[p..(p + k).min(pages)]
                .iter_mut()
                .for_each(|x| *x = true);
        }
    }
    Ok((faulted, present))
}

/// How many times our handler runs for `touches` (see [`fault_pattern`]).
pub fn expected_faults(
    touches: impl IntoIterator<Item = usize>,
    pages: usize,
) -> Result<i64, String> {
    let (faulted, _) = fault_pattern(touches, pages)?;
    Ok(faulted.iter().filter(|f| **f).count() as i64)
}

/// Pages in one frame: 512 with `huge`, else 1.
pub fn unit() -> Result<usize, String> {
    Ok(if stat(&stats()?, "huge")? == 1 {
        512
    } else {
        1
    })
}

/// Pages allocated when the pages `touched` get their frames: every frame they fall in.
pub fn allocs(touched: impl IntoIterator<Item = usize>) -> Result<i64, String> {
    let u = unit()?;
    let frames: std::collections::BTreeSet<usize> = touched.into_iter().map(|p| p / u).collect();
    Ok((frames.len() * u) as i64)
}

/// The errno of a failed call; `None` if it worked.
pub fn errno_of<T>(r: Result<T, impl std::borrow::Borrow<std::io::Error>>) -> Option<i32> {
    r.err().and_then(|e| e.borrow().raw_os_error())
}
