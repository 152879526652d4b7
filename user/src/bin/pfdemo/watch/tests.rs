//! Host tests of `pfdemo watch`: known snapshots drawn on ratatui's `TestBackend` give known
//! cells, and the source reads synthetic debugfs and recorder files (and this process's own
//! mapping of a file, in place of the device) into what it should.

use super::source::{Paths, Source, Target};
use super::view::{self, Glyphs, Page, Region, Snapshot};
use pfdemo::events::{Event, Line, RECORD_BYTES};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

const BASE: u64 = 0x7f00_0000_0000;

fn event(seq: u64, t: u64, tid: u32, addr: u64, path: &str, pfn: &str) -> Event {
    let line = format!(
        "seq={seq} t={t} cpu=0 pid=300 tid={tid} inst=4 call=fault path={path} out=mapped \
         addr={addr:#x} pgoff=1 flags=0x1255 how=WUV pfn={pfn} new=1 pages=1 allocs=1 \
         reserve_ns=40 alloc_ns=900 map_ns=300 total_ns={}",
        1000 + seq
    );
    match Line::parse(0, &line).unwrap() {
        Line::Event(e) => e,
        Line::Dropped { .. } => unreachable!(),
    }
}

fn region(pages: Vec<Page>) -> Region {
    Region {
        title: "the mapping".into(),
        first: BASE,
        by_address: true,
        fresh: vec![false; pages.len()],
        pages,
    }
}

/// Pages `touched` of `n` present, the others absent.
fn pattern(n: usize, touched: &[usize]) -> Vec<Page> {
    (0..n)
        .map(|i| {
            if touched.contains(&i) {
                Page::Present
            } else {
                Page::Absent
            }
        })
        .collect()
}

fn snapshot(regions: Vec<Region>) -> Snapshot {
    Snapshot {
        target: "pid 300".into(),
        regions,
        counters: vec![
            ("faults".into(), 12, None),
            ("write_faults".into(), 7, Some(4.0)),
            ("read_faults".into(), 5, Some(0.0)),
        ],
        settings: "prefault=1 huge=0".into(),
        latency: vec![(1024, 3), (2048, 12), (4096, 6)],
        faults: vec![
            event(1, 2_500_000_000, 301, BASE + 5 * 4096, "page", "0x1a2b3"),
            event(0, 1_000_000_000, 302, BASE, "page", "0x1a2b0"),
        ],
        start_ns: 1_000_000_000,
        interval_ms: 250,
        ..Snapshot::default()
    }
}

/// Draws `s` on a `TestBackend` of `w` x `h` and returns its lines.
fn drawn(s: &Snapshot, g: &Glyphs, w: u16, h: u16) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::draw(f, s, g)).unwrap();
    view::text(term.backend().buffer())
        .lines()
        .map(str::to_string)
        .collect()
}

/// The cells after the row label of `addr`.
fn cells_at(lines: &[String], addr: u64, n: usize) -> String {
    let label = format!("{addr:012x} ");
    let line = lines
        .iter()
        .find(|l| l.contains(&label))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{}", lines.join("\n")));
    let at = line.find(&label).unwrap() + label.len();
    line[at..].chars().take(n).collect()
}

#[test]
fn one_cell_per_page_shows_exactly_the_mapped_pages() {
    let s = snapshot(vec![region(pattern(32, &[0, 3, 4, 31]))]);
    let lines = drawn(&s, &Glyphs::ASCII, 120, 30);
    assert_eq!(
        cells_at(&lines, BASE, 32),
        "#..##..........................#"
    );
    assert!(lines.iter().any(|l| l.contains("1 cell = 1 page")));
    let lines = drawn(&s, &Glyphs::UNICODE, 120, 30);
    assert_eq!(
        cells_at(&lines, BASE, 32),
        "█··██··························█"
    );
}

#[test]
fn rows_are_labelled_with_their_first_address() {
    // At 80 columns the map has room for 16 cells a row.
    let s = snapshot(vec![region(pattern(40, &[16, 33]))]);
    let lines = drawn(&s, &Glyphs::ASCII, 80, 30);
    assert_eq!(cells_at(&lines, BASE, 16), "................");
    assert_eq!(cells_at(&lines, BASE + 16 * 4096, 16), "#...............");
    assert_eq!(cells_at(&lines, BASE + 32 * 4096, 8), ".#......");
}

