// SPDX-License-Identifier: GPL-2.0

//! The raw side of the module, kept small and in one place: the memory-management hooks, and
//! debugfs files that pin the module while open.
//!
//! The kernel crate offers `VmaNew`/`VmaMixedMap` for setting up and filling a mapping, but no
//! abstraction for `vm_operations_struct`, the VMA's page offset, batched or PMD-level
//! insertion, a page's PFN, or an owned frame that can live in a table as a bare pointer. This
//! module provides exactly those, each behind a safe interface whose proof is written next to
//! its `unsafe` block. It is the only place in the module that uses `kernel::bindings`.
//!
//! - [`clock`]: the monotonic clock as a number, for the flight recorder.
//! - [`debugfs`]: debugfs files whose open file pins the module (the kernel crate's do not).
//! - [`fault`]: the `vm_operations_struct` and the fault entry points.
//! - [`frame`]: owned, zeroed frames and borrowed views of them.
//! - [`insert`]: mapping pages, one at a time or in batches.
//! - [`mm`]: what the module reads of the mm: a VMA's page offset, the RAM size; and
//!   `cond_resched`.
//! - [`pgtable`]: the x86-64 page-table entry format, decoded.
//! - [`walk`]: the page-table walk of an address of the current process.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h).

use kernel::bindings;

mod clock;
pub(crate) mod debugfs;
mod fault;
mod frame;
mod insert;
mod mm;
mod pgtable;
mod walk;

pub(crate) use clock::now_ns;
pub(crate) use fault::{
    install,
    Fault,
    FaultHandler,
    FaultOutcome,
    Ops,
    PmdFault, //
    FAULT_FLAG_LETTERS,
};
pub(crate) use frame::{
    Frame,
    FrameRef,
    FrameSource, //
};
pub(crate) use insert::{
    insert_subpage,
    PageBatch, //
};
pub(crate) use mm::{
    cond_resched,
    pgoff,
    ram_pages, //
};
pub(crate) use pgtable::{
    Entry,
    PmdState, //
};
pub(crate) use walk::{
    five_level,
    may_see_pfns,
    user_end,
    walk_current,
    End,
    Level,
    Step,
    Walk, //
};

/// The order of a huge frame: one PMD, 2 MiB of 4 KiB pages.
pub(crate) const HUGE_ORDER: u32 = bindings::HPAGE_PMD_ORDER;
/// The largest order the page allocator tries hard for, and the OOM killer acts for.
pub(crate) const COSTLY_ORDER: u32 = bindings::PAGE_ALLOC_COSTLY_ORDER;
/// The page index within a huge frame.
pub(crate) const HUGE_MASK: usize = (1 << HUGE_ORDER) - 1;
