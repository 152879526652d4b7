//! What `pfdemo watch` shows, read afresh for every frame: the page map of a process's
//! device mappings (`/proc/PID/maps`, and `PAGEMAP_SCAN` on its pagemap: the kernel's page
//! tables, PMD leaves included) or of an instance (debugfs `frames`), the module's counters
//! (`stats`) and histogram (`latency`), and the target's faults from the flight recorder
//! (`events/`).

use super::view::{Page, Region, Snapshot};
use pfdemo::events::{Event, Reader};
use pfdemo::parse::{self, Stats};
use pfdemo::sys::{self, Pagemap};
use pfdemo::Res;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A process's mappings of the device.
    Pid(u32),
    /// An instance (an open file of the device), all its frames.
    Instance(u64),
}

/// Where the module's files are: the real ones, or a test's copies.
#[derive(Debug, Clone)]
pub struct Paths {
    pub debugfs: PathBuf,
    pub events: PathBuf,
    /// The path the watched process's maps lines name: the device.
    pub device: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            debugfs: sys::DEBUGFS.into(),
            events: pfdemo::events::EVENTS_DIR.into(),
            device: sys::DEVICE.into(),
        }
    }
}

/// Faults kept for the list, newest first.
const KEEP_FAULTS: usize = 256;

/// The flight recorder as this watch reads it.
enum Recorder {
    Reading(Reader),
    /// Why there are no events to read, with the fix.
    Unavailable(String),
}

/// The state between frames: the recorder's place, the faults seen, the previous counters
/// and page maps (for the rates and the freshly mapped pages).
pub struct Source {
    target: Target,
    paths: Paths,
    recorder: Recorder,
    faults: VecDeque<Event>,
    dropped: u64,
    previous: Option<(Stats, Instant)>,
    previous_pages: BTreeMap<(u64, usize), Vec<Page>>,
    /// The process's regions at its last frame (shown, marked, once it has gone).
    last_regions: Vec<Region>,
    /// An instance's size in pages and the processes holding it open.
    instance: Option<(u64, Vec<u32>)>,
    start_ns: u64,
    interval_ms: u64,
}

impl Source {
    /// A watch of `target`, checked: the process exists and maps the device, or the instance
    /// is open. The flight recorder is read from now on.
    pub fn new(target: Target, paths: Paths, interval_ms: u64) -> Res<Source> {
        let stats = read_stats(&paths)?;
        let instance = match target {
            Target::Pid(pid) => {
                match pid_regions(pid, &paths.device)? {
                    None => {
                        return Err(format!(
                            "no process {pid} (no /proc/{pid}/maps). Fix: give the pid of a running process that maps {}",
                            paths.device
                        ))
                    }
                    Some(r) if r.is_empty() => {
                        return Err(format!(
                            "process {pid} has no mapping of {} (no such line in /proc/{pid}/maps). Fix: watch a process that maps it (e.g. one started with `pfdemo touch --pages 64 --hold`), or an instance with --instance ID",
                            paths.device
                        ))
                    }
                    Some(_) => None,
                }
            }
            Target::Instance(id) => Some(instance_size(id, &paths)?),
        };
        // The recorder is off by default (it costs the handler time): a view of the faults
        // switches it on, and leaves it on for any other reader.
        let stats = if stats.0.get("events") == Some(&0) && paths.events.join("enable").exists() {
            pfdemo::events::switch_on(&paths.events)?;
            read_stats(&paths)?
        } else {
            stats
        };
        let recorder = match events_off(&stats, &paths) {
            Some(why) => Recorder::Unavailable(why),
            None => match Reader::from_now(&paths.events) {
                Ok(r) => Recorder::Reading(r),
                Err(e) => Recorder::Unavailable(format!("cannot read the flight recorder: {e}")),
            },
        };
        Ok(Source {
            target,
            paths,
            recorder,
            faults: VecDeque::new(),
            dropped: 0,
            previous: None,
            previous_pages: BTreeMap::new(),
            last_regions: Vec::new(),
            instance,
            start_ns: sys::monotonic_ns(),
            interval_ms,
        })
    }

