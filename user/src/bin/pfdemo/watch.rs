//! `pfdemo watch`: a live view of demand paging. The page map of one process's device
//! mappings (`--pid`) or of one instance (`--instance`) filling in as pages are touched, the
//! latest faults from the module's flight recorder, the counters with their change per
//! second, and the handler's latency histogram, redrawn every `--interval` ms until `q`.
//!
//! `source.rs` reads what a frame shows, `view.rs` draws it (pure, tested with ratatui's
//! `TestBackend`), `term.rs` runs the terminal. `--once` prints one frame as plain text for
//! scripts; `--frames N` ends after N frames, for tests.

mod source;
mod term;
mod view;

use pfdemo::Res;
use source::{Paths, Source, Target};
use std::time::Duration;
use view::Glyphs;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "instance"])))]
pub struct Args {
    /// Watch this process's mappings of the device (its /proc/PID/maps and pagemap).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Watch this instance (an open file of the device): which pages have frames.
    #[arg(long)]
    pub instance: Option<u64>,
    /// Refresh every MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub interval: u64,
    /// ASCII characters only (the default when TERM is linux, vt100, vt220 or dumb, as on
    /// the VM's serial console).
    #[arg(long)]
    pub ascii: bool,
    /// Print one frame as plain text to stdout and exit, without a terminal: two samples an
    /// interval apart, so the rates and the faults are those of that interval.
    #[arg(long, conflicts_with = "frames")]
    pub once: bool,
    /// Draw N frames on the terminal, then exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,
}

/// The terminals whose fonts may lack line drawing and block characters.
const ASCII_TERMS: [&str; 4] = ["linux", "vt100", "vt220", "dumb"];

fn glyphs(ascii: bool) -> Glyphs {
    let term = std::env::var("TERM").unwrap_or_default();
    if ascii || ASCII_TERMS.contains(&term.as_str()) {
        Glyphs::ASCII
    } else {
        Glyphs::UNICODE
    }
}

pub fn run(args: &Args) -> Res {
    let target = match (args.pid, args.instance) {
        (Some(pid), _) => Target::Pid(pid),
        (_, Some(id)) => Target::Instance(id),
        (None, None) => return Err("give --pid PID or --instance ID".into()),
    };
    let interval = Duration::from_millis(args.interval);
    let mut source = Source::new(target, Paths::default(), args.interval)?;
    let glyphs = glyphs(args.ascii);
    if args.once {
        return once(&mut source, &glyphs, interval);
    }
    term::run(&mut source, &glyphs, interval, args.frames)
}

/// One frame as text: its width from COLUMNS (else 100), as tall as it needs.
fn once(source: &mut Source, glyphs: &Glyphs, interval: Duration) -> Res {
    source.sample()?;
    std::thread::sleep(interval);
    let snapshot = source.sample()?;
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w| *w >= 60)
        .unwrap_or(100);
    print!("{}", render_text(&snapshot, glyphs, width));
    Ok(())
}

/// `snapshot` drawn at `width` columns, as tall as it needs, as plain text.
fn render_text(snapshot: &view::Snapshot, glyphs: &Glyphs, width: u16) -> String {
    let (w, h) = view::full_size(snapshot, width);
    let area = ratatui::layout::Rect::new(0, 0, w, h);
    let mut buf = ratatui::buffer::Buffer::empty(area);
    view::render(area, &mut buf, snapshot, glyphs);
    view::text(&buf)
}

#[cfg(test)]
mod tests;
