//! `pfdemo tour`: the eight steps from malloc to a mapped frame, first on our device, then on
//! anonymous memory, each with the evidence checked for it, then the two closing checks.
//!
//! `tour/device.rs` and `tour/anon.rs` walk the two sides, `tour/record.rs` keeps the steps
//! and prints them (prose, or JSON with `--json`; `--check` gives the verdict).

mod anon;
mod device;
pub(crate) mod record;

use crate::verify::verify_pid;
use pfdemo::parse::{FrameIndex, Stats};
use pfdemo::sys::{self, Device, Mapping, Pagemap, StatSampler};
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
}

/// What a side's walk leaves for the closing steps: its mapping (and the device file), kept
/// until step 9 has checked them, and the faults its touches took.
struct Walked {
    _dev: Option<Device>,
    _map: Mapping,
    /// Minor faults this process took for the touches.
    minflt: u64,
    /// Of those, the calls of our handler.
    handled: i64,
}

/// A sample of the minor-fault counter taken right before an access and one right after it,
/// with nothing in between that could fault (no allocation, buffers already written).
pub(super) fn minflt_around(sampler: &StatSampler, access: impl FnOnce()) -> Res<(u64, u64)> {
    let (mut b0, mut b1) = ([0u8; 1024], [0u8; 1024]);
    let n0 = io("stat", sampler.sample(&mut b0))?;
    access();
    let n1 = io("stat", sampler.sample(&mut b1))?;
    let (before, _) = io("stat", StatSampler::faults(&b0[..n0]))?;
    let (after, _) = io("stat", StatSampler::faults(&b1[..n1]))?;
    Ok((before, after))
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
    let mut t = Tour::new(args.json);
    let mut pm = io("open pagemap", Pagemap::open())?;
    let sampler = io("open /proc/self/stat", StatSampler::open())?;
    let dev = device::walk(&mut t, &mut pm, &sampler, pages)?;
    let anon = anon::walk(&mut t, &mut pm, &sampler, pages)?;
    closing_steps(&mut t, pages, &dev, &anon)?;
    t.finish(args.check)
}

/// Steps 9 and 10, over both sides, and the tour's last words.
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
    t.say(&format!("\nIn both cases: a virtual address first, a fault on the first touch, a frame from the\n\
        handler, a page-table entry, and the instruction resumes. Device: {dev_handled} faults handled by\n\
        rust_pagefault_demo; anonymous memory: {anon_minflt} faults handled by the kernel's do_anonymous_page."));

    Ok(())
}
