//! `pfdemo tour`: the eight steps from malloc to a mapped frame, first on our device, then on
//! anonymous memory, each with the evidence checked for it, then the two closing checks.
//!
//! `tour/device.rs` and `tour/anon.rs` walk the two sides, `tour/record.rs` keeps the steps
//! and prints them (prose, or JSON with `--json`; `--check` gives the verdict).

mod anon;
mod device;
mod record;

use crate::verify::verify_pid;
use pfdemo::parse::{FrameIndex, Stats};
use pfdemo::sys::{self, Device, Mapping, Pagemap, StatSampler};
use pfdemo::{io, Res};
use record::Tour;

#[derive(clap::Args)]
pub struct Args {
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

/// The minor-fault counter right before and right after `access` (the library's
/// [`StatSampler::minflt_around`]).
pub(super) fn minflt_around(sampler: &StatSampler, access: impl FnOnce()) -> Res<(u64, u64)> {
    io("stat", sampler.minflt_around(access))
}

pub(super) fn delta_of(after: &Stats, before: &Stats, name: &str) -> Res<i64> {
    after.change(before, name).map_err(|e| e.to_string())
}

pub(super) fn pfn_text(pfn: Option<u64>) -> String {
    pfn.map_or("?".into(), |p| format!("{p:#x}"))
}

pub fn run(args: &Args) -> Res {
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
