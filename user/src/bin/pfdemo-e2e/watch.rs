//! `pfdemo watch`, judged by what it draws: run in a pseudo-terminal while a child process
//! touches a known pattern of its mapping, its screen (the bytes it wrote, through a terminal
//! emulator) must show exactly the pages the child's page tables map (pagemap says which),
//! the child's faults with the frames pagemap gives, and the module's counters; `q` and
//! Ctrl-C must end it within a second with the terminal as it was; `--once` prints the same
//! as text, and bad targets and a recorder that is off are explained.

mod pty;

use crate::expect::*;
use crate::tools::invoke::output;
use pfdemo::harness::Child;
use pty::{cooked_part, PtyRun};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

pub const CASES: &[Case] = &[
    (
        "pfdemo watch --pid in a pty: the touched pages fill in, their faults and the counters show",
        watch_draws_the_touched_pages,
    ),
    (
        "pfdemo watch: q and Ctrl-C quit within a second and give the terminal back",
        watch_quits_and_restores_the_terminal,
    ),
    (
        "pfdemo watch --once prints the frame as text; bad targets are explained, a recorder off switched on",
        watch_once_and_its_refusals,
    ),
    (
        "pfdemo watch draws PMD leaves as H and PTEs as #, as the page-table walk finds them",
        watch_tells_pmd_leaves_from_ptes,
    ),
];

/// The child's mapping and the pages it touches, in this order.
const PAGES: usize = 32;
const TOUCHED: [usize; 6] = [0, 3, 4, 9, 17, 30];
/// The terminal: wide enough that the 32 pages make one row of the map.
const COLS: u16 = 120;
const ROWS: u16 = 40;

/// A forked child holding a mapping of the device, that touches [`TOUCHED`] when told to.
/// Word 0: 1 go, 2 end; word 1: 1 touched.
struct Toucher {
    child: Option<Child>,
    shared: SharedWords,
}

