//! The kernel's side of a fault, from tracefs: the CPU's record of each user-mode page fault
//! (`exceptions:page_fault_user`: the address, the instruction and the hardware error code)
//! and the buddy allocator's record of each allocation (`kmem:mm_page_alloc`: PFN, order, GFP
//! flags), for the tasks being traced.
//!
//! A [`Session`] works in a tracing instance of its own (`instances/pfdemo-<pid>`), not in
//! the top-level buffer: the clock, the events, the PID filter and the buffer size it sets
//! are the instance's, so nothing another user of tracefs set is changed, and removing the
//! instance (on drop, on error too) takes every setting with it. tracefs is mounted if it
//! is not, and unmounted again if the session mounted it. The instance's clock is `mono`,
//! CLOCK_MONOTONIC, the clock of the module's recorder, so the two can be put on one
//! timeline. tracefs prints time stamps in microseconds only (`trace_print_time`), so
//! [`TraceEvent::ts_us`] is the nanosecond stamp rounded down to its microsecond; the order of
//! the lines in the `trace` file is the exact order of the stamps.

use crate::parse::ParseError;
use crate::Res;
use std::path::{Path, PathBuf};

/// Where tracefs is mounted (and where a session mounts it if it is not).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// The x86 page-fault error code's bits (`enum x86_pf_error_code`), by the word a decoded
/// code shows for a set bit. Bit 0 clear shows as `not-present` (see [`ErrorCode::words`]).
pub const ERROR_BITS: [(u32, &str); 9] = [
    (0, "protection"),
    (1, "write"),
    (2, "user"),
    (3, "reserved-bit"),
    (4, "instruction-fetch"),
    (5, "protection-key"),
    (6, "shadow-stack"),
    (15, "sgx"),
    (31, "rmp"),
];

/// A page fault's hardware error code, as the CPU pushed it (x86).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ErrorCode(pub u64);

impl ErrorCode {
    pub const PROTECTION: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;

    /// The code in words: `not-present` or `protection` (bit 0: no translation at all, or one
    /// whose permissions refused the access), then one word per other bit set, in bit order,
    /// `bit<N>` for a bit the SDM does not name. A read is the absence of `write`.
    pub fn words(self) -> Vec<String> {
        let mut words = vec![if self.0 & Self::PROTECTION != 0 {
            "protection".to_string()
        } else {
            "not-present".to_string()
        }];
        for bit in 1..64 {
            if self.0 & (1 << bit) == 0 {
                continue;
            }
            words.push(match ERROR_BITS.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) => name.to_string(),
                None => format!("bit{bit}"),
            });
        }
        words
    }

    /// [`ErrorCode::words`] joined with `|`: `not-present|write|user`.
    pub fn decoded(self) -> String {
        self.words().join("|")
    }
}

/// What one traced event says, by event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Kind {
    /// `exceptions:page_fault_user`: a page fault the CPU raised in user mode.
    PageFaultUser {
        address: u64,
        ip: u64,
        error_code: ErrorCode,
    },
    /// `kmem:mm_page_alloc`: the buddy allocator handed out 2^order frames from `pfn`.
    MmPageAlloc {
        pfn: u64,
        order: u32,
        gfp_flags: String,
    },
    /// Any other event (its name).
    Other { name: String },
}

/// One event line of the `trace` file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TraceEvent {
    pub comm: String,
    /// The task (thread) id.
    pub tid: u32,
    /// The thread group (process) id, when `record-tgid` knew it.
    pub tgid: Option<u32>,
    pub cpu: u32,
    /// The time stamp in microseconds of the instance's clock (CLOCK_MONOTONIC for a
    /// [`Session`]).
    pub ts_us: u64,
    #[serde(flatten)]
    pub kind: Kind,
}

/// One line of the `trace` file that is not a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceLine {
    Event(TraceEvent),
    /// `CPU:<n> [LOST <count> EVENTS]`: the ring buffer of that CPU overwrote events
    /// (`count` is None for `[LOST EVENTS]`, which the `trace` file prints when events were
    /// overwritten while it was read, without saying how many).
    Lost {
        cpu: u32,
        count: Option<u64>,
    },
}

fn bad(line: &str, why: &str) -> ParseError {
    ParseError(format!("trace: {why} in {:?}", line.trim_end()))
}

fn number(line: &str, s: &str) -> Result<u64, ParseError> {
    crate::parse::number(s).ok_or_else(|| bad(line, &format!("bad number {s:?}")))
}

