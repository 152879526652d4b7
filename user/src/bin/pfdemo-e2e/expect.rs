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

/// The MMU's view of `va` (the module's page-table walk of this process): the kernel-side
/// evidence for what a fault mapped, where pagemap cannot tell a PMD leaf from PTEs.
pub fn walk_at(dev: &Device, va: usize) -> Result<pfdemo::walk::Walk, String> {
    io("RPD_IOC_WALK", pfdemo::walk::walk(dev.fd(), va))
}

/// How the page at `va` is mapped: `End::HugePmd` or `End::Leaf` (a PTE), with its PFN.
pub fn mapped_as(dev: &Device, va: usize) -> Result<(End, Option<u64>), String> {
    let w = walk_at(dev, va)?;
    Ok((w.end(), w.frame_pfn()))
}

pub use pfdemo::walk::End;

/// The calls of the huge handler that a first touch at `va` makes, each counted in
/// `huge_faults` (and, unless it maps a PMD, in `huge_fallbacks`): the core asks at PUD
/// level when the walk ends at an empty PUD or above it, then at PMD level when the PMD is
/// empty. None on an instance without `huge` (no `huge_fault` in its operations). Read from
/// the page tables before the touch, so the expectation does not depend on where the
/// mapping happened to land.
pub fn huge_calls_at(dev: &Device, va: usize) -> Result<i64, String> {
    if unit()? != 512 {
        return Ok(0);
    }
    let w = walk_at(dev, va)?;
    ensure!(
        w.end() == End::Empty,
        "{va:#x} is mapped before its first touch: {w}"
    );
    Ok(match w.stop_level() {
        Some(level) if level <= 2 => 2,
        Some(3) => 1,
        _ => 0,
    })
}

/// The PMD-level call that a first touch falling back to 4 KiB faults makes once more when
/// the module runs without its `map_pages` hook (`map_pages=0`): 7.3 then refuses the 4 KiB
/// fault under the per-VMA lock and redoes the whole fault under the mmap lock, where the
/// PMD table exists by now (no PUD-level call again) and the PMD entry is still empty. One
/// on a huge instance so switched, else none.
pub fn retried_pmd_call() -> Result<i64, String> {
    Ok(i64::from(
        unit()? == 512 && stat(&stats()?, "map_pages")? == 0,
    ))
}

/// Words shared with forked children (a `MAP_SHARED` anonymous mapping): counters, flags and
/// results that racers in several processes write and the parent reads.
pub struct SharedWords(Mapping);

impl SharedWords {
    pub fn new(words: usize) -> Result<Self, String> {
        let pages = (words * 8).div_ceil(page_size());
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let map = io(
            "mmap shared words",
            Mapping::new(None, pages, 0, prot, libc::MAP_SHARED),
        )?;
        Ok(Self(map))
    }

    /// Word `i`, as an atomic: the mapping is page-aligned, so every word is aligned.
    pub fn word(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(i * 8 < self.0.len(), "word {i} outside the shared mapping");
        // SAFETY: the word lies inside the mapping (checked), is 8-byte aligned, lives as
        // long as `self`, and is only ever accessed atomically.
        unsafe { &*((self.0.addr(0) + i * 8) as *const std::sync::atomic::AtomicU64) }
    }
}

/// The minor faults of `access`, by the kernel's count (`/proc/self/stat` around it).
pub fn minor_faults_of(sampler: &sys::StatSampler, access: impl FnOnce()) -> Result<u64, String> {
    let (before, after) = io("/proc/self/stat", sampler.minflt_around(access))?;
    Ok(after - before)
}

/// The total count of the `latency` histogram.
pub fn latency_total() -> Result<u64, String> {
    Ok(io("latency", sys::read_latency())?
        .iter()
        .map(|(_, c)| c)
        .sum())
}

/// The kernel log lines that `act` caused.
pub fn kernel_log_of<T>(act: impl FnOnce() -> T) -> Result<(T, Vec<String>), String> {
    let mut kmsg = io("open /dev/kmsg", Kmsg::from_now())?;
    let result = act();
    Ok((result, io("read /dev/kmsg", kmsg.read_new())?))
}

/// What starts a kernel report (a bug, a warning, a sanitizer's finding): the words
/// `scripts/test.sh` scans the whole guest log for, but for `RIP:`, which an expected report
/// such as the OOM killer's carries too (the user registers of the faulting task).
const REPORTS: &[&str] = &[
    "BUG:",
    "WARNING:",
    "KASAN",
    "UBSAN",
    "Oops",
    "Kernel panic",
    "panicked at",
    "general protection",
    "possible circular locking",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "sleeping function called from invalid context",
    "Bad page",
];

/// The lines of `log` that are (the first lines of) kernel reports.
pub fn kernel_reports(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| REPORTS.iter().any(|r| l.contains(r)))
        .collect()
}