#[test]
fn a_range_larger_than_the_panel_groups_pages_and_shows_the_fraction() {
    // 4096 pages in a 24-row terminal: 8 map rows at most, so 16 cells a row need 32 pages
    // a cell. Cell 0: all 32 present; cell 1: 8 (under half); cell 2: 16 (half); cell 3: none.
    let mut touched: Vec<usize> = (0..32).collect();
    touched.extend(32..40);
    touched.extend(64..80);
    let s = snapshot(vec![region(pattern(4096, &touched))]);
    let lines = drawn(&s, &Glyphs::ASCII, 80, 24);
    assert!(
        lines.iter().any(|l| l.contains("1 cell = 32 pages")),
        "{}",
        lines.join("\n")
    );
    assert_eq!(cells_at(&lines, BASE, 4), "#:=.");
    let lines = drawn(&s, &Glyphs::UNICODE, 80, 24);
    assert_eq!(cells_at(&lines, BASE, 4), "█░▒·");
}

#[test]
fn pmd_mapped_pages_are_h() {
    let mut pages = vec![Page::Pmd; 512];
    pages.extend(vec![Page::Present; 512]);
    let s = snapshot(vec![region(pages)]);
    let lines = drawn(&s, &Glyphs::ASCII, 80, 24);
    // 1024 pages, 16 cells a row, 7 rows: 16 pages a cell, 32 cells of H then 32 of #.
    assert_eq!(cells_at(&lines, BASE, 16), "H".repeat(16));
    assert_eq!(cells_at(&lines, BASE + 512 * 4096, 16), "#".repeat(16));
}

#[test]
fn the_fault_list_shows_time_tid_address_how_path_outcome_pfn_and_ns() {
    let s = snapshot(vec![region(pattern(8, &[0, 5]))]);
    let lines = drawn(&s, &Glyphs::ASCII, 100, 30);
    let rows: Vec<&String> = lines.iter().filter(|l| l.contains("7f0000")).collect();
    // The newest first: page 5's fault 1.5 s after the start, then page 0's at the start.
    let newest = lines
        .iter()
        .position(|l| l.contains("7f0000005000 WUV"))
        .unwrap();
    let oldest = lines
        .iter()
        .position(|l| l.contains("7f0000000000 WUV"))
        .unwrap();
    assert!(newest < oldest, "{rows:?}");
    let row = &lines[newest];
    for want in ["1.500", "301", "page", "mapped", "0x1a2b3", "1001"] {
        assert!(row.contains(want), "{want} not in {row:?}");
    }
    assert!(lines[oldest].contains("0.000") && lines[oldest].contains("302"));
}