/// `<secs>.<6 digits>` as microseconds.
fn timestamp(s: &str) -> Option<u64> {
    let (secs, frac) = s.split_once('.')?;
    if frac.len() != 6
        || secs.is_empty()
        || !(secs.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some(secs.parse::<u64>().ok()? * 1_000_000 + frac.parse::<u64>().ok()?)
}

impl TraceLine {
    /// Parses one line of the `trace` file (`None` for a comment or an empty line):
    /// `<comm>-<tid> (<tgid>) [<cpu>] <flags> <secs>.<usecs>: <event>: <fields>`, the
    /// `(<tgid>)` column with `record-tgid` only, the flags with `irq-info` only. A command
    /// name may hold spaces, dashes and brackets: the line is cut at its time stamp, the
    /// first `<secs>.<usecs>: ` after a `[<cpu>]`, and the task read from the right.
    pub fn parse(line: &str) -> Result<Option<TraceLine>, ParseError> {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(None);
        }
        if let Some(rest) = trimmed.strip_prefix("CPU:") {
            let (cpu, rest) = rest
                .split_once(' ')
                .ok_or_else(|| bad(line, "a CPU line"))?;
            let count = match rest {
                "[LOST EVENTS]" => None,
                _ => Some(
                    rest.strip_prefix("[LOST ")
                        .and_then(|r| r.strip_suffix(" EVENTS]"))
                        .ok_or_else(|| bad(line, "a CPU line that is not a LOST line"))
                        .and_then(|n| number(line, n))?,
                ),
            };
            return Ok(Some(TraceLine::Lost {
                cpu: number(line, cpu)? as u32,
                count,
            }));
        }
        // The header ends at the first "<timestamp>: " preceded by a "[<cpu>]".
        let (head, ts_us, body) = trimmed
            .match_indices(": ")
            .find_map(|(i, _)| {
                let head = &trimmed[..i];
                let ts_word = head.rsplit(' ').next()?;
                let ts = timestamp(ts_word)?;
                let head = head[..head.len() - ts_word.len()].trim_end();
                head.rfind('[')?;
                Some((head, ts, &trimmed[i + 2..]))
            })
            .ok_or_else(|| bad(line, "no time stamp"))?;
        let open = head.rfind('[').ok_or_else(|| bad(line, "no [cpu]"))?;
        let close = head[open..]
            .find(']')
            .ok_or_else(|| bad(line, "no [cpu]"))?
            + open;
        let cpu = number(line, &head[open + 1..close])? as u32;
        let mut task = head[..open].trim_end();
        let mut tgid = None;
        if task.ends_with(')') {
            let paren = task
                .rfind('(')
                .ok_or_else(|| bad(line, "a tgid without '('"))?;
            let inner = task[paren + 1..task.len() - 1].trim();
            // `(-------)`: the tgid of a task record-tgid had not seen yet.
            if !inner.chars().all(|c| c == '-') {
                tgid = Some(number(line, inner)? as u32);
            }
            task = task[..paren].trim_end();
        }
        let (comm, tid) = task
            .trim_start()
            .rsplit_once('-')
            .ok_or_else(|| bad(line, "no <comm>-<tid>"))?;
        let tid = number(line, tid)? as u32;
        let (name, fields) = body.split_once(": ").unwrap_or((body, ""));
        let field = |key: &str| -> Result<&str, ParseError> {
            fields
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| bad(line, &format!("no {key}=")))
        };
        let kind = match name {
            "page_fault_user" => Kind::PageFaultUser {
                address: number(line, field("address")?)?,
                ip: number(line, field("ip")?)?,
                error_code: ErrorCode(number(line, field("error_code")?)?),
            },
            "mm_page_alloc" => Kind::MmPageAlloc {
                pfn: number(line, field("pfn")?)?,
                order: number(line, field("order")?)? as u32,
                gfp_flags: field("gfp_flags")?.to_string(),
            },
            other => Kind::Other {
                name: other.to_string(),
            },
        };
        Ok(Some(TraceLine::Event(TraceEvent {
            comm: comm.to_string(),
            tid,
            tgid,
            cpu,
            ts_us,
            kind,
        })))
    }
}

/// What a session's buffer held: its events in order and the events the ring lost.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    pub events: Vec<TraceEvent>,
    /// Events lost: the per-CPU `overrun` and `dropped events` of the buffer, or what the
    /// `LOST` lines say if that is more (one for a line without a count): the two count the
    /// same overwritten events, so they are not added.
    pub lost: u64,
}

