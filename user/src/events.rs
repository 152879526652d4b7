//! The module's flight recorder, read from user space: the records of `events/cpu<k>` in
//! debugfs, one per handler call, and a reader that follows every shard from a starting point
//! and merges them into one timeline.
//!
//! The module writes fixed-size text records (see README, "The flight recorder"): record `n`
//! of a shard sits at byte `n * RECORD_BYTES` of its file, so a reader's file offset is its
//! place in that shard's sequence, and a record the ring overwrote before it was read comes
//! back as one drop line, never as a silent gap.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::parse::ParseError;
use crate::Res;

/// The size of one record in an `events/cpu<k>` file, the drop lines' too.
pub const RECORD_BYTES: usize = 512;

/// The debugfs directory of the recorder.
pub const EVENTS_DIR: &str = "/sys/kernel/debug/rust_pagefault_demo/events";

/// The fault flags (`vmf->flags`) the module decodes, by letter, as in its `how` field.
pub const HOW_LETTERS: [(char, &str); 7] = [
    ('W', "write"),
    ('U', "user"),
    ('V', "under the per-VMA lock"),
    ('T', "tried (a retry)"),
    ('R', "remote (GUP from another mm)"),
    ('I', "instruction fetch"),
    ('K', "killable"),
];

/// One handler call, as the module recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// The shard (CPU modulo the shard count) and the record's place in its sequence.
    pub shard: usize,
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds at the handler's entry.
    pub t_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub inst: u64,
    /// `fault` (a 4 KiB page), `pmd` or `pud` (the huge-fault handler, asked for a 2 MiB or
    /// a 1 GiB mapping; the core asks for a PUD first when the PUD entry is empty).
    pub call: String,
    /// `page`, `pages`, `batch`, `subpage`, `pmd`, `fallback` or `none`.
    pub path: String,
    /// `mapped`, `sigbus`, `oom` or `fallback`.
    pub out: String,
    pub addr: u64,
    pub pgoff: u64,
    pub flags: u64,
    /// The decoded flags, letters of [`HOW_LETTERS`], or `-`.
    pub how: String,
    pub pfn: Option<u64>,
    /// Whether this call allocated the frame of `addr`.
    pub new: bool,
    pub pages: u64,
    pub allocs: u64,
    pub reserve_ns: u64,
    pub alloc_ns: u64,
    pub map_ns: u64,
    pub total_ns: u64,
}

impl Event {
    /// Whether the access was a write (`W` in `how`).
    pub fn write(&self) -> bool {
        self.how.contains('W')
    }
}

/// One line of an `events/cpu<k>` file.
// Nearly every line is an event, taken apart right after parsing: boxing it would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Event(Event),
    /// Records `seq .. seq + count` of the shard were overwritten before they were read.
    Dropped {
        seq: u64,
        count: u64,
    },
}

fn bad(line: &str, why: &str) -> ParseError {
    ParseError(format!("events: {why} in {:?}", line.trim_end()))
}

fn number(line: &str, s: &str) -> Result<u64, ParseError> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|_| bad(line, &format!("bad number {s:?}")))
}

/// The fields of an event line, in the order the module writes them.
const FIELDS: [&str; 22] = [
    "seq",
    "t",
    "cpu",
    "pid",
    "tid",
    "inst",
    "call",
    "path",
    "out",
    "addr",
    "pgoff",
    "flags",
    "how",
    "pfn",
    "new",
    "pages",
    "allocs",
    "reserve_ns",
    "alloc_ns",
    "map_ns",
    "total_ns",
    "",
];