#[test]
fn counters_show_their_change_per_second_and_the_histogram_its_bars() {
    let s = snapshot(vec![region(pattern(8, &[]))]);
    let lines = drawn(&s, &Glyphs::ASCII, 100, 30);
    let faults = lines.iter().find(|l| l.contains("faults ")).unwrap();
    assert!(faults.contains("12"), "{faults}");
    let writes = lines.iter().find(|l| l.contains("write_faults")).unwrap();
    assert!(writes.contains("+4/s"), "{writes}");
    let reads = lines.iter().find(|l| l.contains("read_faults")).unwrap();
    assert!(reads.contains(" 5") && !reads.contains("/s"), "{reads}");
    let bar = |le: &str| {
        let l = lines.iter().find(|l| l.contains(le)).unwrap();
        l.chars().filter(|c| *c == '#').count()
    };
    // Bars scale to the largest bucket (12): 3 is a quarter of it, 6 half.
    let (small, big, half) = (bar(" 1024 ns"), bar(" 2048 ns"), bar(" 4096 ns"));
    assert!(
        big > 4 && small == big.div_ceil(4) && half == big.div_ceil(2),
        "{small} {big} {half}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("handler latency (21 calls)")));
}

#[test]
fn ascii_glyphs_draw_only_ascii() {
    let mut s = snapshot(vec![region(pattern(4096, &[1, 2, 3, 100]))]);
    s.faults_note = None;
    for (w, h) in [(80, 24), (132, 43)] {
        let text = drawn(&s, &Glyphs::ASCII, w, h).join("\n");
        assert!(text.is_ascii(), "{text}");
    }
}

#[test]
fn a_note_replaces_the_fault_list() {
    let mut s = snapshot(vec![region(pattern(8, &[]))]);
    s.faults_note = Some("the flight recorder is off (module parameter events=0)".into());
    let lines = drawn(&s, &Glyphs::ASCII, 100, 30);
    assert!(lines.iter().any(|l| l.contains("events=0")));
    assert!(!lines.iter().any(|l| l.contains("7f0000005000")));
}

#[test]
fn the_text_frame_holds_every_page_counter_and_fault() {
    let mut s = snapshot(vec![region(pattern(200, &[7, 199]))]);
    s.counters = (0..20).map(|i| (format!("counter{i}"), i, None)).collect();
    let text = super::render_text(&s, &Glyphs::ASCII, 100);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // 200 pages at 32 a row (100 columns): 7 rows, the last one of 8 cells.
    assert_eq!(cells_at(&lines, BASE, 8), ".......#");
    assert_eq!(cells_at(&lines, BASE + 192 * 4096, 8), ".......#");
    assert!(lines.iter().any(|l| l.contains("counter19")));
    assert!(lines.iter().any(|l| l.contains("7f0000005000")));
    assert!(lines.iter().all(|l| l.chars().count() <= 100));
}

// ---------------------------------------------------------------------------------------
// The source, on synthetic files

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("pfdemo-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("events")).unwrap();
        Dir(d)
    }

    fn paths(&self, device: &str) -> Paths {
        Paths {
            debugfs: self.0.clone(),
            events: self.0.join("events"),
            device: device.into(),
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(e: &str) -> String {
    format!("{e:<width$}\n", width = RECORD_BYTES - 1)
}

fn record_of(seq: u64, pid: u32, inst: u64, addr: u64) -> String {
    record(&format!(
        "seq={seq} t={} cpu=0 pid={pid} tid={pid} inst={inst} call=fault path=page out=mapped \
         addr={addr:#x} pgoff=0 flags=0x1255 how=WUV pfn=0x100 new=1 pages=1 allocs=1 \
         reserve_ns=1 alloc_ns=2 map_ns=3 total_ns=6",
        1000 + seq
    ))
}

const STATS: &str = "faults 10\nread_faults 2\nwrite_faults 8\nframes_live 3\nprefault 1\nhuge 0\n";

#[test]
fn an_instance_shows_its_frames_and_only_its_own_events() {
    let dir = Dir::new("instance");
    dir.write("stats", &format!("{STATS}events 1\n"));
    dir.write("latency", "1024 5\n");
    dir.write(
        "frames",
        "# instance pgoff pfn phys\n4 0 0x10 0x10000\n4 9 0x11 0x11000\n5 3 0x12 0x12000\n",
    );
    dir.write("events/heads", "cpu0 0 0\n");
    dir.write("events/cpu0", "");
    let mut source = Source::new(Target::Instance(4), dir.paths("/nonexistent"), 250).unwrap();
    let first = source.sample().unwrap();
    // Recorded after the watch began: two faults of instance 4, one of instance 5.
    let records = [
        record_of(0, 300, 4, BASE),
        record_of(1, 301, 5, BASE + 4096),
        record_of(2, 300, 4, BASE + 9 * 4096),
    ];
    dir.write("events/cpu0", &records.concat());
    dir.write(
        "stats",
        &format!("{}events 1\n", STATS.replace("faults 10", "faults 12")),
    );
    dir.write(
        "frames",
        "# instance pgoff pfn phys\n4 0 0x10 0x10000\n4 9 0x11 0x11000\n4 10 0x13 0x13000\n",
    );
    let s = source.sample().unwrap();
    assert!(first.faults.is_empty() && first.faults_note.is_none());
    // No open file of it here: the size is up to its last frame, in whole rows of 64.
    assert_eq!(s.regions.len(), 1);
    let r = &s.regions[0];
    assert_eq!(r.pages.len(), 64);
    let present: Vec<usize> = (0..64).filter(|i| r.pages[*i] != Page::Absent).collect();
    assert_eq!(present, [0, 9, 10]);
    let fresh: Vec<usize> = (0..64).filter(|i| r.fresh[*i]).collect();
    assert_eq!(fresh, [10]);
    let addrs: Vec<u64> = s.faults.iter().map(|e| e.addr).collect();
    assert_eq!(
        addrs,
        [BASE + 9 * 4096, BASE],
        "newest first, instance 4 only"
    );
    let faults = s.counters.iter().find(|c| c.0 == "faults").unwrap();
    assert_eq!(faults.1, 12);
    assert!(faults.2.is_some_and(|r| r > 0.0));
    assert!(!s
        .counters
        .iter()
        .any(|c| c.0 == "prefault" || c.0 == "events"));
    assert!(s.settings.contains("prefault=1") && s.settings.contains("events=1"));
}

#[test]
fn a_recorder_that_is_off_or_missing_is_explained() {
    let dir = Dir::new("off");
    dir.write("stats", &format!("{STATS}events 0\n"));
    dir.write("latency", "");
    dir.write("frames", "# instance pgoff pfn phys\n4 0 0x10 0x10000\n");
    dir.write("events/heads", "cpu0 0 0\n");
    dir.write("events/cpu0", "");
    let mut source = Source::new(Target::Instance(4), dir.paths("/nonexistent"), 250).unwrap();
    let note = source.sample().unwrap().faults_note.unwrap();
    // No `enable` file to switch it on with here: said, with the fix.
    assert!(
        note.contains("events 0") && note.contains("echo 1 >"),
        "{note}"
    );
    std::fs::remove_dir_all(dir.0.join("events")).unwrap();
    dir.write("stats", STATS);
    let mut source = Source::new(Target::Instance(4), dir.paths("/nonexistent"), 250).unwrap();
    let note = source.sample().unwrap().faults_note.unwrap();
    assert!(note.contains("no flight recorder"), "{note}");
}

#[test]
fn an_unknown_instance_or_a_pid_without_mappings_is_refused() {
    let dir = Dir::new("refused");
    dir.write("stats", STATS);
    dir.write("latency", "");
    dir.write("frames", "# instance pgoff pfn phys\n4 0 0x10 0x10000\n");
    let err = Source::new(Target::Instance(7), dir.paths("/nonexistent"), 250)
        .err()
        .unwrap();
    assert!(err.contains("instance 7") && err.contains("Fix"), "{err}");
    let me = std::process::id();
    let err = Source::new(Target::Pid(me), dir.paths("/nonexistent"), 250)
        .err()
        .unwrap();
    assert!(
        err.contains("has no mapping of /nonexistent") && err.contains("Fix"),
        "{err}"
    );
    let err = Source::new(Target::Pid(u32::MAX / 2), dir.paths("/nonexistent"), 250)
        .err()
        .unwrap();
    assert!(err.starts_with("no process"), "{err}");
    std::fs::remove_file(dir.0.join("stats")).unwrap();
    let err = Source::new(Target::Instance(4), dir.paths("/nonexistent"), 250)
        .err()
        .unwrap();
    assert!(err.contains("unloaded"), "{err}");
}

/// This process's shared mapping of a file stands in for the device: the pid's map shows the
/// pages its page tables map, as PAGEMAP_SCAN reads them.
#[test]
fn a_pid_shows_the_pages_its_page_tables_map() {
    use std::os::fd::AsRawFd;
    let dir = Dir::new("pid");
    dir.write("stats", STATS);
    dir.write("latency", "");
    dir.write("frames", "# instance pgoff pfn phys\n");
    let path = dir.0.join("device");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(16 * 4096).unwrap();
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let map =
        pfdemo::sys::Mapping::new(Some(file.as_raw_fd()), 16, 0, prot, libc::MAP_SHARED).unwrap();
    let device = path.to_str().unwrap();
    let mut source = Source::new(Target::Pid(std::process::id()), dir.paths(device), 250).unwrap();
    let before = source.sample().unwrap();
    for page in [2, 3, 11] {
        map.write(page, 0, 1);
    }
    let after = source.sample().unwrap();
    let present = |s: &Snapshot| -> Vec<usize> {
        (0..16)
            .filter(|i| s.regions[0].pages[*i] != Page::Absent)
            .collect()
    };
    assert_eq!(before.regions.len(), 1);
    assert_eq!(before.regions[0].first, map.addr(0) as u64);
    assert_eq!(present(&before), [] as [usize; 0]);
    assert_eq!(present(&after), [2, 3, 11]);
    let fresh: Vec<usize> = (0..16).filter(|i| after.regions[0].fresh[*i]).collect();
    assert_eq!(fresh, [2, 3, 11]);
    assert!(after.regions[0].title.contains("16 pages"));
    drop(map);
    let gone = source.sample().unwrap();
    assert!(gone.map_note.unwrap().contains("maps no part"));
}

#[test]
fn every_latency_bucket_shows_beside_many_counters() {
    let mut s = snapshot(vec![region(pattern(8, &[]))]);
    s.counters = (0..30).map(|i| (format!("counter{i}"), i, None)).collect();
    s.latency = (10..18).map(|b| (1u64 << b, b)).collect();
    let lines = drawn(&s, &Glyphs::ASCII, 80, 24);
    for (le, _) in &s.latency {
        let label = format!("{le:>9} ns");
        assert!(
            lines.iter().any(|l| l.contains(&label)),
            "no bucket {le}:\n{}",
            lines.join("\n")
        );
    }
    assert!(lines.iter().any(|l| l.contains("counter0 ")));
}

#[test]
fn a_tiny_terminal_draws_without_panicking() {
    let s = snapshot(vec![region(pattern(4096, &[1, 2, 3]))]);
    for (w, h) in [(1, 1), (20, 5), (40, 10), (200, 3)] {
        drawn(&s, &Glyphs::UNICODE, w, h);
    }
}
