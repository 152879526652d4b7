//! `pfdemo verify`: every mapped device page of a process against the module's `frames`, by
//! way of `/proc/<pid>/pagemap` (and `/proc/kpageflags` for private copies). The tour's step
//! 9 uses the same check.

use pfdemo::parse::{check_mapping, FrameIndex};
use pfdemo::sys::{self, page_size};
use pfdemo::{io, Res};

#[derive(clap::Args)]
pub struct Args {
    /// Process to check (default: every process that maps the device).
    #[arg(long)]
    pub pid: Option<u32>,
}

pub struct Verified {
    pub checked: usize,
    pub mismatches: usize,
}

/// Checks every present page of `pid`'s device mappings against `frames` (see
/// [`check_mapping`]): each page must be the frame `frames` lists for that page offset, of the
/// one instance the mapping belongs to. A page that is not in `frames` must be a copy made by a
/// MAP_PRIVATE write, which `/proc/kpageflags` shows as anonymous.
pub fn verify_pid(pid: u32, frames: &FrameIndex) -> Res<Verified> {
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

pub fn run(args: &Args) -> Res {
    let pid = args.pid;
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
