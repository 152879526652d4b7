//! pfdemo: the user-side tour of malloc, page tables and page faults, and the tools to look
//! at what rust_pagefault_demo did.

use clap::{Parser, Subcommand};
use pfdemo::parse::{check_mapping, FrameIndex, FrameRow, PagemapEntry, Stats};
use pfdemo::sys::{self, page_size, Device, Mapping, Pagemap, StatSampler};
use serde::Serialize;
use std::collections::HashMap;
use std::process::ExitCode;

mod bench;

#[derive(Parser)]
#[command(
    name = "pfdemo",
    version,
    about = "Watch demand paging happen: rust_pagefault_demo's tour and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk the eight steps from malloc to a mapped frame, with live evidence.
    Tour {
        /// Pages to touch on each side (device and anonymous memory).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        pages: u64,
        /// Assert every step's evidence and exit non-zero on any mismatch.
        #[arg(long)]
        check: bool,
        /// Print the steps as JSON instead of prose.
        #[arg(long)]
        json: bool,
    },
    /// Map the device and touch pages; print VA, pgoff, PFN and fault counts per page.
    Touch {
        #[arg(long, default_value_t = 16)]
        pages: usize,
        /// Touch every S-th page.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        stride: u64,
        /// Write to each page (the default).
        #[arg(long, conflicts_with = "read")]
        write: bool,
        /// Read each page instead of writing it.
        #[arg(long)]
        read: bool,
        /// MAP_PRIVATE instead of MAP_SHARED (writes then copy on write).
        #[arg(long)]
        private: bool,
        /// Threads touching disjoint parts of the range.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        threads: u64,
        /// Keep the mapping until interrupted, so another shell can inspect it.
        #[arg(long)]
        hold: bool,
        /// Draw the mapping (one cell per page) as pages are touched.
        #[arg(long)]
        map: bool,
    },
    /// The module's live frames: instance, page offset, PFN.
    Frames {
        #[arg(long)]
        instance: Option<u64>,
    },
    /// The module's counters and the fault-latency histogram.
    Stats,
    /// Cross-check every mapped page of the device against /proc/<pid>/pagemap.
    Verify {
        /// Process to check (default: every process that maps the device).
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Benchmark the fault paths (device, anonymous memory, memset floor).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    // Like any filter, end quietly when the reader goes away (`pfdemo frames | head`) instead
    // of panicking on the broken pipe.
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    // The benchmark loads the module itself, with each mode's parameters.
    if !matches!(cli.command, Command::Bench(_)) {
        if let Err(e) = sys::check_environment(true) {
            eprintln!("pfdemo: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Tour { pages, check, json } => tour(pages as usize, check, json),
        Command::Touch {
            pages,
            stride,
            write: _,
            read,
            private,
            threads,
            hold,
            map,
        } => touch(
            pages,
            stride as usize,
            !read,
            private,
            threads as usize,
            hold,
            map,
        ),
        Command::Frames { instance } => frames(instance),
        Command::Stats => stats(),
        Command::Verify { pid } => verify(pid),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pfdemo: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T = ()> = Result<T, String>;

fn io<T>(what: &str, r: std::io::Result<T>) -> Res<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// One cell per page: `.` absent, `#` present, `*` just faulted in.
fn picture(pm: &mut Pagemap, map: &Mapping, just: Option<usize>) -> Res<String> {
    let mut s = String::from("[");
    for i in 0..map.pages() {
        let present = io("pagemap", pm.entry(map.addr(i)))?.present;
        s.push(match (present, Some(i) == just) {
            (true, true) => '*',
            (true, false) => '#',
            (false, _) => '.',
        });
    }
    s.push(']');
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// tour

/// One step of the tour with the evidence that was checked for it.
#[derive(Serialize)]
struct Step {
    side: &'static str,
    step: u32,
    title: &'static str,
    evidence: String,
    ok: bool,
}

struct Tour {
    steps: Vec<Step>,
    json: bool,
}

impl Tour {
    fn step(
        &mut self,
        side: &'static str,
        step: u32,
        title: &'static str,
        ok: bool,
        evidence: String,
    ) {
        if !self.json {
            println!(
                "  {step}. {title}\n       {evidence}{}",
                if ok { "" } else { "   <-- MISMATCH" }
            );
        }
        self.steps.push(Step {
            side,
            step,
            title,
            evidence,
            ok,
        });
    }

    /// Step 4, on either side: pagemap, read right before the store, had no entry for the page.
    fn no_entry_before(&mut self, side: &'static str, entry: &PagemapEntry) {
        self.step(
            side,
            4,
            "the page table has no entry for it",
            !entry.present,
            format!(
                "pagemap right before the store: {}",
                if entry.present {
                    "present"
                } else {
                    "not present"
                }
            ),
        );
    }

    fn say(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }
}

/// A sample of the minor-fault counter taken right before an access and one right after it,
/// with nothing in between that could fault (no allocation, buffers already written).
fn minflt_around(sampler: &StatSampler, access: impl FnOnce()) -> Res<(u64, u64)> {
    let (mut b0, mut b1) = ([0u8; 1024], [0u8; 1024]);
    let n0 = io("stat", sampler.sample(&mut b0))?;
    access();
    let n1 = io("stat", sampler.sample(&mut b1))?;
    let (before, _) = io("stat", StatSampler::faults(&b0[..n0]))?;
    let (after, _) = io("stat", StatSampler::faults(&b1[..n1]))?;
    Ok((before, after))
}

fn delta_of(after: &Stats, before: &Stats, name: &str) -> Res<i64> {
    after.change(before, name).map_err(|e| e.to_string())
}

fn pfn_text(pfn: Option<u64>) -> String {
    pfn.map_or("?".into(), |p| format!("{p:#x}"))
}

fn tour(pages: usize, check: bool, json: bool) -> Res {
    let mut t = Tour {
        steps: Vec::new(),
        json,
    };
    let mut pm = io("open pagemap", Pagemap::open())?;
    let sampler = io("open /proc/self/stat", StatSampler::open())?;
    let dev = io("open device", Device::open())?;
    let instance = io("fdinfo", dev.fdinfo())?.instance;
    let settings = io("stats", sys::read_stats())?;
    // One fault maps `prefault` pages: touch every prefault-th page, so every touch is a first
    // touch. With huge frames, the first touch of a 2 MiB frame allocates all its 512 pages.
    let k = settings.get("prefault").max(1) as usize;
    let unit = if settings.get("huge") == 1 { 512 } else { 1 };
    let mine = |rows: Vec<FrameRow>, pgoff: usize| {
        rows.into_iter()
            .find(|r| r.instance == instance && r.pgoff == pgoff as u64)
    };

    t.say("The device: our Rust fault handler does the work.\n");
    let before = io("stats", sys::read_stats())?;
    let map = io("mmap", dev.map(pages * k, 0, true))?;
    let absent = (0..map.pages()).all(|i| pm.entry(map.addr(i)).is_ok_and(|e| !e.present));
    let after = io("stats", sys::read_stats())?;
    let allocated = delta_of(&after, &before, "frames_allocated")?;
    let rows = io("frames", sys::read_frames())?
        .iter()
        .filter(|r| r.instance == instance)
        .count();
    t.step(
        "device",
        1,
        "mmap returns a virtual address; nothing is behind it yet",
        absent && allocated == 0 && rows == 0,
        format!(
            "va {:#x}, {} pages; pagemap: not present; frames allocated: {allocated}, frames rows of instance {instance}: {rows}; map {}",
            map.addr(0),
            map.pages(),
            picture(&mut pm, &map, None)?
        ),
    );

    let (mut dev_minflt, mut dev_handled) = (0, 0);
    for n in 0..pages {
        let i = n * k;
        let va = map.addr(i);
        let value = 0x5eed_0000 + i as u64;
        let row_before = mine(io("frames", sys::read_frames())?, i);
        let s0 = io("stats", sys::read_stats())?;
        let entry0 = io("pagemap", pm.entry(va))?;
        let (minflt0, minflt1) = minflt_around(&sampler, || map.write(i, 0, value))?;
        let s1 = io("stats", sys::read_stats())?;
        let row = mine(io("frames", sys::read_frames())?, i);
        let entry = io("pagemap", pm.entry(va))?;
        let faults = delta_of(&s1, &s0, "faults")?;
        let write_faults = delta_of(&s1, &s0, "write_faults")?;
        let allocated = delta_of(&s1, &s0, "frames_allocated")?;
        // A frame is new when no earlier touch fell in it (2 MiB frames hold several touches);
        // a new one comes with the prefault's frames after it, up to the end of the mapping.
        let new_frame = (0..n).all(|m| m * k / unit != i / unit);
        let want_allocated = if new_frame {
            unit.max(k.min(map.pages() - i)) as i64
        } else {
            0
        };
        dev_minflt += minflt1 - minflt0;
        dev_handled += faults;
        t.say(&format!(
            "\n  touching page {i} (va {va:#x}): *va = {value:#x}"
        ));
        // Before the store the page has no frame, unless an earlier touch allocated the
        // 2 MiB frame it lies in (then it has one, but this process has not mapped it yet:
        // step 4 checks pagemap).
        t.step(
            "device",
            2,
            "the program writes to the address",
            row_before.is_none() == new_frame,
            if new_frame {
                format!(
                    "store to {va:#x}; before it, frames had no row for instance {instance} pgoff {i}"
                )
            } else {
                format!(
                    "store to {va:#x}; its 2 MiB frame was allocated by an earlier touch, so frames had a row for pgoff {i} already"
                )
            },
        );
        t.step(
            "device",
            3,
            "the MMU tries to translate the address",
            write_faults == 1 && delta_of(&s1, &s0, "read_faults")? == 0,
            format!(
                "page {i} of the range, page offset {i} in the file; the failed translation reached the module as a write fault (write_faults +{write_faults})"
            ),
        );
        t.no_entry_before("device", &entry0);
        t.step(
            "device",
            5,
            "the CPU raises a page fault",
            minflt1 - minflt0 == 1,
            format!("this process's minor faults, right around the store: {minflt0} -> {minflt1}"),
        );
        t.step(
            "device",
            6,
            "the kernel calls our handler (vm_operations.fault)",
            faults == 1,
            format!("module faults counter +{faults}"),
        );
        let rest_zero = (8..page_size()).step_by(8).all(|o| map.read(i, o) == 0);
        t.step(
            "device",
            7,
            "the handler allocates a zeroed frame and fills the page-table entry",
            allocated == want_allocated && row.is_some() && rest_zero,
            match row {
                Some(r) => format!(
                    "frames allocated +{allocated}: instance {instance} pgoff {i} -> pfn {:#x}; the rest of the page reads zero: {rest_zero}",
                    r.pfn
                ),
                None => format!("frames allocated +{allocated}, but no frames row for pgoff {i}"),
            },
        );
        let readback = map.read(i, 0);
        t.step(
            "device",
            8,
            "the store runs again and succeeds",
            entry.present && row.is_some_and(|r| Some(r.pfn) == entry.pfn) && readback == value,
            format!(
                "pagemap: {}, pfn {} (frames says {}); reads back {readback:#x}; map {}",
                if entry.present {
                    "present"
                } else {
                    "not present"
                },
                pfn_text(entry.pfn),
                pfn_text(row.map(|r| r.pfn)),
                picture(&mut pm, &map, Some(i))?
            ),
        );
    }

    t.say("\nThe same walk on anonymous memory (what malloc gets): the kernel's own handler.\n");
    let anon = io(
        "mmap anonymous",
        Mapping::new(
            None,
            pages,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        ),
    )?;
    // One 4 KiB page per fault, as on the device (no transparent huge pages).
    let _ = anon.madvise(libc::MADV_NOHUGEPAGE);
    let absent = (0..pages).all(|i| pm.entry(anon.addr(i)).is_ok_and(|e| !e.present));
    t.step(
        "anon",
        1,
        "mmap(MAP_ANONYMOUS), as malloc does for large blocks",
        absent,
        format!(
            "va {:#x}; pagemap: not present; map {}",
            anon.addr(0),
            picture(&mut pm, &anon, None)?
        ),
    );
    let (mut anon_minflt, mut anon_handled) = (0, 0);
    for i in 0..pages {
        let value = 0xa0_0000 + i as u64;
        let s0 = io("stats", sys::read_stats())?;
        let entry0 = io("pagemap", pm.entry(anon.addr(i)))?;
        let (minflt0, minflt1) = minflt_around(&sampler, || anon.write(i, 0, value))?;
        let s1 = io("stats", sys::read_stats())?;
        let entry = io("pagemap", pm.entry(anon.addr(i)))?;
        let ours = delta_of(&s1, &s0, "faults")?;
        anon_minflt += minflt1 - minflt0;
        anon_handled += ours;
        t.say(&format!(
            "\n  touching page {i} (va {:#x}): *va = {value:#x}",
            anon.addr(i)
        ));
        t.no_entry_before("anon", &entry0);
        t.step(
            "anon",
            5,
            "the CPU faults; the kernel's anonymous-memory handler runs",
            minflt1 - minflt0 == 1 && ours == 0,
            format!("minor faults {minflt0} -> {minflt1}; our module's counter +{ours}"),
        );
        t.step(
            "anon",
            8,
            "a fresh frame is mapped and the store succeeds",
            entry.present && entry.pfn.is_some() && anon.read(i, 0) == value,
            format!(
                "pagemap: present, pfn {}; map {}",
                pfn_text(entry.pfn),
                picture(&mut pm, &anon, Some(i))?
            ),
        );
    }

    let verified = verify_pid(
        std::process::id(),
        &FrameIndex::new(&io("frames", sys::read_frames())?),
    )?;
    t.step(
        "both",
        9,
        "every device page agrees with pagemap",
        verified.mismatches == 0 && verified.checked >= pages,
        format!(
            "{} pages checked, {} mismatches",
            verified.checked, verified.mismatches
        ),
    );
    let pages_i = pages as i64;
    let pages_u = pages as u64;
    t.step(
        "both",
        10,
        "both sides: one fault per first touch; only the device's went to our handler",
        dev_minflt == pages_u && dev_handled == pages_i && anon_minflt == pages_u && anon_handled == 0,
        format!(
            "device: {dev_minflt} minor faults, {dev_handled} handled by rust_pagefault_demo; anonymous memory: {anon_minflt} minor faults, {anon_handled} by our module"
        ),
    );
    t.say(&format!("\nIn both cases: a virtual address first, a fault on the first touch, a frame from the\n\
        handler, a page-table entry, and the instruction resumes. Device: {dev_handled} faults handled by\n\
        rust_pagefault_demo; anonymous memory: {anon_minflt} faults handled by the kernel's do_anonymous_page."));

    let failed: Vec<_> = t.steps.iter().filter(|s| !s.ok).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&t.steps).map_err(|e| e.to_string())?
        );
    }
    if check {
        if !failed.is_empty() {
            return Err(format!(
                "tour: {} of {} checks failed (first: {} step {}: {})",
                failed.len(),
                t.steps.len(),
                failed[0].side,
                failed[0].step,
                failed[0].evidence
            ));
        }
        if !json {
            println!("tour: all {} checks passed", t.steps.len());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// touch

fn touch(
    pages: usize,
    stride: usize,
    write: bool,
    private: bool,
    threads: usize,
    hold: bool,
    show_map: bool,
) -> Res {
    let dev = io("open device", Device::open())?;
    let instance = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, !private))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let targets: Vec<usize> = (0..pages).step_by(stride).collect();
    let before = io("stats", sys::read_stats())?;
    let mut per_page = HashMap::new();
    if threads == 1 {
        for &i in &targets {
            let s0 = io("stats", sys::read_stats())?;
            if write {
                map.write(i, 0, i as u64 + 1)
            } else {
                let _ = map.read(i, 0);
            }
            let s1 = io("stats", sys::read_stats())?;
            per_page.insert(i, s1.delta(&s0, "faults"));
            if show_map {
                println!("{} touched page {i}", picture(&mut pm, &map, Some(i))?);
            }
        }
    } else {
        // The module's counters are global, so they cannot say which thread's touch faulted:
        // each thread asks pagemap whether its page was present right before touching it.
        let chunks: Vec<Vec<usize>> = targets
            .chunks(targets.len().div_ceil(threads).max(1))
            .map(|c| c.to_vec())
            .collect();
        let results: Vec<std::io::Result<Vec<(usize, i64)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let map = &map;
                    s.spawn(move || {
                        let mut pm = Pagemap::open()?;
                        let mut faulted = Vec::with_capacity(chunk.len());
                        for &i in chunk {
                            let was_present = pm.entry(map.addr(i))?.present;
                            if write {
                                map.write(i, 0, i as u64 + 1)
                            } else {
                                let _ = map.read(i, 0);
                            }
                            faulted.push((i, if was_present { 0 } else { 1 }));
                        }
                        Ok(faulted)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")))
                })
                .collect()
        });
        for r in results {
            per_page.extend(io("pagemap", r)?);
        }
        if show_map {
            println!("{}", picture(&mut pm, &map, None)?);
        }
    }
    let after = io("stats", sys::read_stats())?;
    let frames: HashMap<u64, u64> = io("frames", sys::read_frames())?
        .into_iter()
        .filter(|r| r.instance == instance)
        .map(|r| (r.pgoff, r.pfn))
        .collect();
    println!(
        "instance {instance}, {} mapping, {} {} page(s), {threads} thread(s)",
        if private { "MAP_PRIVATE" } else { "MAP_SHARED" },
        if write { "wrote" } else { "read" },
        targets.len()
    );
    println!(
        "{:>6} {:>18} {:>6} {:>12} {:>12} {:>6}",
        "page", "va", "pgoff", "pagemap pfn", "frames pfn", "faults"
    );
    for &i in &targets {
        let e = io("pagemap", pm.entry(map.addr(i)))?;
        let show = |p: Option<u64>| p.map(|p| format!("{p:#x}")).unwrap_or("-".into());
        println!(
            "{:>6} {:>#18x} {:>6} {:>12} {:>12} {:>6}",
            i,
            map.addr(i),
            i,
            show(e.pfn),
            show(frames.get(&(i as u64)).copied()),
            per_page
                .get(&i)
                .map(|d| format!("+{d}"))
                .unwrap_or("".into())
        );
    }
    if threads > 1 {
        println!("(with threads, a page's faults column is 1 when pagemap showed it absent right before its touch)");
    }
    println!(
        "module: faults +{}, frames allocated +{}, frames live {}",
        after.delta(&before, "faults"),
        after.delta(&before, "frames_allocated"),
        after.get("frames_live")
    );
    if hold {
        println!(
            "holding the mapping: pid {}, va {:#x}; try 'pfdemo verify --pid {}'. Ctrl-C ends.",
            std::process::id(),
            map.addr(0),
            std::process::id()
        );
        loop {
            // SAFETY: pause only waits for a signal.
            unsafe { libc::pause() };
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// frames, stats, verify

fn frames(instance: Option<u64>) -> Res {
    let rows: Vec<FrameRow> = io("frames", sys::read_frames())?
        .into_iter()
        .filter(|r| instance.is_none_or(|i| r.instance == i))
        .collect();
    println!(
        "{:>8} {:>8} {:>12} {:>16}",
        "instance", "pgoff", "pfn", "phys"
    );
    for r in &rows {
        println!(
            "{:>8} {:>8} {:>#12x} {:>#16x}",
            r.instance,
            r.pgoff,
            r.pfn,
            r.pfn * page_size() as u64
        );
    }
    println!("{} frame(s)", rows.len());
    Ok(())
}

fn stats() -> Res {
    let s: Stats = io("stats", sys::read_stats())?;
    for (name, value) in &s.0 {
        println!("{name:>18} {value}");
    }
    let hist = io("latency", sys::read_latency())?;
    let total: u64 = hist.iter().map(|(_, c)| c).sum();
    if total > 0 {
        println!("\nfault handler latency ({total} faults):");
        for (le, count) in hist {
            let bar = "#".repeat(((count * 40).div_ceil(total)) as usize);
            println!("  < {:>10} ns {:>8} {bar}", le, count);
        }
    }
    Ok(())
}

struct Verified {
    checked: usize,
    mismatches: usize,
}

/// Checks every present page of `pid`'s device mappings against `frames` (see
/// [`check_mapping`]): each page must be the frame `frames` lists for that page offset, of the
/// one instance the mapping belongs to. A page that is not in `frames` must be a copy made by a
/// MAP_PRIVATE write, which `/proc/kpageflags` shows as anonymous.
fn verify_pid(pid: u32, frames: &FrameIndex) -> Res<Verified> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = io("maps", std::fs::read_to_string(format!("/proc/{pid}/maps")))?;
    let mut pagemap = io(
        "pagemap",
        std::fs::File::open(format!("/proc/{pid}/pagemap")),
    )?;
    let mut kpageflags = io("kpageflags", std::fs::File::open("/proc/kpageflags"))?;
    let read_u64 = |f: &mut std::fs::File, index: u64| -> Res<u64> {
        let mut raw = [0u8; 8];
        io("seek", f.seek(SeekFrom::Start(index * 8)))?;
        io("read", f.read_exact(&mut raw))?;
        Ok(u64::from_le_bytes(raw))
    };
    let mut v = Verified {
        checked: 0,
        mismatches: 0,
    };
    let ps = page_size() as u64;
    for line in maps.lines().filter(|l| l.ends_with(sys::DEVICE)) {
        let (start, end, offset) =
            pfdemo::parse::parse_maps_range(line).map_err(|e| e.to_string())?;
        let mut present = Vec::new();
        for va in (start..end).step_by(ps as usize) {
            let e = pfdemo::parse::PagemapEntry::from_raw(read_u64(&mut pagemap, va / ps)?);
            if let Some(pfn) = e.pfn {
                present.push((offset / ps + (va - start) / ps, pfn));
            }
        }
        let c = check_mapping(frames, present, |pfn| {
            read_u64(&mut kpageflags, pfn).is_ok_and(|f| f & pfdemo::parse::KPF_ANON != 0)
        });
        for m in &c.mismatches {
            println!("pid {pid} mapping {start:#x}-{end:#x}: {m}");
        }
        v.checked += c.checked;
        v.mismatches += c.mismatches.len();
    }
    Ok(v)
}

fn verify(pid: Option<u32>) -> Res {
    let pids: Vec<u32> = match pid {
        Some(p) => vec![p],
        None => io("proc", std::fs::read_dir("/proc"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|p: &u32| {
                std::fs::read_to_string(format!("/proc/{p}/maps"))
                    .is_ok_and(|m| m.contains(sys::DEVICE))
            })
            .collect(),
    };
    let frames = FrameIndex::new(&io("frames", sys::read_frames())?);
    let (mut checked, mut bad) = (0, 0);
    for p in &pids {
        let v = verify_pid(*p, &frames)?;
        println!(
            "pid {p}: {} mapped device pages checked, {} mismatches",
            v.checked, v.mismatches
        );
        checked += v.checked;
        bad += v.mismatches;
    }
    if pids.is_empty() {
        println!("no process maps {}", sys::DEVICE);
    }
    if bad > 0 {
        return Err(format!("{bad} of {checked} pages disagree with pagemap"));
    }
    Ok(())
}
