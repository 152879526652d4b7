//! Parsers for what the module and the kernel print: debugfs `stats`, `frames` and `latency`,
//! fdinfo, pagemap entries, `/proc/<pid>/stat`, `/proc/meminfo` and `/proc/slabinfo`, and for
//! the tour's chapters `/proc/<pid>/maps`, `/proc/zoneinfo`, `/proc/buddyinfo`,
//! `/proc/kpageflags` bits and `/proc/<pid>/cgroup`. Pure functions, tested on the host.

use std::collections::BTreeMap;
use std::fmt;

/// A line that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn bad(what: &str, line: &str) -> ParseError {
    ParseError(format!("{what}: cannot parse line {line:?}"))
}

/// A number as the kernel prints it: hex with `0x`, else decimal.
pub(crate) fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The `stats` file: `name value` per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats(pub BTreeMap<String, u64>);

impl Stats {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut map = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("stats", line));
            };
            let value = number(value).ok_or_else(|| bad("stats", line))?;
            if map.insert(name.to_string(), value).is_some() {
                return Err(ParseError(format!("stats: {name} appears twice")));
            }
        }
        Ok(Self(map))
    }

    /// The counters the device contract promises (README, "debugfs"): a `stats` file
    /// without one of them is not the module the tools were written for.
    pub const REQUIRED: [&'static str; 9] = [
        "faults",
        "read_faults",
        "write_faults",
        "frames_allocated",
        "frames_freed",
        "frames_live",
        "sigbus",
        "oom",
        "instances",
    ];

    /// The counter `name`, or 0 when the module does not print it.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The counter `name`, or an error naming it when the module does not print it.
    pub fn value(&self, name: &str) -> Result<u64, ParseError> {
        self.0
            .get(name)
            .copied()
            .ok_or_else(|| ParseError(format!("stats: no {name} line")))
    }

    /// How much counter `name` moved since `before`; an error if either file lacks it.
    pub fn change(&self, before: &Stats, name: &str) -> Result<i64, ParseError> {
        Ok(self.value(name)? as i64 - before.value(name)? as i64)
    }

    /// The names of `names` that this file lacks.
    pub fn missing<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        names
            .iter()
            .copied()
            .filter(|n| !self.0.contains_key(*n))
            .collect()
    }

    /// `self - before`, counter by counter (saturating: gauges may go down).
    pub fn delta(&self, before: &Stats, name: &str) -> i64 {
        self.get(name) as i64 - before.get(name) as i64
    }

    /// The settings among the `stats` lines, with their defaults, in the order the test
    /// suite's parameter sets name them (`qemu/guest-test.sh`); `max_total_pages`, whose
    /// default depends on the machine, is a setting too (see [`Stats::is_setting`]).
    pub const SETTINGS: [(&'static str, u64); 8] = [
        ("prefault", 1),
        ("huge", 0),
        ("map_pages", 1),
        ("insert_pages", 0),
        ("return_page", 0),
        ("alloc_blocks", 1),
        ("latency", 1),
        ("events", 0),
    ];

    /// Whether the `stats` line `name` is a setting of the module, not a counter.
    pub fn is_setting(name: &str) -> bool {
        name == "max_total_pages" || Self::SETTINGS.iter().any(|(n, _)| *n == name)
    }

    /// The parameter set the module runs with, by its own `stats`: each setting that is
    /// not its default as `name=value`, joined by `,` (as the e2e run names its set), or
    /// `default`. A label read from the module cannot name a set it did not run with.
    pub fn settings_label(&self) -> String {
        let set: Vec<String> = Self::SETTINGS
            .iter()
            .filter_map(|&(name, default)| {
                let value = self.0.get(name).copied().unwrap_or(default);
                (value != default).then(|| format!("{name}={value}"))
            })
            .collect();
        if set.is_empty() {
            "default".into()
        } else {
            set.join(",")
        }
    }
}

/// One row of the `frames` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FrameRow {
    pub instance: u64,
    pub pgoff: u64,
    pub pfn: u64,
    /// The physical address the module prints for the frame (its own column, kept as read,
    /// so that a check compares the module's arithmetic with the PFN, not ours with ours).
    pub phys: u64,
}

/// The `frames` file: a `#` header, then `instance pgoff pfn [more columns]` per line. The
/// header is required: without it the text is not (all of) the module's file.
pub fn parse_frames(text: &str) -> Result<Vec<FrameRow>, ParseError> {
    let mut lines = text.lines();
    match lines.next() {
        Some(header) if header.starts_with('#') => {}
        Some(line) => return Err(bad("frames (no # header)", line)),
        None => return Err(ParseError("frames: empty, no # header".into())),
    }
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split_whitespace().map(number);
        match (cols.next(), cols.next(), cols.next(), cols.next()) {
            (Some(Some(instance)), Some(Some(pgoff)), Some(Some(pfn)), Some(Some(phys))) => rows
                .push(FrameRow {
                    instance,
                    pgoff,
                    pfn,
                    phys,
                }),
            _ => return Err(bad("frames", line)),
        }
    }
    Ok(rows)
}

