//! Shared code of `pfdemo` and the in-VM tests: parsers for what the module and the kernel
//! print (`parse`), thin wrappers around the system calls the tools make (`sys`), the module's
//! page-table walk and its decoding (`walk`), the flight recorder's records and a reader of
//! them (`events`), the kernel's trace events of a fault (`tracefs`) and their join with the
//! recorder's (`trace`), a page-fault handler in user space (`uffd`), the
//! one test harness of `pfdemo-e2e` and `pfdemo-stress` (`harness`), and a seeded generator for
//! the stress test and the benchmark's bootstrap (`rng`).

pub mod events;
pub mod harness;
pub mod parse;
pub mod rng;
pub mod sys;
pub mod trace;
pub mod tracefs;
pub mod uffd;
pub mod walk;

/// What the tools and tests return: a failure is one line saying what went wrong.
pub type Res<T = ()> = Result<T, String>;

/// An I/O result as a [`Res`], the error prefixed with `what` was being done.
pub fn io<T>(what: &str, r: std::io::Result<T>) -> Res<T> {
    r.map_err(|e| format!("{what}: {e}"))
}
