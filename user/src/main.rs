//! pfdemo: the user-side tour of malloc, page tables and page faults, and the tools to look
//! at what rust_pagefault_demo did.

use clap::{Parser, Subcommand};
use pfdemo::parse::{FrameRow, Stats};
use pfdemo::sys::{self, page_size, Device, Mapping, Pagemap};
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

    fn say(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }
}

fn tour(pages: usize, check: bool, json: bool) -> Res {
    let mut t = Tour {
        steps: Vec::new(),
        json,
    };
    let mut pm = io("open pagemap", Pagemap::open())?;
    let dev = io("open device", Device::open())?;
    let instance = io("fdinfo", dev.fdinfo())?.instance;

    t.say("The device: our Rust fault handler does the work.\n");
    let before = io("stats", sys::read_stats())?;
    let map = io("mmap", dev.map(pages, 0, true))?;
    let absent = (0..pages).all(|i| pm.entry(map.addr(i)).map(|e| !e.present).unwrap_or(false));
    let after = io("stats", sys::read_stats())?;
    let allocated = after.delta(&before, "frames_allocated");
    t.step(
        "device",
        1,
        "mmap returns a virtual address; nothing is behind it yet",
        absent && allocated == 0,
        format!(
            "va {:#x}, {pages} pages; pagemap: not present; frames allocated: {allocated}; map {}",
            map.addr(0),
            picture(&mut pm, &map, None)?
        ),
    );

    for i in 0..pages {
        let va = map.addr(i);
        let (minflt0, _) = io("stat", sys::self_faults())?;
        let s0 = io("stats", sys::read_stats())?;
        let value = 0x5eed_0000 + i as u64;
        t.say(&format!(
            "\n  touching page {i} (va {va:#x}): *va = {value:#x}"
        ));
        t.step(
            "device",
            2,
            "the program writes to the address",
            true,
            format!("store to {va:#x}"),
        );
        map.write(i, 0, value);
        let s1 = io("stats", sys::read_stats())?;
        let (minflt1, _) = io("stat", sys::self_faults())?;
        let faults = s1.delta(&s0, "faults");
        let allocated = s1.delta(&s0, "frames_allocated");
        let frames = io("frames", sys::read_frames())?;
        let row = frames
            .iter()
            .find(|r| r.instance == instance && r.pgoff == i as u64);
        let entry = io("pagemap", pm.entry(va))?;
        t.step(
            "device",
            3,
            "the MMU tries to translate the address",
            true,
            format!("page {} of the range, page offset {i} in the file", i),
        );
        t.step(
            "device",
            4,
            "the page table has no entry for it",
            true,
            "pagemap showed it not present before the store".into(),
        );
        t.step(
            "device",
            5,
            "the CPU raises a page fault",
            minflt1 > minflt0,
            format!("this process's minor faults: {minflt0} -> {minflt1}"),
        );
        t.step(
            "device",
            6,
            "the kernel calls our handler (vm_operations.fault)",
            faults == 1,
            format!("module faults counter +{faults}"),
        );
        t.step(
            "device",
            7,
            "the handler allocates a zeroed frame and fills the page-table entry",
            allocated == 1 && row.is_some(),
            match row {
                Some(r) => format!(
                    "frames +{allocated}: instance {instance} pgoff {i} -> pfn {:#x}",
                    r.pfn
                ),
                None => format!("frames +{allocated}, but no frames row for pgoff {i}"),
            },
        );
        let same = row.map(|r| Some(r.pfn) == entry.pfn).unwrap_or(false);
        let readback = map.read(i, 0);
        t.step(
            "device",
            8,
            "the store runs again and succeeds",
            same && readback == value,
            format!(
                "pagemap: present, pfn {} (frames says {}); reads back {readback:#x}; map {}",
                entry.pfn.map(|p| format!("{p:#x}")).unwrap_or("?".into()),
                row.map(|r| format!("{:#x}", r.pfn)).unwrap_or("?".into()),
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
    let _ = anon.madvise(libc::MADV_NOHUGEPAGE);
    let absent = (0..pages).all(|i| pm.entry(anon.addr(i)).map(|e| !e.present).unwrap_or(false));
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
    let mut anon_faults = 0;
    for i in 0..pages {
        let (minflt0, _) = io("stat", sys::self_faults())?;
        let s0 = io("stats", sys::read_stats())?;
        anon.write(i, 0, 0xa0_0000 + i as u64);
        let (minflt1, _) = io("stat", sys::self_faults())?;
        let s1 = io("stats", sys::read_stats())?;
        let entry = io("pagemap", pm.entry(anon.addr(i)))?;
        anon_faults += minflt1 - minflt0;
        t.step(
            "anon",
            5,
            "the CPU faults; the kernel's anonymous-memory handler runs",
            minflt1 > minflt0 && s1.delta(&s0, "faults") == 0,
            format!("minor faults {minflt0} -> {minflt1}; our module's counter did not move"),
        );
        t.step(
            "anon",
            8,
            "a fresh frame is mapped and the store succeeds",
            entry.present && entry.pfn.is_some() && anon.read(i, 0) == 0xa0_0000 + i as u64,
            format!(
                "pagemap: present, pfn {}; map {}",
                entry.pfn.map(|p| format!("{p:#x}")).unwrap_or("?".into()),
                picture(&mut pm, &anon, Some(i))?
            ),
        );
    }

    let verified = verify_pid(std::process::id())?;
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
    t.say(&format!("\nIn both cases: a virtual address first, a fault on the first touch, a frame from the\n\
        handler, a page-table entry, and the instruction resumes. Device: {pages} faults handled by\n\
        rust_pagefault_demo; anonymous memory: {anon_faults} faults handled by the kernel's do_anonymous_page."));

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
        let chunks: Vec<Vec<usize>> = targets
            .chunks(targets.len().div_ceil(threads).max(1))
            .map(|c| c.to_vec())
            .collect();
        std::thread::scope(|s| {
            for chunk in &chunks {
                let map = &map;
                s.spawn(move || {
                    for &i in chunk {
                        if write {
                            map.write(i, 0, i as u64 + 1)
                        } else {
                            let _ = map.read(i, 0);
                        }
                    }
                });
            }
        });
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

/// Checks every present page of `pid`'s device mappings: its pagemap PFN must be the frame
/// that `frames` lists at that page offset. A page that is not there must be a copy made by a
/// MAP_PRIVATE write, which `/proc/kpageflags` shows as anonymous; anything else is a mismatch.
fn verify_pid(pid: u32) -> Res<Verified> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = io("maps", std::fs::read_to_string(format!("/proc/{pid}/maps")))?;
    let by_pgoff: HashMap<u64, Vec<u64>> =
        io("frames", sys::read_frames())?
            .into_iter()
            .fold(HashMap::new(), |mut m, r| {
                m.entry(r.pgoff).or_default().push(r.pfn);
                m
            });
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
        for va in (start..end).step_by(ps as usize) {
            let e = pfdemo::parse::PagemapEntry::from_raw(read_u64(&mut pagemap, va / ps)?);
            let Some(pfn) = e.pfn else { continue };
            let pgoff = offset / ps + (va - start) / ps;
            if by_pgoff.get(&pgoff).is_some_and(|pfns| pfns.contains(&pfn)) {
                v.checked += 1;
            } else if read_u64(&mut kpageflags, pfn)? & pfdemo::parse::KPF_ANON == 0 {
                v.checked += 1;
                v.mismatches += 1;
                println!(
                    "pid {pid} va {va:#x} pgoff {pgoff}: pagemap pfn {pfn:#x} is not in frames"
                );
            }
        }
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
    let (mut checked, mut bad) = (0, 0);
    for p in &pids {
        let v = verify_pid(*p)?;
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