impl Line {
    /// Parses one record of shard `shard` (the padding and the newline may be there or not).
    pub fn parse(shard: usize, line: &str) -> Result<Line, ParseError> {
        let mut values = Vec::with_capacity(FIELDS.len());
        for (i, word) in line.split_whitespace().enumerate() {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| bad(line, &format!("no key=value in {word:?}")))?;
            if i == 1 && key == "dropped" {
                if values.len() != 1 || line.split_whitespace().count() != 2 {
                    return Err(bad(line, "a drop line has two fields"));
                }
                return Ok(Line::Dropped {
                    seq: number(line, values[0])?,
                    count: number(line, value)?,
                });
            }
            if FIELDS.get(i) != Some(&key) || key.is_empty() {
                return Err(bad(
                    line,
                    &format!("field {i} is {key:?}, not {:?}", FIELDS[i.min(21)]),
                ));
            }
            values.push(value);
        }
        if values.len() != FIELDS.len() - 1 {
            return Err(bad(
                line,
                &format!("{} fields, not {}", values.len(), FIELDS.len() - 1),
            ));
        }
        let n = |i: usize| number(line, values[i]);
        let word = |i: usize| values[i].to_string();
        let pfn = match values[13] {
            "-" => None,
            v => Some(number(line, v)?),
        };
        let new = match values[14] {
            "0" => false,
            "1" => true,
            v => return Err(bad(line, &format!("new={v}"))),
        };
        Ok(Line::Event(Event {
            shard,
            seq: n(0)?,
            t_ns: n(1)?,
            cpu: n(2)? as u32,
            pid: n(3)? as u32,
            tid: n(4)? as u32,
            inst: n(5)?,
            call: word(6),
            path: word(7),
            out: word(8),
            addr: n(9)?,
            pgoff: n(10)?,
            flags: n(11)?,
            how: word(12),
            pfn,
            new,
            pages: n(15)?,
            allocs: n(16)?,
            reserve_ns: n(17)?,
            alloc_ns: n(18)?,
            map_ns: n(19)?,
            total_ns: n(20)?,
        }))
    }

    /// Parses a buffer of whole records of shard `shard`.
    pub fn parse_records(shard: usize, bytes: &[u8]) -> Result<Vec<Line>, ParseError> {
        if bytes.len() % RECORD_BYTES != 0 {
            return Err(ParseError(format!(
                "events: {} bytes is not a whole number of {RECORD_BYTES}-byte records",
                bytes.len()
            )));
        }
        bytes
            .chunks(RECORD_BYTES)
            .map(|record| {
                let text = std::str::from_utf8(record)
                    .map_err(|_| ParseError("events: a record is not text".into()))?;
                if !text.ends_with('\n') {
                    return Err(bad(text, "a record that does not end in a newline"));
                }
                Line::parse(shard, text)
            })
            .collect()
    }
}

/// A shard's place, from `events/heads`: the next sequence number it will write and the
/// oldest one it still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub next: u64,
    pub oldest: u64,
}

/// Parses `events/heads`: `cpu<k> <next> <oldest>` per shard, in shard order.
pub fn parse_heads(text: &str) -> Result<Vec<Head>, ParseError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(k, line)| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [name, next, oldest] if name == format!("cpu{k}") => Ok(Head {
                    next: number(line, next)?,
                    oldest: number(line, oldest)?,
                }),
                _ => Err(ParseError(format!(
                    "events/heads: cannot parse line {line:?}"
                ))),
            }
        })
        .collect()
}

/// Switches the recorder of `dir` (normally [`EVENTS_DIR`]) on if it is off, through its
/// `enable` file; `Ok(true)` when this call switched it on. It stays on: another tool may be
/// reading it too (`echo 0 > .../events/enable` switches it off).
pub fn switch_on(dir: &Path) -> Res<bool> {
    let path = dir.join("enable");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (a rust_pagefault_demo.ko with a flight recorder, debugfs, root?)",
            path.display()
        )
    })?;
    if text.trim() != "0" {
        return Ok(false);
    }
    std::fs::write(&path, "1").map_err(|e| format!("{}: switching it on: {e}", path.display()))?;
    Ok(true)
}

/// What one [`Reader::poll`] found: the new events of all shards in time order, and how
/// many records the shards overwrote before this reader got to them.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub dropped: u64,
}

/// Follows every shard of the recorder from a starting point: each poll returns what was
/// recorded since the last one, merged by time.
pub struct Reader {
    shards: Vec<(File, u64)>,
    /// Events read from a shard but held back because an earlier one may still come from
    /// another shard (see [`Reader::poll`]).
    held: BTreeMap<(u64, usize, u64), Event>,
}

impl Reader {
    /// A reader of `dir` (normally [`EVENTS_DIR`]) that starts after the newest record of
    /// each shard: it sees only handler calls that begin after this.
    pub fn from_now(dir: &Path) -> Res<Reader> {
        let heads = Self::heads(dir)?;
        Self::open(dir, heads.iter().map(|h| h.next))
    }