impl Toucher {
    fn start(map: &Mapping) -> Result<Toucher, String> {
        let shared = SharedWords::new(2)?;
        let body = || {
            while shared.word(0).load(SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            for p in TOUCHED {
                map.write(p, 0, 0x5a00 + p as u64);
            }
            shared.word(1).store(1, SeqCst);
            while shared.word(0).load(SeqCst) != 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        };
        // SAFETY: this process is single-threaded (the cases run one after another on the
        // main thread), so the child may do anything.
        let child = io("fork", unsafe { pfdemo::harness::fork(body) })?;
        Ok(Toucher {
            child: Some(child),
            shared,
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.pid() as u32)
    }

    /// Tells the child to touch its pages and waits until it has.
    fn touch(&self) -> Check {
        self.shared.word(0).store(1, SeqCst);
        let end = Instant::now() + Duration::from_secs(10);
        while self.shared.word(1).load(SeqCst) == 0 {
            ensure!(
                Instant::now() < end,
                "the child did not touch its pages in 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        self.shared.word(0).store(2, SeqCst);
        if let Some(child) = self.child.take() {
            let _ = child.wait_within(Duration::from_secs(10));
        }
    }
}

/// The map's cells after the row label of `addr` (its 12 hex digits and a space), if drawn.
fn cells_at(lines: &[String], addr: u64, n: usize) -> Option<String> {
    let label = format!("{addr:012x} ");
    let line = lines.iter().find(|l| l.contains(&label))?;
    let at = line.find(&label)? + label.len();
    let cells: String = line[at..].chars().take(n).collect();
    (cells.chars().count() == n).then_some(cells)
}

/// What the cells of the pages should be: `#` mapped, `.` not.
fn expected_cells(present: &[bool]) -> String {
    present.iter().map(|p| if *p { '#' } else { '.' }).collect()
}

/// One row of the fault list: time, tid, address, how, path, outcome, pfn, total ns.
struct FaultRow {
    tid: u32,
    addr: u64,
    how: String,
    out: String,
    pfn: Option<u64>,
}

/// The text of a line inside a panel's borders.
fn inside(line: &str) -> &str {
    line.trim_matches(|c: char| c == '|' || c == '│' || c.is_whitespace())
}

fn fault_rows(lines: &[String]) -> Vec<FaultRow> {
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok();
    lines
        .iter()
        .filter_map(|l| {
            let cols: Vec<&str> = inside(l).split_whitespace().collect();
            let [_, tid, addr, how, _, out, pfn, _] = cols[..] else {
                return None;
            };
            if addr.len() != 12 || !["mapped", "sigbus", "oom", "fallback"].contains(&out) {
                return None;
            }
            Some(FaultRow {
                tid: tid.parse().ok()?,
                addr: hex(addr)?,
                how: how.into(),
                out: out.into(),
                pfn: hex(pfn),
            })
        })
        .collect()
}

/// The value of counter `name` in the counter panel.
fn counter(lines: &[String], name: &str) -> Option<u64> {
    lines.iter().find_map(|l| {
        l.split(['|', '│']).find_map(|panel| {
            let mut words = panel.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
        })
    })
}

/// The count in the histogram's title, `handler latency (N calls)`.
fn latency_calls(lines: &[String]) -> Option<u64> {
    lines.iter().find_map(|l| {
        let rest = &l[l.find("handler latency (")? + "handler latency (".len()..];
        rest.split(' ').next()?.parse().ok()
    })
}

/// The first frame is drawn: the map's first row and the fault panel are on the screen.
fn drawn(base: u64) -> impl Fn(&[String]) -> bool {
    move |l: &[String]| {
        cells_at(l, base, PAGES).is_some() && l.iter().any(|x| x.contains("faults of pid"))
    }
}

/// `pfdemo watch --pid CHILD --frames 40 --interval 100` on a `vt100` terminal: the first
/// frame shows nothing mapped; then the child touches its pages (and this process one of its
/// own), and the last frame must show the pages the child's page tables map (by pagemap), the
/// faults the recorder logged for the child alone (with pagemap's frames), and the counters
/// as the module has them.
fn watch_draws_the_touched_pages() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(PAGES, 0, true))?;
    let base = map.addr(0) as u64;
    let toucher = Toucher::start(&map)?;
    let pid = toucher.pid();
    let before = stats()?;
    let (faulted, present) = fault_pattern(TOUCHED, PAGES)?;
    let started = Instant::now();
    let args = [
        "watch",
        "--pid",
        &pid.to_string(),
        "--frames",
        "40",
        "--interval",
        "100",
    ];
    let mut run = PtyRun::start(&args, "vt100", COLS, ROWS)?;
    let first = run.wait_for("the first frame", Duration::from_secs(20), drawn(base))?;
    let empty = ".".repeat(PAGES);
    ensure!(
        cells_at(&first, base, PAGES).as_deref() == Some(empty.as_str()),
        "before any touch the map should be empty; the screen:\n{}",
        first.join("\n")
    );
    toucher.touch()?;
    // This process touches page 1 of its own view of the mapping: a fault of another pid,
    // which must not show, and a page of its page tables, not the child's.
    map.write(1, 0, 0xe2e);
    // The kernel's own record of the child's pages, right after its touches.
    let mut pm = io("child's pagemap", Pagemap::of(pid))?;
    let mut pfns = Vec::new();
    for (i, want) in present.iter().enumerate() {
        let e = io("child's pagemap", pm.entry(map.addr(i)))?;
        ensure!(
            e.present == *want,
            "pagemap of the child: page {i} present {}, expected {want}",
            e.present
        );
        pfns.push(e.pfn);
    }
    let status = run.wait_exit(Duration::from_secs(30))?;
    let elapsed = started.elapsed();
    ensure!(
        status.is_some_and(|s| s.success()),
        "pfdemo watch --frames 40 ended with {status:?} (None: still running); the screen:\n{}",
        run.lines().join("\n")
    );
    // 40 frames 100 ms apart: 39 intervals at least.
    ensure!(
        elapsed >= Duration::from_millis(3900),
        "40 frames at 100 ms took {elapsed:?}"
    );
    let after = stats()?;
    let last = run.last_frame()?;
    let screen = || last.join("\n");
    ensure!(
        screen().is_ascii(),
        "TERM=vt100 must give ASCII only; the screen:\n{}",
        screen()
    );
    let want = expected_cells(&present);
    ensure!(
        cells_at(&last, base, PAGES).as_deref() == Some(want.as_str()),
        "the map should be {want} (pagemap's pages); the screen:\n{}",
        screen()
    );
    // The fault list: one row per fault, at exactly the addresses that faulted.
    let rows = fault_rows(&last);
    let mut shown: Vec<u64> = rows.iter().map(|r| r.addr).collect();
    shown.sort();
    let wanted: Vec<u64> = TOUCHED
        .iter()
        .zip(&faulted)
        .filter(|(_, f)| **f)
        .map(|(p, _)| base + *p as u64 * 4096)
        .collect();
    ensure!(
        shown == wanted,
        "fault rows at {shown:x?}, expected {wanted:x?}; the screen:\n{}",
        screen()
    );
    for r in &rows {
        let page = ((r.addr - base) / 4096) as usize;
        ensure!(
            r.tid == pid && r.how.contains('W') && r.out == "mapped" && r.pfn == pfns[page],
            "fault row at {:#x} (tid {}, how {}, {}, pfn {:x?}): expected tid {pid}, a write, mapped, pfn {:x?} (pagemap)",
            r.addr,
            r.tid,
            r.how,
            r.out,
            r.pfn,
            pfns[page]
        );
    }
    // The counters as the module has them (nothing else faulted meanwhile).
    let faults = stat(&after, "faults")?;
    ensure!(
        faults - stat(&before, "faults")? == expected_faults(TOUCHED, PAGES)? as u64 + 1,
        "the module counted {} faults for the child's touches and this process's one",
        faults - stat(&before, "faults")?
    );
    for name in ["faults", "write_faults", "frames_allocated"] {
        let shown = counter(&last, name);
        ensure!(
            shown == Some(stat(&after, name)?),
            "the counter {name} shows {shown:?}, the module {}; the screen:\n{}",
            stat(&after, name)?,
            screen()
        );
    }
    let calls = latency_calls(&last);
    ensure!(
        calls == Some(latency_total()?),
        "the histogram shows {calls:?} calls, the latency file {}",
        latency_total()?
    );
    ensure!(
        !run.screen().screen().alternate_screen(),
        "the terminal is still on the alternate screen after --frames ended"
    );
    drop((toucher, map, dev));
    Ok(())
}

/// `q`, then (in a second run) Ctrl-C: each ends the watch within a second with status 0, off
/// the alternate screen, the cursor shown, and the terminal's settings as before (raw mode
/// off again); and a terminal that is not `linux`/`vt100`/`vt220`/`dumb` gets line drawing.
fn watch_quits_and_restores_the_terminal() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(PAGES, 0, true))?;
    let base = map.addr(0) as u64;
    let me = std::process::id().to_string();
    for (key, name) in [(&b"q"[..], "q"), (&b"\x03"[..], "Ctrl-C")] {
        let mut run = PtyRun::start(&["watch", "--pid", &me], "xterm-256color", COLS, ROWS)?;
        let first = run.wait_for("the first frame", Duration::from_secs(20), drawn(base))?;
        let raw = run.termios()?;
        ensure!(
            run.screen().screen().alternate_screen()
                && raw.c_lflag & (libc::ICANON | libc::ECHO) == 0,
            "while watching: alternate screen {}, c_lflag {:#o} (expected raw mode)",
            run.screen().screen().alternate_screen(),
            raw.c_lflag
        );
        ensure!(
            first.iter().any(|l| l.contains('┌')),
            "TERM=xterm-256color should get box drawing; the screen:\n{}",
            first.join("\n")
        );
        let t = Instant::now();
        run.send(key)?;
        let status = run.wait_exit(Duration::from_secs(1))?;
        let took = t.elapsed();
        ensure!(
            status.is_some_and(|s| s.success()),
            "{name}: pfdemo watch ended with {status:?} (None: still running after 1 s)"
        );
        let screen = run.screen();
        let restored = run.termios()?;
        ensure!(
            !screen.screen().alternate_screen()
                && !screen.screen().hide_cursor()
                && cooked_part(&restored) == cooked_part(&run.initial),
            "{name} (after {took:?}): alternate screen {}, cursor hidden {}, terminal settings (lflag, iflag, oflag) {:?} (before: {:?})",
            screen.screen().alternate_screen(),
            screen.screen().hide_cursor(),
            cooked_part(&restored),
            cooked_part(&run.initial)
        );
    }
    drop((map, dev));
    Ok(())
}

