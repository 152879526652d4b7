//! `pfdemo touch`: map the device, touch pages (from one thread or several), and print per
//! page its VA, page offset, the PFN pagemap and `frames` show, and whether it faulted.

use crate::picture::picture;
use pfdemo::sys::{self, Device, Pagemap};
use pfdemo::{io, Res};
use std::collections::HashMap;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 16)]
    pub pages: usize,
    /// Touch every S-th page.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub stride: u64,
    #[command(flatten)]
    pub access: Access,
    /// Threads touching disjoint parts of the range.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
    /// Keep the mapping until interrupted, so another shell can inspect it.
    #[arg(long)]
    pub hold: bool,
    /// Draw the mapping (one cell per page) as pages are touched.
    #[arg(long)]
    pub map: bool,
}

/// How pages are touched: by a write or a read, through a shared or a private mapping
/// (`touch` and `trace`).
#[derive(clap::Args)]
pub struct Access {
    /// Write to each page (the default).
    #[arg(long, conflicts_with = "read")]
    pub write: bool,
    /// Read each page instead of writing it.
    #[arg(long)]
    pub read: bool,
    /// MAP_PRIVATE instead of MAP_SHARED (writes then copy on write).
    #[arg(long)]
    pub private: bool,
}

pub fn run(args: &Args) -> Res {
    let (pages, stride, threads) = (args.pages, args.stride as usize, args.threads as usize);
    let (write, private) = (!args.access.read, args.access.private);
    let (hold, show_map) = (args.hold, args.map);
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