    /// A reader of `dir` that starts at the oldest record each shard still holds.
    pub fn from_oldest(dir: &Path) -> Res<Reader> {
        let heads = Self::heads(dir)?;
        Self::open(dir, heads.iter().map(|h| h.oldest))
    }

    fn heads(dir: &Path) -> Res<Vec<Head>> {
        let path = dir.join("heads");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (is the module loaded, debugfs mounted, and are you root?)",
                path.display()
            )
        })?;
        parse_heads(&text).map_err(|e| e.to_string())
    }

    fn open(dir: &Path, starts: impl Iterator<Item = u64>) -> Res<Reader> {
        let shards = starts
            .enumerate()
            .map(|(k, start)| {
                let path: PathBuf = dir.join(format!("cpu{k}"));
                let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok((file, start))
            })
            .collect::<Res<Vec<_>>>()?;
        Ok(Reader {
            shards,
            held: BTreeMap::new(),
        })
    }

    /// Reads what every shard recorded since the last poll, and returns, in time order (ties
    /// by shard and sequence), the events that began more than [`HOLD_NS`] before the poll.
    ///
    /// The module writes a record when a handler call ends, stamped with the time it began;
    /// shards are read one after the other. So a call that began earlier on one shard may be
    /// recorded after a later one on another was read: holding back the newest events until
    /// the next poll keeps the timeline in order unless a call took longer than
    /// [`HOLD_NS`]. [`Reader::flush`] releases everything.
    pub fn poll(&mut self) -> Res<Batch> {
        let now = crate::sys::monotonic_ns();
        let mut batch = self.read_all()?;
        let keep = self
            .held
            .split_off(&(now.saturating_sub(HOLD_NS) + 1, 0, 0));
        batch.events = std::mem::replace(&mut self.held, keep)
            .into_values()
            .collect();
        Ok(batch)
    }

    /// Reads to the end once more and releases everything held back.
    pub fn flush(&mut self) -> Res<Batch> {
        let mut batch = self.read_all()?;
        batch.events = std::mem::take(&mut self.held).into_values().collect();
        Ok(batch)
    }

    /// Reads every shard to its end, holding what it finds; counts what was overwritten.
    fn read_all(&mut self) -> Res<Batch> {
        let mut batch = Batch::default();
        let mut buf = vec![0u8; RECORD_BYTES * 64];
        for (shard, (file, seq)) in self.shards.iter_mut().enumerate() {
            loop {
                let n = file
                    .read_at(&mut buf, *seq * RECORD_BYTES as u64)
                    .map_err(|e| format!("events/cpu{shard}: read at seq {seq}: {e}"))?;
                if n == 0 {
                    break;
                }
                for line in Line::parse_records(shard, &buf[..n]).map_err(|e| e.to_string())? {
                    match line {
                        Line::Event(event) => {
                            if event.seq != *seq {
                                return Err(format!(
                                    "events/cpu{shard}: expected seq {seq}, got {}",
                                    event.seq
                                ));
                            }
                            *seq += 1;
                            self.held.insert((event.t_ns, shard, event.seq), event);
                        }
                        Line::Dropped { seq: lost, count } => {
                            if lost != *seq || count == 0 {
                                return Err(format!(
                                    "events/cpu{shard}: a drop of {count} at seq {lost}, expected {seq}"
                                ));
                            }
                            *seq += count;
                            batch.dropped += count;
                        }
                    }
                }
            }
        }
        Ok(batch)
    }
}

/// How long [`Reader::poll`] holds an event back, in nanoseconds (see there).
pub const HOLD_NS: u64 = 20_000_000;