    /// Reads everything once more. An error only when the module's files are gone (it was
    /// unloaded); a process that ended or a recorder that fails shows as a note.
    pub fn sample(&mut self) -> Res<Snapshot> {
        let text = read_debugfs(&self.paths, "stats")?;
        let stats = Stats::parse(&text).map_err(|e| e.to_string())?;
        let now = Instant::now();
        let rate = |name: &str, value: u64| {
            let (before, then) = self.previous.as_ref()?;
            let dt = now.duration_since(*then).as_secs_f64();
            let was = before.0.get(name)?;
            (dt > 0.0).then(|| (value as f64 - *was as f64) / dt)
        };
        let names = text.lines().filter_map(|l| l.split_whitespace().next());
        let counters = names
            // The settings go to the status line, the rest to the counter panel.
            .filter(|n| !Stats::is_setting(n))
            .map(|n| (n.to_string(), stats.get(n), rate(n, stats.get(n))))
            .collect();
        // The settings in the order the module prints them, but for the cap.
        let settings = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| Stats::is_setting(n) && *n != "max_total_pages")
            .filter_map(|n| Some(format!("{n}={}", stats.0.get(n)?)))
            .collect::<Vec<_>>()
            .join(" ");
        let latency = parse::parse_latency(&read_debugfs(&self.paths, "latency")?)
            .map_err(|e| e.to_string())?;

        let (mut regions, map_note, target) = match self.target {
            Target::Pid(pid) => {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| format!(" ({})", c.trim()))
                    .unwrap_or_default();
                match pid_regions(pid, &self.paths.device)? {
                    Some(r) => {
                        let note = r.is_empty().then(|| {
                            format!("process {pid} maps no part of {} now", self.paths.device)
                        });
                        (r, note, format!("pid {pid}{comm}"))
                    }
                    None => (
                        self.last_regions.clone(),
                        Some(format!(
                            "process {pid} has exited: its last page map (q quits)"
                        )),
                        format!("pid {pid}"),
                    ),
                }
            }
            Target::Instance(id) => {
                let (size, holders) = self.instance.clone().unwrap_or_default();
                let frames = parse::parse_frames(&read_debugfs(&self.paths, "frames")?)
                    .map_err(|e| e.to_string())?;
                (
                    vec![instance_region(id, size, &holders, &frames)],
                    None,
                    format!("instance {id}"),
                )
            }
        };
        for r in &mut regions {
            let key = (r.first, r.pages.len());
            if let Some(before) = self.previous_pages.get(&key) {
                r.fresh = before
                    .iter()
                    .zip(&r.pages)
                    .map(|(b, p)| *b == Page::Absent && *p != Page::Absent)
                    .collect();
            }
        }
        self.previous_pages = regions
            .iter()
            .map(|r| ((r.first, r.pages.len()), r.pages.clone()))
            .collect();
        if map_note.is_none() {
            self.last_regions = regions.clone();
        }

        let faults_note = self.read_faults();
        self.previous = Some((stats, now));
        Ok(Snapshot {
            target,
            regions,
            map_note,
            counters,
            settings,
            latency,
            faults: self.faults.iter().cloned().collect(),
            faults_note,
            dropped: self.dropped,
            start_ns: self.start_ns,
            interval_ms: self.interval_ms,
            status_note: None,
        })
    }

    /// Takes the target's new events from the recorder; the note when there are none to take.
    fn read_faults(&mut self) -> Option<String> {
        let reader = match &mut self.recorder {
            Recorder::Reading(r) => r,
            Recorder::Unavailable(why) => return Some(why.clone()),
        };
        let batch = match reader.poll() {
            Ok(b) => b,
            Err(e) => return Some(format!("reading the flight recorder failed: {e}")),
        };
        self.dropped += batch.dropped;
        let target = self.target;
        for e in batch.events.into_iter().filter(|e| match target {
            Target::Pid(pid) => e.pid == pid,
            Target::Instance(id) => e.inst == id,
        }) {
            self.faults.push_front(e);
        }
        self.faults.truncate(KEEP_FAULTS);
        None
    }
}

fn read_debugfs(paths: &Paths, name: &str) -> Res<String> {
    let path = paths.debugfs.join(name);
    std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (was the module unloaded? Fix: insmod rust_pagefault_demo.ko)",
            path.display()
        )
    })
}

fn read_stats(paths: &Paths) -> Res<Stats> {
    Stats::parse(&read_debugfs(paths, "stats")?).map_err(|e| e.to_string())
}

