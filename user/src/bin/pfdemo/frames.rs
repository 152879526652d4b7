//! `pfdemo frames`: the module's live frames, from debugfs, one row a page, with the
//! physical address as the module prints it.

use pfdemo::parse::FrameRow;
use pfdemo::sys;
use pfdemo::{io, Res};

#[derive(clap::Args)]
pub struct Args {
    /// Only this instance's frames.
    #[arg(long)]
    pub instance: Option<u64>,
}

pub fn run(args: &Args) -> Res {
    let instance = args.instance;
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
            r.instance, r.pgoff, r.pfn, r.phys
        );
    }
    println!("{} frame(s)", rows.len());
    Ok(())
}