/// Reads a whole `events/cpu<k>` file from its oldest record: for tests and `cat`-like use.
pub fn read_shard(dir: &Path, shard: usize) -> Res<Vec<Line>> {
    let path = dir.join(format!("cpu{shard}"));
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Line::parse_records(shard, &bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(s: &str) -> String {
        format!("{s:<width$}\n", width = RECORD_BYTES - 1)
    }

    const LINE: &str = "seq=7 t=123456789 cpu=1 pid=300 tid=301 inst=4 call=fault path=page \
        out=mapped addr=0x7f0000001000 pgoff=1 flags=0x1255 how=WUV pfn=0x1a2b3 new=1 pages=1 \
        allocs=1 reserve_ns=40 alloc_ns=900 map_ns=300 total_ns=1500";

    #[test]
    fn parses_an_event_line() {
        let Line::Event(e) = Line::parse(1, &pad(LINE)).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(
            (e.shard, e.seq, e.t_ns, e.cpu, e.pid, e.tid),
            (1, 7, 123456789, 1, 300, 301)
        );
        assert_eq!(
            (e.call.as_str(), e.path.as_str(), e.out.as_str()),
            ("fault", "page", "mapped")
        );
        assert_eq!((e.addr, e.pgoff, e.flags), (0x7f0000001000, 1, 0x1255));
        assert!(e.write() && e.new);
        assert_eq!(e.pfn, Some(0x1a2b3));
        assert_eq!((e.pages, e.allocs), (1, 1));
        assert_eq!(
            (e.reserve_ns, e.alloc_ns, e.map_ns, e.total_ns),
            (40, 900, 300, 1500)
        );
    }

    #[test]
    fn parses_a_drop_line_and_records() {
        let bytes = format!("{}{}", pad("seq=3 dropped=4"), pad(LINE));
        let lines = Line::parse_records(0, bytes.as_bytes()).unwrap();
        assert_eq!(lines[0], Line::Dropped { seq: 3, count: 4 });
        assert!(matches!(&lines[1], Line::Event(e) if e.seq == 7));
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        assert!(Line::parse(0, "seq=1 t=2").is_err());
        assert!(Line::parse(0, &LINE.replace("path=", "route=")).is_err());
        assert!(Line::parse(0, &LINE.replace("new=1", "new=2")).is_err());
        assert!(Line::parse(0, &LINE.replace("pfn=0x1a2b3", "pfn=x")).is_err());
        assert!(Line::parse(0, &format!("{LINE} extra=1")).is_err());
        assert!(Line::parse_records(0, &[b' '; 100]).is_err());
        let unterminated = format!("{LINE:<width$}", width = RECORD_BYTES);
        assert!(Line::parse_records(0, unterminated.as_bytes()).is_err());
    }

    #[test]
    fn a_hidden_pfn_is_none() {
        let Line::Event(e) = Line::parse(0, &LINE.replace("pfn=0x1a2b3", "pfn=-")).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(e.pfn, None);
    }

    #[test]
    fn parses_heads() {
        let heads = parse_heads("cpu0 10 0\ncpu1 2048 1024\n").unwrap();
        assert_eq!(
            heads,
            [
                Head {
                    next: 10,
                    oldest: 0
                },
                Head {
                    next: 2048,
                    oldest: 1024
                }
            ]
        );
        assert!(parse_heads("cpu1 1 0\n").is_err());
        assert!(parse_heads("cpu0 1\n").is_err());
    }

    #[test]
    fn reader_merges_shards_by_time_and_counts_drops() {
        let dir = std::env::temp_dir().join(format!("pfdemo-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ev = |seq: u64, t: u64| {
            pad(&LINE
                .replace("seq=7", &format!("seq={seq}"))
                .replace("t=123456789", &format!("t={t}")))
        };
        std::fs::write(dir.join("heads"), "cpu0 0 0\ncpu1 0 0\n").unwrap();
        std::fs::write(dir.join("cpu0"), format!("{}{}", ev(0, 10), ev(1, 30))).unwrap();
        // As the module serves a read at seq 0 after seqs 0 and 1 were overwritten: a drop line,
        // then the oldest record kept.
        let cpu1 = format!("{}{}", pad("seq=0 dropped=2"), ev(2, 20));
        std::fs::write(dir.join("cpu1"), cpu1).unwrap();
        let mut reader = Reader::from_oldest(&dir).unwrap();
        let batch = reader.flush().unwrap();
        let order: Vec<(usize, u64)> = batch.events.iter().map(|e| (e.shard, e.t_ns)).collect();
        assert_eq!(order, [(0, 10), (1, 20), (0, 30)]);
        assert_eq!(batch.dropped, 2);
        // Nothing new: an empty poll.
        let again = reader.flush().unwrap();
        assert!(again.events.is_empty() && again.dropped == 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