/// Parses a whole `trace` file.
pub fn parse_trace(text: &str) -> Result<Capture, ParseError> {
    let mut capture = Capture::default();
    for line in text.lines() {
        match TraceLine::parse(line)? {
            Some(TraceLine::Event(e)) => capture.events.push(e),
            Some(TraceLine::Lost { count, .. }) => capture.lost += count.unwrap_or(1),
            None => {}
        }
    }
    Ok(capture)
}

/// The events lost by one CPU's buffer, from its `per_cpu/cpu<n>/stats`: `overrun` (events
/// overwritten) plus `dropped events` (events refused, in a non-overwrite buffer).
pub fn parse_cpu_stats(text: &str) -> Result<u64, ParseError> {
    let field = |key: &str| -> Result<u64, ParseError> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .ok_or_else(|| ParseError(format!("per_cpu stats: no {key:?} in {text:?}")))
    };
    Ok(field("overrun:")? + field("dropped events:")?)
}

/// The events a session enables, by `system/event`.
pub const EVENTS: [&str; 2] = ["exceptions/page_fault_user", "kmem/mm_page_alloc"];

/// What to trace.
#[derive(Debug, Clone)]
pub struct Options {
    /// The tasks to trace (thread ids); empty: every task.
    pub pids: Vec<u32>,
    /// Also trace the tasks they fork from now on (`options/event-fork`).
    pub follow_forks: bool,
    /// The buffer of each CPU, in KiB.
    pub buffer_kb: u64,
}

/// A tracing instance of our own, set up for [`EVENTS`], removed on drop (see the module
/// documentation).
pub struct Session {
    dir: PathBuf,
    /// CLOCK_MONOTONIC when tracing was switched on, in nanoseconds.
    pub started_ns: u64,
    /// Unmounts tracefs if the session mounted it: after the instance is gone (a struct's
    /// fields drop after its `drop`).
    _mount: Mount,
}

/// tracefs, mounted by a session (unmounted on drop) or found mounted (left alone).
struct Mount {
    ours: bool,
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.ours {
            // SAFETY: a NUL-terminated path alive for the call.
            unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), 0) };
        }
    }
}

fn write(path: &Path, value: &str) -> Res {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// Mounts tracefs at [`TRACEFS`] unless it is there.
fn mount_tracefs() -> Res<Mount> {
    if Path::new(TRACEFS).join("instances").is_dir() {
        return Ok(Mount { ours: false });
    }
    // SAFETY: NUL-terminated strings alive for the call; no mount data.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENODEV) {
            "tracefs: this kernel has no tracefs (built without CONFIG_TRACING): the CPU's fault records are not available".to_string()
        } else {
            format!("mounting tracefs at {TRACEFS}: {e} (are you root?)")
        });
    }
    Ok(Mount { ours: true })
}