/// `--once`, with stdout a pipe: the child's touched pages, the counters; `--instance` of the
/// same file; the refusals (a pid without device mappings, no such pid or instance, no
/// terminal without `--once`), each one line with its fix; and the recorder switched off.
fn watch_once_and_its_refusals() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(PAGES, 0, true))?;
    let base = map.addr(0) as u64;
    let toucher = Toucher::start(&map)?;
    toucher.touch()?;
    let (_, present) = fault_pattern(TOUCHED, PAGES)?;
    let pid = toucher.pid().to_string();
    let (code, out, err) = output(
        "/bin/pfdemo",
        &[
            "watch",
            "--pid",
            &pid,
            "--once",
            "--interval",
            "50",
            "--ascii",
        ],
    )?;
    ensure!(code == Some(0), "--once exited {code:?}: {err}");
    let lines: Vec<String> = out.lines().map(String::from).collect();
    let want = expected_cells(&present);
    ensure!(
        out.is_ascii() && cells_at(&lines, base, PAGES).as_deref() == Some(want.as_str()),
        "--once should draw {want} in ASCII:\n{out}"
    );
    let faults = stat(&stats()?, "faults")?;
    ensure!(
        counter(&lines, "faults") == Some(faults),
        "--once shows faults {:?}, the module {faults}:\n{out}",
        counter(&lines, "faults")
    );
    // The instance: as many pages with a frame as the frames file lists, open in this process.
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let frames = io("frames", read_frames())?
        .iter()
        .filter(|r| r.instance == id)
        .count();
    let (code, out, err) = output(
        "/bin/pfdemo",
        &["watch", "--instance", &id.to_string(), "--once", "--ascii"],
    )?;
    let title = format!("{frames} with a frame; open in pid");
    let me = std::process::id().to_string();
    ensure!(
        code == Some(0)
            && out.lines().any(|l| l.contains(&title)
                && l.contains(&format!("instance {id}:"))
                && l.split([' ', ',']).any(|w| w == me)),
        "--instance {id} --once (status {code:?}, {err}) should say {title:?} and pid {me}:\n{out}"
    );
    drop(toucher);
    // The refusals: exit 1, one line that says what and how to fix it.
    let no_pid = u32::MAX / 2;
    for (args, words) in [
        (
            vec!["watch", "--pid", "1", "--once"],
            &[
                "process 1 has no mapping of /dev/rust_pagefault_demo",
                "Fix",
            ][..],
        ),
        (
            vec!["watch", "--pid", &no_pid.to_string(), "--once"],
            &["no process", "Fix"][..],
        ),
        (
            vec!["watch", "--instance", &no_pid.to_string(), "--once"],
            &["no process has it open", "Fix"][..],
        ),
        (
            vec!["watch", "--pid", &me],
            &["not a terminal", "--once"][..],
        ),
    ] {
        tried(1);
        let (code, _, err) = output("/bin/pfdemo", &args)?;
        ensure!(
            code == Some(1) && err.lines().count() == 1 && words.iter().all(|w| err.contains(w)),
            "pfdemo {args:?}: status {code:?}, {err:?} (expected 1 and one line with {words:?})"
        );
    }
    // The recorder switched off (its default): watch switches it on, and the fault list
    // carries no note; a module without one: said. The module reloads only with no file of
    // it open: the pid watched is this process, with a new mapping after the reload.
    drop((map, dev));
    let recorder = stats()?.0.contains_key("events");
    if recorder {
        reload(&["events=0"])?;
    }
    let said = (|| {
        let dev = io("open", Device::open())?;
        let _map = io("mmap", dev.map(PAGES, 0, true))?;
        let said = output("/bin/pfdemo", &["watch", "--pid", &me, "--once", "--ascii"])?;
        Ok::<_, String>((said, stat(&stats()?, "events")?))
    })();
    if recorder {
        reload(&[])?;
    }
    let ((code, out, err), events) = said?;
    let flat = out
        .lines()
        .map(inside)
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if recorder {
        ensure!(
            code == Some(0) && events == 1 && !flat.contains("flight recorder is off"),
            "watch with the recorder off: status {code:?}, events {events} after, ({err}):\n{out}"
        );
    } else {
        ensure!(
            code == Some(0) && flat.contains("no flight recorder"),
            "the fault list should say there is no flight recorder (status {code:?}, {err}):\n{out}"
        );
    }
    Ok(())
}

