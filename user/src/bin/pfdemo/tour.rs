//! `pfdemo tour`: the eight steps from malloc to a mapped frame, first on our device, then on
//! anonymous memory, each with the evidence checked for it, then the closing checks: pagemap
//! agrees, one fault per first touch, and each process has page tables of its own.
//!
//! `tour/device.rs` and `tour/anon.rs` walk the two sides, `tour/mmu.rs` shows the page-table
//! walk around each store, `tour/record.rs` keeps the steps and prints them (prose, or JSON
//! with `--json`; `--check` gives the verdict).

mod anon;
mod device;
mod mmu;
pub(crate) mod record;

use crate::verify::verify_pid;
use pfdemo::harness::in_child;
use pfdemo::parse::{FrameIndex, Stats};
use pfdemo::sys::{self, Device, Mapping, Pagemap, StatSampler};
use pfdemo::walk::{walk, Walk, WalkReply};
use pfdemo::{io, Res};
use record::Tour;

#[derive(clap::Args)]
pub struct Args {
    /// A chapter past the eight steps, or `all` of them (without one: the eight steps).
    #[arg(value_enum)]
    pub chapter: Option<crate::chapters::Chapter>,
    /// Pages to touch on each side (device and anonymous memory).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub pages: u64,
    /// Assert every step's evidence and exit non-zero on any mismatch.
    #[arg(long)]
    pub check: bool,
    /// Print the steps as JSON instead of prose.
    #[arg(long)]
    pub json: bool,
    /// Also write the steps as JSON to this file (the prose still goes to stdout).
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<String>,
}

/// What a side's walk leaves for the closing steps: its mapping and the device file (the
/// device's, or on the anonymous side one opened for its walk ioctl), kept until the closing
/// steps have checked them, and the faults its touches took.
struct Walked {
    dev: Device,
    map: Mapping,
    /// Minor faults this process took for the touches.
    minflt: u64,
    /// Of those, the calls of our handler.
    handled: i64,
}

/// The minor-fault counter right before and right after `access` (the library's
/// [`StatSampler::minflt_around`], as a [`Res`]).
pub(crate) fn minflt_around(sampler: &StatSampler, access: impl FnOnce()) -> Res<(u64, u64)> {
    io("stat", sampler.minflt_around(access))
}

pub(super) fn delta_of(after: &Stats, before: &Stats, name: &str) -> Res<i64> {
    after.change(before, name).map_err(|e| e.to_string())
}

pub(super) fn pfn_text(pfn: Option<u64>) -> String {
    pfn.map_or("?".into(), |p| format!("{p:#x}"))
}

pub fn run(args: &Args) -> Res {
    if let Some(chapter) = args.chapter {
        return crate::chapters::run(chapter, args.check, args.json);
    }
    let pages = args.pages as usize;
    let mut t = Tour::new(args.json, args.json_out.clone());
    let mut pm = io("open pagemap", Pagemap::open())?;
    let samplers = mmu::Samplers::open()?;
    let dev = device::walk(&mut t, &mut pm, &samplers, pages)?;
    let anon = anon::walk(&mut t, &mut pm, &samplers, pages)?;
    closing_steps(&mut t, pages, &dev, &anon)?;
    own_page_tables(&mut t, &mut pm, &dev)?;
    t.say(&format!("\nIn both cases: a virtual address first, a fault on the first touch, a frame from the\n\
        handler, a page-table entry, and the instruction resumes. Device: {} faults handled by\n\
        rust_pagefault_demo; anonymous memory: {} faults handled by the kernel's do_anonymous_page.", dev.handled, anon.minflt));
    t.finish(args.check)
}

/// Steps 9 and 10, over both sides.
fn closing_steps(t: &mut Tour, pages: usize, dev: &Walked, anon: &Walked) -> Res {
    let (dev_minflt, dev_handled) = (dev.minflt, dev.handled);
    let (anon_minflt, anon_handled) = (anon.minflt, anon.handled);
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
    Ok(())
}

/// Step 11: each process has its own page table. A forked child stores to the device page
/// the tour touched first (a shared mapping: the same frame) and walks it: every table it
/// reads is a page of its own, the frame is the parent's. A thread of the parent walks the
/// parent's very tables.
fn own_page_tables(t: &mut Tour, pm: &mut Pagemap, dev: &Walked) -> Res {
    let (fd, va) = (dev.dev.fd(), dev.map.addr(0));
    let parent = io("walk", walk(fd, va))?;
    // The child's walk comes back through a page shared with it.
    let shared = io(
        "mmap shared page",
        Mapping::new(
            None,
            1,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        ),
    )?;
    let reply = shared.as_ptr().cast::<WalkReply>();
    const CHILD_VALUE: u64 = 0xc41d;
    let status = in_child(|| {
        dev.map.write(0, 8, CHILD_VALUE);
        match walk(fd, va) {
            Ok(w) => {
                // SAFETY: `shared` is a page of our own, page-aligned (so aligned for a
                // `WalkReply`) and larger than one; the parent reads it only after this
                // child has ended.
                unsafe { reply.write_volatile(w.0) };
                0
            }
            Err(_) => 1,
        }
    })?;
    // SAFETY: as above: the child has ended; a `WalkReply` is plain integers, valid for any
    // bytes, and the page starts zeroed.
    let child = Walk(unsafe { reply.read_volatile() });
    let thread = std::thread::scope(|s| s.spawn(|| walk(fd, va)).join())
        .map_err(|_| "the walking thread panicked".to_string())?;
    let thread = io("walk from a thread", thread)?;
    let pagemap = io("pagemap", pm.entry(va))?.pfn;
    let tables = |w: &Walk| -> Vec<u64> { w.levels().iter().map(|l| l.table_pfn).collect() };
    let (pt, ct, tt) = (tables(&parent), tables(&child), tables(&thread));
    let own = status == Ok(0) && ct.len() == pt.len() && ct.iter().zip(&pt).all(|(c, p)| c != p);
    let same_frame = child.frame_pfn().is_some()
        && child.frame_pfn() == parent.frame_pfn()
        && parent.frame_pfn() == pagemap
        && dev.map.read(0, 8) == CHILD_VALUE;
    let hex = |v: &[u64]| -> String {
        v.iter()
            .map(|p| format!("{p:#x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    t.step(
        "both",
        11,
        "each process has its own page table; threads share their process's",
        own && same_frame && tt == pt && thread.frame_pfn() == parent.frame_pfn(),
        format!(
            "page 0 of the device: the parent reads tables {}; a forked child, after its store, tables {} (none shared), to the same frame {} (pagemap: {}; the parent reads the child's store: {:#x}); a thread of the parent: tables {}",
            hex(&pt),
            hex(&ct),
            pfn_text(child.frame_pfn()),
            pfn_text(pagemap),
            dev.map.read(0, 8),
            hex(&tt)
        ),
    );
    t.attach(&[("parent", parent), ("child", child), ("thread", thread)]);
    Ok(())
}
