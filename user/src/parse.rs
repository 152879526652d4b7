//! Parsers for what the module and the kernel print: debugfs `stats`, `frames` and `latency`,
//! fdinfo, pagemap entries and `/proc/<pid>/stat`. Pure functions, tested on the host.

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

fn number(s: &str) -> Option<u64> {
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

    /// The counter `name`, or 0 when the module does not print it.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// `self - before`, counter by counter (saturating: gauges may go down).
    pub fn delta(&self, before: &Stats, name: &str) -> i64 {
        self.get(name) as i64 - before.get(name) as i64
    }
}

/// One row of the `frames` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FrameRow {
    pub instance: u64,
    pub pgoff: u64,
    pub pfn: u64,
}

/// The `frames` file: a `#` header, then `instance pgoff pfn [more columns]` per line.
pub fn parse_frames(text: &str) -> Result<Vec<FrameRow>, ParseError> {
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split_whitespace().map(number);
        match (cols.next(), cols.next(), cols.next()) {
            (Some(Some(instance)), Some(Some(pgoff)), Some(Some(pfn))) => rows.push(FrameRow {
                instance,
                pgoff,
                pfn,
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
    })
}

/// One 64-bit entry of `/proc/<pid>/pagemap` (see the kernel's pagemap.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PagemapEntry {
    pub present: bool,
    pub swapped: bool,
    pub file_or_shared: bool,
    pub exclusive: bool,
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
            pfn: (present && !swapped).then_some(raw & ((1 << 55) - 1)),
        }
    }
}

/// `/proc/kpageflags`: the page is anonymous memory.
pub const KPF_ANON: u64 = 1 << 12;

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

/// The minor and major fault counters of `/proc/<pid>/stat` (fields 10 and 12).
pub fn parse_stat_faults(text: &str) -> Result<(u64, u64), ParseError> {
    // The command name (field 2) is in parentheses and may contain spaces and ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| bad("stat", text))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    let get = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("stat", text))
    };
    Ok((get(10)?, get(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parse_and_delta() {
        let a = Stats::parse("faults 3\nframes_live 2\n").unwrap();
        let b = Stats::parse("faults 10\nframes_live 1\n\n").unwrap();
        assert_eq!(b.get("faults"), 10);
        assert_eq!(b.delta(&a, "faults"), 7);
        assert_eq!(b.delta(&a, "frames_live"), -1);
        assert_eq!(b.get("missing"), 0);
    }

    #[test]
    fn stats_malformed() {
        assert!(Stats::parse("faults\n").is_err());
        assert!(Stats::parse("faults x\n").is_err());
        assert!(Stats::parse("faults 1 2\n").is_err());
        assert!(Stats::parse("faults 1\nfaults 2\n").is_err());
        assert!(Stats::parse("faults -1\n").is_err());
    }

    #[test]
    fn frames_rows() {
        let rows =
            parse_frames("# instance pgoff pfn phys\n1 0 0x1a2b 0x1a2b000\n2 7 0x10 0x10000\n")
                .unwrap();
        assert_eq!(
            rows,
            vec![
                FrameRow {
                    instance: 1,
                    pgoff: 0,
                    pfn: 0x1a2b
                },
                FrameRow {
                    instance: 2,
                    pgoff: 7,
                    pfn: 0x10
                },
            ]
        );
        assert_eq!(parse_frames("# header only\n").unwrap(), vec![]);
    }

    #[test]
    fn frames_malformed() {
        assert!(parse_frames("1 2\n").is_err());
        assert!(parse_frames("1 2 zz\n").is_err());
        assert!(parse_frames("a 2 0x3\n").is_err());
    }

    #[test]
    fn latency_buckets() {
        assert_eq!(
            parse_latency("# le_ns count\n1024 5\n2048 1\n").unwrap(),
            vec![(1024, 5), (2048, 1)]
        );
        assert!(parse_latency("1024\n").is_err());
        assert!(parse_latency("1024 1 2\n").is_err());
    }

    #[test]
    fn fdinfo_fields() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t5\nino:\t3\ninstance:\t42\nframes:\t7\n";
        assert_eq!(
            parse_fdinfo(text).unwrap(),
            FdInfo {
                instance: 42,
                frames: 7
            }
        );
        assert!(parse_fdinfo("pos:\t0\n").is_err());
        assert!(parse_fdinfo("instance:\tx\nframes:\t1\n").is_err());
    }

    #[test]
    fn pagemap_bits() {
        let e = PagemapEntry::from_raw((1 << 63) | (1 << 61) | 0x1234);
        assert!(e.present && e.file_or_shared && !e.swapped);
        assert_eq!(e.pfn, Some(0x1234));
        assert_eq!(PagemapEntry::from_raw(0).pfn, None);
        // Swapped entries carry a swap type and offset, not a PFN.
        assert_eq!(PagemapEntry::from_raw((1 << 63) | (1 << 62) | 5).pfn, None);
    }

    #[test]
    fn maps_ranges() {
        let line = "7f00c0000000-7f00c0200000 rw-s 00003000 00:05 7 /dev/rust_pagefault_demo";
        assert_eq!(
            parse_maps_range(line).unwrap(),
            (0x7f00c0000000, 0x7f00c0200000, 0x3000)
        );
        assert!(parse_maps_range("garbage").is_err());
        assert!(parse_maps_range("2000-1000 rw-s 0 00:05 7 /x").is_err());
        assert!(parse_maps_range("1000-2000 rw-s").is_err());
    }

    #[test]
    fn stat_faults_with_odd_comm() {
        let text = "123 (a) b) c) S 1 123 123 0 -1 4194560 77 0 3 0 1 2 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_stat_faults(text).unwrap(), (77, 3));
        assert!(parse_stat_faults("garbage").is_err());
        assert!(parse_stat_faults("1 (x) S 1").is_err());
    }
}
