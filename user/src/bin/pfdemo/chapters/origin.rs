//! Chapter `origin`: where a frame comes from. Its zone and node (the PFN ranges of
//! `/proc/zoneinfo`), its order (0, or 9 with `huge=1`, `/proc/buddyinfo` beside it), its page
//! flags next to an anonymous frame's, and the charge to the toucher's memory cgroup.

use super::{pfn_at, Book};
use crate::tour::pfn_text;
use pfdemo::harness::Memcg;
use pfdemo::parse::{self, kpageflag_names, KPF_ANON, KPF_LRU, KPF_SWAPBACKED};
use pfdemo::sys::{self, page_size, Device, Mapping, Pagemap};
use pfdemo::{io, Res};
use std::fs;

const SIDE: &str = "origin";
/// Device pages touched for the memory cgroup's charge.
const CHARGE_PAGES: usize = 64;

fn zones() -> Res<Vec<parse::Zone>> {
    parse::parse_zoneinfo(&io("zoneinfo", fs::read_to_string("/proc/zoneinfo"))?)
        .map_err(|e| e.to_string())
}

fn buddy(zone: &parse::Zone) -> Res<Option<parse::BuddyRow>> {
    let rows = parse::parse_buddyinfo(&io("buddyinfo", fs::read_to_string("/proc/buddyinfo"))?)
        .map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .find(|r| r.node == zone.node && r.zone == zone.name))
}