impl Session {
    /// Mounts tracefs if needed, makes the instance, sets it up as `opts` say and clears it;
    /// tracing is off until [`Session::start`]. Any failure removes what was made.
    pub fn new(opts: &Options) -> Res<Session> {
        let mount = mount_tracefs()?;
        let instances = Path::new(TRACEFS).join("instances");
        remove_stale_instances(&instances);
        let dir = instances.join(format!("pfdemo-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("making the tracing instance {}: {e}", dir.display()))?;
        let session = Session {
            dir,
            started_ns: 0,
            _mount: mount,
        };
        session.setup(opts)?;
        Ok(session)
    }

    fn setup(&self, opts: &Options) -> Res {
        let d = &self.dir;
        write(&d.join("tracing_on"), "0")?;
        write(&d.join("trace_clock"), "mono")?;
        write(&d.join("options/record-tgid"), "1")?;
        write(
            &d.join("options/event-fork"),
            if opts.follow_forks { "1" } else { "0" },
        )?;
        write(&d.join("buffer_size_kb"), &opts.buffer_kb.to_string())?;
        if !opts.pids.is_empty() {
            let pids: Vec<String> = opts.pids.iter().map(u32::to_string).collect();
            write(&d.join("set_event_pid"), &pids.join(" "))?;
        }
        for event in EVENTS {
            let enable = d.join("events").join(event).join("enable");
            if !enable.exists() {
                return Err(format!(
                    "tracefs has no event {} (a kernel without the x86 exception or kmem trace events?)",
                    event.replace('/', ":")
                ));
            }
            write(&enable, "1")?;
        }
        self.clear()
    }

    /// Empties the buffer.
    pub fn clear(&self) -> Res {
        write(&self.dir.join("trace"), "")
    }

    /// Adds `pid` to the traced tasks.
    pub fn add_pid(&self, pid: u32) -> Res {
        use std::io::Write;
        let path = self.dir.join("set_event_pid");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
            .map_err(|e| format!("adding {pid} to {}: {e}", path.display()))
    }

    /// The tasks traced now: those given and, with `follow_forks`, those they forked since
    /// (tracefs drops a task from the list when it exits).
    pub fn traced_pids(&self) -> Res<Vec<u32>> {
        let path = self.dir.join("set_event_pid");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Ok(text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect())
    }

    /// Switches tracing on; [`Session::started_ns`] is now.
    pub fn start(&mut self) -> Res {
        self.started_ns = crate::sys::monotonic_ns();
        write(&self.dir.join("tracing_on"), "1")
    }

    /// Switches tracing off.
    pub fn stop(&self) -> Res {
        write(&self.dir.join("tracing_on"), "0")
    }

    /// Reads the buffer (without consuming it) and how many events it lost.
    pub fn read(&self) -> Res<Capture> {
        let path = self.dir.join("trace");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut capture = parse_trace(&text).map_err(|e| e.to_string())?;
        let per_cpu = self.dir.join("per_cpu");
        let cpus =
            std::fs::read_dir(&per_cpu).map_err(|e| format!("{}: {e}", per_cpu.display()))?;
        let mut overrun = 0;
        for cpu in cpus {
            let stats = cpu.map_err(|e| e.to_string())?.path().join("stats");
            let text =
                std::fs::read_to_string(&stats).map_err(|e| format!("{}: {e}", stats.display()))?;
            overrun += parse_cpu_stats(&text).map_err(|e| e.to_string())?;
        }
        capture.lost = capture.lost.max(overrun);
        Ok(capture)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = write(&self.dir.join("tracing_on"), "0");
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!(
                "pfdemo: could not remove the tracing instance {}: {e}; remove it with rmdir",
                self.dir.display()
            );
        }
    }
}

/// Removes the instances of sessions whose process is gone (killed before it could clean
/// up).
fn remove_stale_instances(instances: &Path) {
    let Ok(entries) = std::fs::read_dir(instances) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("pfdemo-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines captured from the VM's default kernel (7.3.4), instance with record-tgid.
    const FAULT: &str = "              sh-117     (    117) [000] d....     2.201553: page_fault_user: address=0x7ffd55fe4628 ip=0x4e18ce error_code=0x7";
    const ALLOC: &str = "             cat-128     (    128) [001] .....     2.203764: mm_page_alloc: page=00000000dfe0794c pfn=0x78a3a order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP";
    // Ours: `pfdemo touch`'s first write to the device, and its frame's allocation.
    const OURS: &str = "          pfdemo-130     (    130) [000] d....     6.383024: page_fault_user: address=0x7f1d1b8a4000 ip=0x7f1d1b98a17a error_code=0x6";
    const OURS_ALLOC: &str = "          pfdemo-130     (    130) [000] .....     6.383072: mm_page_alloc: page=00000000c872c2de pfn=0x317d order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO";
    const IFETCH: &str = "             cat-128     (    128) [001] d....     2.203431: page_fault_user: address=0x4e1882 ip=0x4e1882 error_code=0x14";

    fn event(line: &str) -> TraceEvent {
        match TraceLine::parse(line).unwrap() {
            Some(TraceLine::Event(e)) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn parses_a_fault_line() {
        let e = event(FAULT);
        assert_eq!(
            (e.comm.as_str(), e.tid, e.tgid, e.cpu, e.ts_us),
            ("sh", 117, Some(117), 0, 2_201_553)
        );
        assert_eq!(
            e.kind,
            Kind::PageFaultUser {
                address: 0x7ffd55fe4628,
                ip: 0x4e18ce,
                error_code: ErrorCode(7)
            }
        );
    }

    #[test]
    fn parses_an_alloc_line() {
        let e = event(ALLOC);
        assert_eq!(
            (e.comm.as_str(), e.tid, e.cpu, e.ts_us),
            ("cat", 128, 1, 2_203_764)
        );
        assert_eq!(
            e.kind,
            Kind::MmPageAlloc {
                pfn: 0x78a3a,
                order: 0,
                gfp_flags: "GFP_HIGHUSER_MOVABLE|__GFP_COMP".into()
            }
        );
    }

    #[test]
    fn parses_our_lines() {
        let (f, a) = (event(OURS), event(OURS_ALLOC));
        assert_eq!(
            (f.comm.as_str(), f.tid, f.ts_us),
            ("pfdemo", 130, 6_383_024)
        );
        assert!(matches!(
            f.kind,
            Kind::PageFaultUser {
                address: 0x7f1d1b8a4000,
                error_code: ErrorCode(6),
                ..
            }
        ));
        assert!(matches!(
            a.kind,
            Kind::MmPageAlloc {
                pfn: 0x317d,
                order: 0,
                ..
            }
        ));
    }

    #[test]
    fn a_command_name_with_spaces_dashes_and_brackets() {
        let line = FAULT.replace("              sh-117", "  my-tool [x] 2-117");
        let e = event(&line);
        assert_eq!((e.comm.as_str(), e.tid), ("my-tool [x] 2", 117));
        // Without record-tgid and irq-info: no tgid column, no flags.
        let plain = "          pfdemo-301   [001]    12.000001: mm_page_alloc: page=0000000000000000 pfn=0x10 order=9 migratetype=1 gfp_flags=GFP_KERNEL";
        let e = event(plain);
        assert_eq!((e.tid, e.tgid, e.cpu, e.ts_us), (301, None, 1, 12_000_001));
        assert!(matches!(
            e.kind,
            Kind::MmPageAlloc {
                order: 9,
                pfn: 0x10,
                ..
            }
        ));
        // A tgid record-tgid had not seen.
        let unknown = FAULT.replace("(    117)", "(-------)");
        assert_eq!(event(&unknown).tgid, None);
    }

    #[test]
    fn comments_lost_lines_and_other_events() {
        assert_eq!(TraceLine::parse("# tracer: nop").unwrap(), None);
        assert_eq!(TraceLine::parse("").unwrap(), None);
        assert_eq!(
            TraceLine::parse("CPU:1 [LOST 42 EVENTS]").unwrap(),
            Some(TraceLine::Lost {
                cpu: 1,
                count: Some(42)
            })
        );
        assert_eq!(
            TraceLine::parse("CPU:0 [LOST EVENTS]").unwrap(),
            Some(TraceLine::Lost {
                cpu: 0,
                count: None
            })
        );
        let other = FAULT.replace(
            "page_fault_user: address=0x7ffd55fe4628 ip=0x4e18ce error_code=0x7",
            "sched_switch: prev_comm=sh",
        );
        assert_eq!(
            event(&other).kind,
            Kind::Other {
                name: "sched_switch".into()
            }
        );
        let text = format!("# tracer: nop\n#\n{FAULT}\nCPU:0 [LOST 3 EVENTS]\n{ALLOC}\n{IFETCH}\n");
        let capture = parse_trace(&text).unwrap();
        assert_eq!((capture.events.len(), capture.lost), (3, 3));
    }

    #[test]
    fn refuses_broken_lines() {
        assert!(TraceLine::parse("garbage without a stamp").is_err());
        assert!(TraceLine::parse(&FAULT.replace("error_code=0x7", "error_code=zz")).is_err());
        assert!(TraceLine::parse(&FAULT.replace(" ip=0x4e18ce", "")).is_err());
        assert!(TraceLine::parse(&FAULT.replace("2.201553", "2.2015")).is_err());
        assert!(TraceLine::parse(&ALLOC.replace("pfn=0x78a3a ", "")).is_err());
        assert!(TraceLine::parse("CPU:1 [LOST many EVENTS]").is_err());
    }

    #[test]
    fn decodes_error_codes() {
        assert_eq!(ErrorCode(0x6).decoded(), "not-present|write|user");
        assert_eq!(ErrorCode(0x4).decoded(), "not-present|user");
        assert_eq!(ErrorCode(0x7).decoded(), "protection|write|user");
        assert_eq!(
            ErrorCode(0x14).decoded(),
            "not-present|user|instruction-fetch"
        );
        assert_eq!(
            ErrorCode(0x8069).decoded(),
            "protection|reserved-bit|protection-key|shadow-stack|sgx"
        );
        assert_eq!(ErrorCode(1 << 20).decoded(), "not-present|bit20");
    }

    #[test]
    fn cpu_stats_count_overruns_and_drops() {
        let text = "entries: 91\noverrun: 5\ncommit overrun: 0\nbytes: 3772\noldest event ts:     2.197459\nnow ts:     4.117286\ndropped events: 2\nread events: 0\n";
        assert_eq!(parse_cpu_stats(text).unwrap(), 7);
        assert!(parse_cpu_stats("entries: 1\n").is_err());
    }
}