/// Why the recorder cannot be read, with the fix; `None` when it can.
fn events_off(stats: &Stats, paths: &Paths) -> Option<String> {
    if stats.0.get("events") == Some(&0) {
        return Some(format!(
            "the flight recorder is off (events 0 in stats): no faults to list. Fix: echo 1 \
                 > {}",
            paths.events.join("enable").display()
        ));
    }
    if !paths.events.join("heads").exists() {
        return Some(format!(
            "this module has no flight recorder ({} is missing): no faults to list. Fix: load \
             a build of rust_pagefault_demo that has one",
            paths.events.join("heads").display()
        ));
    }
    None
}

/// The process's mappings of `device`, each with its pages as the page tables map them;
/// `None` when the process does not exist (any more).
fn pid_regions(pid: u32, device: &str) -> Res<Option<Vec<Region>>> {
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A process that ends while being read: its maps read as empty or ESRCH.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(format!("/proc/{pid}/maps: {e}")),
    };
    let lines = parse::parse_maps(&maps).map_err(|e| e.to_string())?;
    let ours: Vec<_> = lines.into_iter().filter(|l| l.name == device).collect();
    if ours.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let pagemap = match Pagemap::of(pid) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("/proc/{pid}/pagemap: {e}")),
    };
    let mut regions = Vec::new();
    for l in ours {
        let n = ((l.end - l.start) / 4096) as usize;
        let mut pages = vec![Page::Absent; n];
        let runs = match pagemap.scan_present(l.start, l.end) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => {
                return Err(format!(
                "PAGEMAP_SCAN of /proc/{pid}/pagemap at {:#x}: {e} (it needs Linux 6.7 or later)",
                l.start
            ))
            }
        };
        for (start, end, huge) in runs {
            let (a, b) = ((start - l.start) / 4096, (end - l.start) / 4096);
            for p in &mut pages[a as usize..(b as usize).min(n)] {
                *p = if huge { Page::Pmd } else { Page::Present };
            }
        }
        regions.push(Region {
            title: format!(
                "{:#x}-{:#x} {} pgoff {}: {n} pages",
                l.start,
                l.end,
                l.perms,
                l.offset / 4096
            ),
            first: l.start,
            by_address: true,
            fresh: vec![false; n],
            pages,
        });
    }
    Ok(Some(regions))
}

/// An instance's size in pages and the processes that hold it open, from their fdinfo.
/// Without a holder (only mappings keep it) the size is up to its last frame; without a
/// frame either, it is not there.
fn instance_size(id: u64, paths: &Paths) -> Res<(u64, Vec<u32>)> {
    let mut size = None;
    let mut holders = Vec::new();
    for (pid, info) in open_instances(&paths.device) {
        if info.instance == id {
            size = Some(info.size_pages);
            if !holders.contains(&pid) {
                holders.push(pid);
            }
        }
    }
    if let Some(size) = size {
        return Ok((size, holders));
    }
    let frames = parse::parse_frames(&read_debugfs(paths, "frames")?).map_err(|e| e.to_string())?;
    match frames.iter().filter(|r| r.instance == id).map(|r| r.pgoff).max() {
        Some(last) => Ok(((last + 1).next_multiple_of(64), holders)),
        None => Err(format!(
            "instance {id}: no process has it open and it has no frames. Fix: pick a live one (pfdemo frames lists the instances with frames; /proc/PID/fdinfo of an open {} says `instance:`)",
            paths.device
        )),
    }
}

/// Every open file of the device in the system: the holder's pid and the file's fdinfo.
fn open_instances(device: &str) -> Vec<(u32, parse::FdInfo)> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for proc in procs.flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == device) {
                let info = proc.path().join("fdinfo").join(fd.file_name());
                if let Some(info) = std::fs::read_to_string(info)
                    .ok()
                    .and_then(|t| parse::parse_fdinfo(&t).ok())
                {
                    found.push((pid, info));
                }
            }
        }
    }
    found
}

/// The instance's pages: those with a frame in `frames`.
fn instance_region(id: u64, size: u64, holders: &[u32], frames: &[parse::FrameRow]) -> Region {
    let mut pages = vec![Page::Absent; size as usize];
    let mut live = 0;
    for r in frames.iter().filter(|r| r.instance == id) {
        if let Some(p) = pages.get_mut(r.pgoff as usize) {
            *p = Page::Present;
            live += 1;
        }
    }
    let held = match holders {
        [] => "open by no process (its mappings keep it)".to_string(),
        _ => format!(
            "open in pid {}",
            holders
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Region {
        title: format!("instance {id}: {size} pages, {live} with a frame; {held}"),
        first: 0,
        by_address: false,
        fresh: vec![false; size as usize],
        pages,
    }
}
