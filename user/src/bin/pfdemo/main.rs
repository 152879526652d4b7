//! pfdemo: the user-side tour of malloc, page tables and page faults, and the tools to look
//! at what rust_pagefault_demo did.
//!
//! This file is the command line and its dispatch; each subcommand lives in a file of its
//! own with its options (`tour`, with its chapters in `chapters`, `touch`, `frames`, `stats`,
//! `verify`, `walk`, `trace`, `watch`, `bench`), and
//! `picture.rs` draws a mapping for the tour and `touch`. Exit status: 0, 1 when a command
//! fails (a line on stderr says why), 2 when the environment lacks the module, root or
//! debugfs (one line, with the fix).

use clap::{Parser, Subcommand};
use pfdemo::sys;
use std::process::ExitCode;

mod bench;
mod chapters;
mod frames;
mod picture;
mod stats;
mod touch;
mod tour;
mod trace;
mod verify;
mod walk;
mod watch;

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
    Tour(tour::Args),
    /// Map the device and touch pages; print VA, pgoff, PFN and fault counts per page.
    Touch(touch::Args),
    /// The module's live frames: instance, page offset, PFN.
    Frames(frames::Args),
    /// The module's counters and the fault-latency histogram.
    Stats,
    /// Cross-check every mapped page of the device against /proc/<pid>/pagemap.
    Verify(verify::Args),
    /// The MMU's view: walk the page tables of an address, level by level.
    Walk(walk::Args),
    /// Each fault of a run: the CPU's error code, the allocator's frame and our handler's
    /// record, joined (tracefs and the module's flight recorder).
    Trace(trace::Args),
    /// Benchmark the fault paths (device, anonymous memory, memset floor).
    Bench(Box<bench::Args>),
    /// A live view: the page map filling in, the latest faults, counters, latency.
    Watch(watch::Args),
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
        Command::Tour(args) => tour::run(&args),
        Command::Touch(args) => touch::run(&args),
        Command::Frames(args) => frames::run(&args),
        Command::Stats => stats::run(),
        Command::Verify(args) => verify::run(&args),
        Command::Bench(args) => bench::run(*args),
        Command::Walk(args) => walk::run(&args),
        Command::Trace(args) => trace::run(&args),
        Command::Watch(args) => watch::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pfdemo: {e}");
            ExitCode::FAILURE
        }
    }
}