/// The `latency` file: `le_ns count` per non-empty log2 bucket.
pub fn parse_latency(text: &str) -> Result<Vec<(u64, u64)>, ParseError> {
    let mut buckets = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split_whitespace().map(number);
        match (cols.next(), cols.next(), cols.next()) {
            (Some(Some(le)), Some(Some(count)), None) => buckets.push((le, count)),
            _ => return Err(bad("latency", line)),
        }
    }
    Ok(buckets)
}

/// What `/proc/<pid>/fdinfo/<fd>` says about one of our files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FdInfo {
    pub instance: u64,
    pub frames: u64,
    /// The instance's size in pages (`max_pages` at open).
    pub size_pages: u64,
    /// The bytes the instance takes besides its frames (itself, its frame tables'
    /// directories and leaves), all charged to memory cgroups; `None` from a module that
    /// does not report them (before issue 11), so that only the tests that need the figure
    /// fail against such a module.
    pub metadata_bytes: Option<u64>,
}

pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ParseError> {
    let field = |name: &str| -> Result<u64, ParseError> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .ok_or_else(|| ParseError(format!("fdinfo: no {name} line")))?;
        let value = line[name.len() + 1..].trim();
        number(value).ok_or_else(|| bad("fdinfo", line))
    };
    Ok(FdInfo {
        instance: field("instance")?,
        frames: field("frames")?,
        size_pages: field("size_pages")?,
        metadata_bytes: field("metadata_bytes").ok(),
    })
}

/// One 64-bit entry of `/proc/<pid>/pagemap` (see the kernel's pagemap.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PagemapEntry {
    pub present: bool,
    pub swapped: bool,
    pub file_or_shared: bool,
    pub exclusive: bool,
    /// Written since the last `echo 4 > /proc/<pid>/clear_refs` (bit 55).
    pub soft_dirty: bool,
    /// Bits 0-54 when present and not swapped; 0 when hidden (not root).
    pub pfn: Option<u64>,
}

impl PagemapEntry {
    pub fn from_raw(raw: u64) -> Self {
        let present = (raw >> 63) & 1 == 1;
        let swapped = (raw >> 62) & 1 == 1;
        Self {
            present,
            swapped,
            file_or_shared: (raw >> 61) & 1 == 1,
            exclusive: (raw >> 56) & 1 == 1,
            soft_dirty: (raw >> 55) & 1 == 1,
            pfn: (present && !swapped).then_some(raw & ((1 << 55) - 1)),
        }
    }
}

/// `/proc/kpageflags` (the kernel's `uapi/linux/kernel-page-flags.h`): the page is on an LRU
/// list, where reclaim finds it.
pub const KPF_LRU: u64 = 1 << 5;
/// `/proc/kpageflags`: the page is anonymous memory.
pub const KPF_ANON: u64 = 1 << 12;
/// `/proc/kpageflags`: the page is backed by swap (anonymous memory reclaim can swap out).
/// Bit 14: bit 19 is `KPF_HWPOISON`.
pub const KPF_SWAPBACKED: u64 = 1 << 14;
/// `/proc/kpageflags`: the page is the kernel's shared zero page.
pub const KPF_ZERO_PAGE: u64 = 1 << 24;

/// The names of the `/proc/kpageflags` bits the chapters look at, set in `flags`.
pub fn kpageflag_names(flags: u64) -> Vec<&'static str> {
    [
        (KPF_LRU, "LRU"),
        (KPF_ANON, "ANON"),
        (KPF_SWAPBACKED, "SWAPBACKED"),
        (KPF_ZERO_PAGE, "ZERO_PAGE"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|&(_, name)| name)
    .collect()
}

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    /// `rw-p` and the like.
    pub perms: String,
    pub offset: u64,
    /// The path or pseudo-name (`[heap]`, `[stack]`); empty for anonymous memory.
    pub name: String,
}

impl MapsLine {
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Every line of `/proc/<pid>/maps`.
pub fn parse_maps(text: &str) -> Result<Vec<MapsLine>, ParseError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (start, end, offset) = parse_maps_range(line)?;
            // start-end perms offset dev inode [name]: the name may contain spaces.
            let perms = line
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| bad("maps", line))?;
            let perms = perms.to_string();
            let name = line
                .split_whitespace()
                .skip(5)
                .collect::<Vec<_>>()
                .join(" ");
            Ok(MapsLine {
                start,
                end,
                perms,
                offset,
                name,
            })
        })
        .collect()
}

