//! Stress, fault injection and module lifecycle tests of rust_pagefault_demo (run as root in
//! the VM).
//!
//! `pfdemo-stress run`: `--procs` processes of `--threads` workers each do a seeded random
//! sequence of open / mmap (shared, private, at offsets) / touch / check / munmap / fork /
//! mremap attempts / madvise(MADV_DONTNEED) / close, while reader threads read the debugfs
//! files and fdinfo. Bounded by `--ops` per worker and `--seconds` in all; the same seed gives
//! each worker the same sequence of operations. Every worker keeps a model of what its
//! instances hold, and every read is checked against it: contents must never be lost (frames
//! survive munmap and MADV_DONTNEED while the file is open). At the end every counter must
//! balance. With `--inject`, the workers' kernel allocations fail at random (the debug
//! kernel's fail_page_alloc and failslab, limited to these tasks): operations may then fail
//! with clean errors, and nothing else may change.
//!
//! `pfdemo-stress mix`: 4 KiB and PMD faults mixed in the same 2 MiB ranges of a `huge`
//! instance while THP eligibility flips (`mix.rs`).
//!
//! `pfdemo-stress lifecycle`: `--cycles` insmod / traffic / rmmod cycles; slab and free
//! memory must not grow.
//!
//! Output: TAP-like `ok N - ...` lines, a `RPD-RELIABILITY` line with the figures, and
//! `stress: N passed, N failed` (the library's harness).
//!
//! Files: `worker.rs` (the workers and readers), `inject.rs` (fault injection), `run.rs`
//! (the run and its checks), `lifecycle.rs` (the cycles and their memory measures).

use clap::{Args, Parser, Subcommand};
use pfdemo::sys;

mod inject;
mod lifecycle;
mod mix;
mod run;
mod worker;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Random concurrent traffic, then check that everything balances.
    Run(RunArgs),
    /// 4 KiB and PMD faults in the same 2 MiB ranges while THP eligibility flips.
    Mix(MixArgs),
    /// insmod / traffic / rmmod cycles; slab and free memory must not grow.
    Lifecycle(LifecycleArgs),
}

#[derive(Args)]
pub struct MixArgs {
    /// Fault threads.
    #[arg(long, default_value_t = 3)]
    pub threads: usize,
    /// 2 MiB ranges of the mapping.
    #[arg(long, default_value_t = 4)]
    pub ranges: usize,
    /// Wall-clock length of the run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 4)]
    pub procs: usize,
    #[arg(long, default_value_t = 3)]
    pub threads: usize,
    /// Operations per worker at most.
    #[arg(long, default_value_t = 3000)]
    pub ops: u64,
    /// Wall-clock limit for the whole run.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Fail the workers' kernel allocations at random (percent; needs the debug kernel).
    #[arg(long)]
    pub inject: Option<u32>,
}

#[derive(Args)]
pub struct LifecycleArgs {
    #[arg(long, default_value_t = 200)]
    pub cycles: u32,
    #[arg(long, env = "RPD_MODULE", default_value = sys::MODULE_PATH)]
    pub module: String,
}

fn main() {
    match Cli::parse().command {
        Cmd::Run(args) => run::run(&args),
        Cmd::Mix(args) => mix::mix(&args),
        Cmd::Lifecycle(args) => lifecycle::lifecycle(&args),
    }
}