/// A 2 MiB-aligned mapping of 4 MiB, page 3 touched: with `huge=1` one PMD leaf maps the
/// first 2 MiB, which `--once` must draw as 512 `H`; otherwise PTEs, `#`, for the pages the
/// fault mapped. The module's walk of this process says which it is.
fn watch_tells_pmd_leaves_from_ptes() -> Check {
    const TWO_MIB: usize = 2 << 20;
    let dev = io("open", Device::open())?;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    map.write(3, 0, 0x77);
    let (end, _) = mapped_as(&dev, map.addr(3))?;
    let huge = unit()? == 512;
    ensure!(
        end == if huge { End::HugePmd } else { End::Leaf },
        "the walk of page 3 ends at {end:?} (huge {huge})"
    );
    let (_, present) = fault_pattern([3], 1024)?;
    let cells: String = (0..1024)
        .map(|i| match (huge, i < 512, present[i]) {
            (true, true, _) => 'H',
            (false, _, true) => '#',
            _ => '.',
        })
        .collect();
    let me = std::process::id().to_string();
    let (code, out, err) = output(
        "/bin/pfdemo",
        &[
            "watch",
            "--pid",
            &me,
            "--once",
            "--ascii",
            "--interval",
            "50",
        ],
    )?;
    ensure!(code == Some(0), "--once exited {code:?}: {err}");
    let lines: Vec<String> = out.lines().map(String::from).collect();
    // 1024 pages at 32 a row (100 columns).
    for row in 0..32 {
        let addr = map.addr(row * 32) as u64;
        let want = &cells[row * 32..row * 32 + 32];
        let shown = cells_at(&lines, addr, 32);
        ensure!(
            shown.as_deref() == Some(want),
            "the row of {addr:#x} shows {shown:?}, expected {want}:\n{out}"
        );
    }
    drop((map, dev));
    Ok(())
}