/// A memory zone of `/proc/zoneinfo`: the PFN range it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub node: u32,
    /// `DMA`, `DMA32`, `Normal`, `Movable`, `Device`.
    pub name: String,
    pub start_pfn: u64,
    pub spanned: u64,
    pub present: u64,
}

impl Zone {
    pub fn contains(&self, pfn: u64) -> bool {
        self.start_pfn <= pfn && pfn < self.start_pfn + self.spanned
    }
}

/// The zones of `/proc/zoneinfo` that span pages: a `Node N, zone NAME` header, then
/// `spanned`, `present` and `start_pfn` lines among the zone's others.
pub fn parse_zoneinfo(text: &str) -> Result<Vec<Zone>, ParseError> {
    let mut zones: Vec<Zone> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Node ") {
            let (node, zone) = rest
                .split_once(", zone")
                .ok_or_else(|| bad("zoneinfo", line))?;
            zones.push(Zone {
                node: node.trim().parse().map_err(|_| bad("zoneinfo", line))?,
                name: zone.trim().to_string(),
                start_pfn: u64::MAX,
                spanned: 0,
                present: 0,
            });
            continue;
        }
        let mut cols = line.split_whitespace();
        let (Some(key), Some(value), None) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let Some(zone) = zones.last_mut() else {
            continue;
        };
        let field = match key {
            "spanned" => &mut zone.spanned,
            "present" => &mut zone.present,
            "start_pfn:" => &mut zone.start_pfn,
            _ => continue,
        };
        *field = value.parse().map_err(|_| bad("zoneinfo", line))?;
    }
    if zones
        .iter()
        .any(|z| z.spanned > 0 && z.start_pfn == u64::MAX)
    {
        return Err(ParseError("zoneinfo: a zone without start_pfn".into()));
    }
    zones.retain(|z| z.spanned > 0);
    if zones.is_empty() {
        return Err(ParseError("zoneinfo: no zone spans any page".into()));
    }
    Ok(zones)
}

/// One line of `/proc/buddyinfo`: the free blocks of a zone, by order (index 0 = order 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuddyRow {
    pub node: u32,
    pub zone: String,
    pub free: Vec<u64>,
}

impl BuddyRow {
    /// The free memory in blocks of `order` and larger, in blocks of `order`: what an
    /// allocation of that order can take without compaction. Taking one block lowers it by
    /// one whether the buddy allocator took a free block of `order` or split a larger one.
    pub fn free_at_least(&self, order: usize) -> u64 {
        self.free
            .iter()
            .enumerate()
            .skip(order)
            .map(|(o, n)| n << (o - order))
            .sum()
    }
}

/// `/proc/buddyinfo`: `Node 0, zone   DMA32   3   2 ...` per zone.
pub fn parse_buddyinfo(text: &str) -> Result<Vec<BuddyRow>, ParseError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let rest = line
                .strip_prefix("Node ")
                .ok_or_else(|| bad("buddyinfo", line))?;
            let (node, rest) = rest
                .split_once(", zone")
                .ok_or_else(|| bad("buddyinfo", line))?;
            let mut cols = rest.split_whitespace();
            let zone = cols
                .next()
                .ok_or_else(|| bad("buddyinfo", line))?
                .to_string();
            let free = cols
                .map(|c| c.parse().map_err(|_| bad("buddyinfo", line)))
                .collect::<Result<Vec<u64>, _>>()?;
            if free.is_empty() {
                return Err(bad("buddyinfo", line));
            }
            Ok(BuddyRow {
                node: node.trim().parse().map_err(|_| bad("buddyinfo", line))?,
                zone,
                free,
            })
        })
        .collect()
}

/// The cgroup v2 path of `/proc/<pid>/cgroup` (its `0::/path` line).
pub fn parse_cgroup2_path(text: &str) -> Result<String, ParseError> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| ParseError("cgroup: no cgroup v2 (0::) line".into()))
}

/// The start, end and file offset of a `/proc/<pid>/maps` line.
pub fn parse_maps_range(line: &str) -> Result<(u64, u64, u64), ParseError> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| bad("maps", line));
    let (start, end) = cols
        .first()
        .and_then(|r| r.split_once('-'))
        .ok_or_else(|| bad("maps", line))?;
    let offset = cols.get(2).ok_or_else(|| bad("maps", line))?;
    let (start, end) = (hex(start)?, hex(end)?);
    if end <= start {
        return Err(bad("maps", line));
    }
    Ok((start, end, hex(offset)?))
}

/// The numeric fields `ns` (numbered as in proc(5)) of a `/proc/<pid>/stat` line.
fn stat_fields<const K: usize>(text: &str, ns: [usize; K]) -> Result<[u64; K], ParseError> {
    // The command name (field 2) is in parentheses and may contain spaces and ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| bad("stat", text))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    let mut out = [0; K];
    for (o, n) in out.iter_mut().zip(ns) {
        *o = fields
            .get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("stat", text))?;
    }
    Ok(out)
}

