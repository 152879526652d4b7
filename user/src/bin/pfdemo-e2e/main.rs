//! End-to-end tests of rust_pagefault_demo, run as root inside the VM with the module loaded.
//!
//! Each case checks one line of the device contract against the module's debugfs counters
//! and the kernel's own `/proc/self/pagemap`. Output is TAP-like (`ok N - name`), closed by a
//! `e2e: N passed, N failed` line; the exit status is non-zero on any failure (the library's
//! harness). Cases run one after another in this process, so the module's global counters
//! move only because of them.
//!
//! The cases are grouped by concern, one file a group, each listing its cases in `CASES`;
//! `expect.rs` holds what they share. The groups run in the order below: the traffic first,
//! then the files (whose histogram check needs faults counted since the load), and the
//! groups that reload the module last (`events`, `trace` and `watch`, whose last cases do,
//! `tools`, then `loading`, where all but one case reloads it). `RPD_PARAMS` gives every
//! load its parameters, `RPD_MODULE` the module file.

mod events;
mod expect;
mod files;
mod huge;
mod lifetime;
mod loading;
mod mapping;
mod memcg;
mod refusals;
mod sharing;
mod tools;
mod trace;
mod walk;
mod watch;

use expect::BAD_INPUTS;
use pfdemo::harness::{self, base_params, Case, Tap};
use pfdemo::sys::{self, page_size};
use std::sync::atomic::Ordering;

/// Every group, in the order they run.
const GROUPS: &[&[Case]] = &[
    mapping::CASES,
    lifetime::CASES,
    sharing::CASES,
    refusals::CASES,
    files::CASES,
    huge::CASES,
    memcg::CASES,
    walk::CASES,
    events::CASES,
    trace::CASES,
    watch::CASES,
    tools::CASES,
    loading::CASES,
];

fn main() {
    if let Err(e) = sys::check_environment(true) {
        eprintln!("pfdemo-e2e: {e}");
        std::process::exit(2);
    }
    assert_eq!(page_size(), 4096, "the tests assume 4 KiB pages");
    // RPD_E2E_ONLY=<text>: only the cases whose name contains it (for trying one group).
    let only = std::env::var("RPD_E2E_ONLY").unwrap_or_default();
    let cases: Vec<Case> = GROUPS
        .concat()
        .into_iter()
        .filter(|(name, _)| name.contains(&only))
        .collect();
    let mut tap = Tap::new("e2e");
    tap.plan(cases.len());
    println!("# module parameters: {:?}", base_params());
    tap.run(&cases);
    let params = base_params().join(",");
    harness::reliability(
        "e2e",
        &[
            (
                "params",
                &if params.is_empty() {
                    "default"
                } else {
                    &params
                },
            ),
            ("cases", &cases.len()),
            ("passed", &tap.passed()),
            ("failed", &tap.failed()),
            ("bad_inputs", &BAD_INPUTS.load(Ordering::Relaxed)),
        ],
    );
    tap.finish()
}