pub fn run(b: &mut Book) -> Res {
    let mut pm = io("open pagemap", Pagemap::open())?;
    let zones = zones()?;
    let settings = io("stats", sys::read_stats())?;
    let huge = settings.get("huge") == 1;

    let dev = io("open device", Device::open())?;
    let instance = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap device", dev.map(1, 0, true))?;
    // The buddy allocator's free lists of every zone, right before the fault.
    let buddy_before: Vec<_> = zones.iter().map(buddy).collect::<Res<_>>()?;
    let s0 = io("stats", sys::read_stats())?;
    map.write(0, 0, 0x0519);
    let s1 = io("stats", sys::read_stats())?;
    let buddy_after: Vec<_> = zones.iter().map(buddy).collect::<Res<_>>()?;
    let rows: Vec<_> = io("frames", sys::read_frames())?
        .into_iter()
        .filter(|r| r.instance == instance)
        .collect();
    let pfn = rows.iter().find(|r| r.pgoff == 0).map(|r| r.pfn);
    let mapped = pfn_at(&mut pm, map.addr(0))?;
    let holders: Vec<_> = zones
        .iter()
        .enumerate()
        .filter(|(_, z)| pfn.is_some_and(|p| z.contains(p)))
        .collect();
    let zone = holders.first().map(|(i, z)| (*i, (*z).clone()));
    b.step(
        SIDE,
        1,
        "the frame lies in one zone of one node (the PFN ranges of /proc/zoneinfo)",
        holders.len() == 1 && pfn.is_some() && mapped == pfn,
        format!(
            "our frame: pfn {} (pagemap {}); {}; zones: {}",
            pfn_text(pfn),
            pfn_text(mapped),
            zone.as_ref().map_or("in no zone".into(), |(_, z)| format!(
                "node {}, zone {}",
                z.node, z.name
            )),
            zones
                .iter()
                .map(|z| format!(
                    "{} {:#x}..{:#x}",
                    z.name,
                    z.start_pfn,
                    z.start_pfn + z.spanned
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );

    let allocated = s1.delta(&s0, "frames_allocated");
    let (order_ok, order_text) = if huge {
        // A 2 MiB frame: 512 pages, consecutive PFNs, the first aligned to 512.
        let base = pfn.unwrap_or(1);
        let run = (0..512u64).all(|i| rows.iter().any(|r| r.pgoff == i && r.pfn == base + i));
        (
            allocated == 512 && base % 512 == 0 && run,
            format!("order 9: frames allocated +{allocated}; pgoff 0..511 -> pfn {base:#x}..{:#x}, consecutive, aligned to 512: {}", base + 512, base % 512 == 0 && run),
        )
    } else {
        (
            allocated == 1,
            format!("order 0: frames allocated +{allocated}, one 4 KiB page"),
        )
    };
    let free9 = zone.as_ref().and_then(|(i, _)| {
        Some((
            buddy_before[*i].as_ref()?.free_at_least(9),
            buddy_after[*i].as_ref()?.free_at_least(9),
        ))
    });
    let (buddy_ok, buddy_text) = match free9 {
        Some((before, after)) if huge => (
            after <= before,
            format!(
                "; /proc/buddyinfo, free memory in blocks of order >= 9 (2 MiB units): {before} -> {after}{}",
                if after < before {
                    ": the buddy allocator gave one out (and a batch for the per-CPU list)"
                } else {
                    ": unchanged, the block came from the per-CPU free list"
                }
            ),
        ),
        Some((before, after)) => (true, format!("; free order >= 9 memory (2 MiB units): {before} -> {after}")),
        None => (false, "; no buddyinfo row for the zone".into()),
    };
    b.step(
        SIDE,
        2,
        "its order: 0, or 9 with huge=1",
        order_ok && buddy_ok,
        format!("{order_text}{buddy_text}"),
    );

    // An anonymous frame to compare with: touch enough pages that the per-CPU batch of new
    // folios reaches the LRU lists (it holds up to 31).
    let anon = io("mmap anonymous", Mapping::anonymous_4k(64))?;
    for i in 0..anon.pages() {
        anon.write(i, 0, 1);
    }
    let anon_pfn = pfn_at(&mut pm, anon.addr(0))?;
    let ours = io("kpageflags", sys::kpageflags(pfn.unwrap_or(0)))?;
    let theirs = io("kpageflags", sys::kpageflags(anon_pfn.unwrap_or(0)))?;
    let set = KPF_LRU | KPF_ANON | KPF_SWAPBACKED;
    b.step(
        SIDE,
        3,
        "its page flags: none of LRU, ANON, SWAPBACKED (reclaim never sees it), unlike an anonymous frame",
        pfn.is_some() && anon_pfn.is_some() && ours & set == 0 && theirs & set == set,
        format!(
            "kpageflags of our frame {}: {:?} ({ours:#x}); of an anonymous frame {}: {:?} ({theirs:#x})",
            pfn_text(pfn),
            kpageflag_names(ours),
            pfn_text(anon_pfn),
            kpageflag_names(theirs)
        ),
    );
    drop(anon);

    // A memory cgroup of the chapter's own (the harness's): what it is charged is ours alone.
    let cg = Memcg::create("pfdemo-origin")?;
    cg.join()?;
    let current = || -> Res<u64> {
        let text = io("memory.current", cg.read("memory.current"))?;
        text.trim()
            .parse()
            .map_err(|_| format!("memory.current: {text:?}"))
    };
    let dev2 = io("open device", Device::open())?;
    let map2 = io("mmap device", dev2.map(CHARGE_PAGES, 0, true))?;
    let m0 = current()?;
    let s0 = io("stats", sys::read_stats())?;
    for i in 0..CHARGE_PAGES {
        map2.write(i, 0, 1);
    }
    let s1 = io("stats", sys::read_stats())?;
    let m1 = current()?;
    drop(map2);
    drop(dev2);
    let m2 = current()?;
    let bytes = s1.delta(&s0, "frames_allocated").max(0) as u64 * page_size() as u64;
    let charged = m1.saturating_sub(m0);
    let released = m1.saturating_sub(m2);
    // Beside the frames: page tables and the module's index, a few pages at most.
    let slack = 256 << 10;
    b.step(
        SIDE,
        4,
        "the frames are charged to the toucher's memory cgroup, and uncharged when freed",
        bytes > 0 && charged >= bytes && charged <= bytes + slack && released >= bytes,
        format!(
            "{}/memory.current: {m0} -> {m1} (+{} KiB) for {} KiB of frames allocated ({CHARGE_PAGES} pages touched); after close: {m2} (-{} KiB)",
            cg.path(),
            charged >> 10,
            bytes >> 10,
            released >> 10
        ),
    );
    cg.leave_and_remove();
    Ok(())
}