/// The minor and major fault counters of `/proc/<pid>/stat` (fields 10 and 12).
pub fn parse_stat_faults(text: &str) -> Result<(u64, u64), ParseError> {
    let [minor, major] = stat_fields(text, [10, 12])?;
    Ok((minor, major))
}

/// The minor faults and the user and system CPU time, in clock ticks, of `/proc/<pid>/stat`
/// (fields 10, 14 and 15).
pub fn parse_stat_usage(text: &str) -> Result<(u64, u64, u64), ParseError> {
    let [minor, utime, stime] = stat_fields(text, [10, 14, 15])?;
    Ok((minor, utime, stime))
}

/// `/proc/slabinfo`: bytes of objects in use (`active_objs * objsize`) per cache. Objects, not
/// slab pages, so objects freed earlier and reused later do not hide what new ones cost.
pub fn parse_slabinfo(text: &str) -> Result<BTreeMap<String, u64>, ParseError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if !header.starts_with("slabinfo - version: 2.") {
        return Err(bad("slabinfo", header));
    }
    lines
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| -> Result<u64, ParseError> {
                w.get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("slabinfo", line))
            };
            Ok((w[0].to_string(), num(1)? * num(3)?))
        })
        .collect()
}

/// The field `name` of `/proc/meminfo` (`MemTotal`, `Slab`, ...), in kB.
pub fn meminfo_kb(text: &str, name: &str) -> Result<u64, ParseError> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| ParseError(format!("meminfo: no {name} line")))
}

/// The `frames` file indexed by PFN: which instance and page offset each frame belongs to.
#[derive(Debug, Clone, Default)]
pub struct FrameIndex(BTreeMap<u64, (u64, u64)>);

impl FrameIndex {
    pub fn new(rows: &[FrameRow]) -> Self {
        Self(
            rows.iter()
                .map(|r| (r.pfn, (r.instance, r.pgoff)))
                .collect(),
        )
    }

    /// The (instance, pgoff) that owns frame `pfn`.
    pub fn owner(&self, pfn: u64) -> Option<(u64, u64)> {
        self.0.get(&pfn).copied()
    }
}

/// What [`check_mapping`] found for one mapping of the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingCheck {
    /// The instance the mapping's pages belong to (from its first page found in `frames`).
    pub instance: Option<u64>,
    /// Present pages checked against `frames` (mismatches included).
    pub checked: usize,
    /// Pages that are private copies (MAP_PRIVATE writes): anonymous memory, not ours.
    pub private_copies: usize,
    /// One line per page that disagrees.
    pub mismatches: Vec<String>,
}

/// Checks the present pages of one device mapping, `(pgoff, pfn)` each as pagemap shows them,
/// against `frames`. Every page must be the frame that `frames` lists at that page offset, and
/// all of them must belong to the same instance (one mapping maps one open file). A PFN that
/// `frames` does not list is accepted only when `is_anon` says it is anonymous memory: the copy
/// a write to a MAP_PRIVATE mapping makes.
pub fn check_mapping(
    frames: &FrameIndex,
    pages: impl IntoIterator<Item = (u64, u64)>,
    mut is_anon: impl FnMut(u64) -> bool,
) -> MappingCheck {
    let mut c = MappingCheck::default();
    for (pgoff, pfn) in pages {
        match frames.owner(pfn) {
            None if is_anon(pfn) => c.private_copies += 1,
            None => {
                c.checked += 1;
                c.mismatches
                    .push(format!("pgoff {pgoff}: pfn {pfn:#x} is not in frames"));
            }
            Some((instance, at)) => {
                c.checked += 1;
                let mine = *c.instance.get_or_insert(instance);
                if at != pgoff {
                    c.mismatches.push(format!(
                        "pgoff {pgoff}: pfn {pfn:#x} is instance {instance}'s frame for pgoff {at}"
                    ));
                } else if instance != mine {
                    c.mismatches.push(format!(
                        "pgoff {pgoff}: pfn {pfn:#x} belongs to instance {instance}, the mapping to instance {mine}"
                    ));
                }
            }
        }
    }
    c
}

/// Kernel pointers in `text`: hexadecimal words (with or without `0x`, at most 16 digits) at or
/// above the start of the x86-64 kernel half, `0xffff800000000000`. No output of the module may
/// carry one (hashed `%p` values and PFNs are far below).
pub fn kernel_pointers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| {
            let digits = w.strip_prefix("0x").unwrap_or(w);
            (digits.len() <= 16)
                .then(|| u64::from_str_radix(digits, 16).ok())
                .flatten()
        })
        .filter(|&v| v >= 0xffff_8000_0000_0000)
        .collect()
}

#[cfg(test)]
mod tests;
