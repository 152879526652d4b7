// SPDX-License-Identifier: GPL-2.0

//! The limits the module runs with: its parameters, checked once at load.
//!
//! Owns [`LIMITS`], set by the module's `init` before the device and the debugfs files that
//! read it exist, and never changed afterwards, so every reader sees the same value without a
//! lock.

use kernel::{
    prelude::*,
    sync::SetOnce, //
};

use crate::vm;

/// The fault path's design choices that can be switched, to measure what each one costs
/// (`pfdemo bench`'s ablation). Each defaults to what the module does without it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Switches {
    /// Offer a `map_pages` hook (`map_pages=1`), which tells the core that our `fault` needs
    /// no mmap lock; without it 7.3 retries every fault taken under the per-VMA lock under
    /// the mmap lock.
    pub(crate) map_pages: bool,
    /// Time every `latency`-th handler call of a CPU for the latency histogram (`latency=1`:
    /// every call; 0: none, and no clock is read).
    pub(crate) latency: u32,
    /// Map a single page with `vm_insert_pages` (a batch of one) instead of `vm_insert_page`
    /// (`insert_pages=0`).
    pub(crate) insert_pages: bool,
    /// Hand a 4 KiB instance's faulting page to the core in `vmf->page` (`return_page=1`),
    /// which maps it with the page table it walked to already (`finish_fault`), as it does a
    /// file's page-cache page, instead of mapping it here with `vm_insert_page`, which walks
    /// the page tables again from the top.
    pub(crate) return_page: bool,
    /// Allocate the new frames of a prefault batch in blocks of up to 8 pages, each split
    /// into single pages (`alloc_blocks=1`), instead of one allocation per frame.
    pub(crate) alloc_blocks: bool,
}

impl Switches {
    /// The module's own choices.
    pub(crate) const DEFAULT: Switches = Switches {
        map_pages: true,
        latency: 1,
        insert_pages: false,
        return_page: false,
        alloc_blocks: true,
    };
}

/// The limits the module runs with, validated from the module parameters at load time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limits {
    /// Pages per instance.
    pub(crate) max_pages: usize,
    /// Live frames of all instances together.
    pub(crate) max_total_pages: usize,
    /// Pages mapped per fault.
    pub(crate) prefault: usize,
    /// Whether frames are 2 MiB (`vm::HUGE_ORDER`) instead of 4 KiB.
    pub(crate) huge: bool,
    /// The fault path's switches (any value is valid).
    pub(crate) switches: Switches,
}

impl Limits {
    /// What the module runs with before its parameters are checked.
    pub(crate) const DEFAULT: Limits = Limits {
        max_pages: 0,
        max_total_pages: 0,
        prefault: 1,
        huge: false,
        switches: Switches::DEFAULT,
    };

    /// The largest instance: 64 GiB of 4 KiB pages keeps every page offset and byte length
    /// far from overflowing.
    const MAX_PAGES_LIMIT: u64 = 1 << 24;

    /// At most one page table's worth of pages per fault.
    const MAX_PREFAULT: u32 = 512;

    /// Validates the module parameters against the machine's RAM (in pages).
    ///
    /// `max_total_pages == 0` means a quarter of RAM. A cap larger than RAM is refused: it
    /// would never stop anything. A cap smaller than `max_pages` is allowed; then the cap, not
    /// the size, stops an instance's growth.
    ///
    /// With `huge`, a frame is 512 pages: the cap must hold at least one, and `prefault` (a
    /// 4 KiB notion) must stay 1. The switches start as [`Switches::DEFAULT`]; any value of
    /// theirs is valid.
    pub(crate) fn new(
        max_pages: u64,
        max_total_pages: u64,
        prefault: u32,
        huge: bool,
        ram_pages: usize,
    ) -> Result<Self, &'static str> {
        if max_pages == 0 || max_pages > Self::MAX_PAGES_LIMIT {
            return Err("max_pages must be between 1 and 16777216");
        }
        if prefault == 0 || prefault > Self::MAX_PREFAULT {
            return Err("prefault must be between 1 and 512");
        }
        let max_total_pages = match max_total_pages {
            0 => (ram_pages / 4).max(1),
            n if n > ram_pages as u64 => {
                return Err("max_total_pages must not exceed the machine's RAM in pages")
            }
            n => n as usize,
        };
        if huge && prefault != 1 {
            return Err("prefault and huge cannot be combined");
        }
        if huge && max_total_pages < 1 << vm::HUGE_ORDER {
            return Err("with huge, max_total_pages must hold one 2 MiB frame (512 pages)");
        }
        Ok(Self {
            max_pages: max_pages as usize,
            max_total_pages,
            prefault: prefault as usize,
            huge,
            switches: Switches::DEFAULT,
        })
    }
}

/// The limits the module was loaded with: set by the module's `init`, once the parameters are
/// checked, before the device and debugfs files that read them exist.
pub(crate) static LIMITS: SetOnce<Limits> = SetOnce::new();

/// The limits the module was loaded with.
pub(crate) fn limits() -> Limits {
    LIMITS.copy().unwrap_or(Limits::DEFAULT)
}

#[kunit_tests(rust_pagefault_demo_limits)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_cap_is_a_quarter_of_ram() {
        let limits = Limits::new(65536, 0, 1, false, 1_000_000);
        assert_eq!(
            limits,
            Ok(Limits {
                max_pages: 65536,
                max_total_pages: 250_000,
                prefault: 1,
                huge: false,
                switches: Switches::DEFAULT,
            })
        );
        // A tiny machine still gets a cap of at least one frame.
        assert_eq!(
            Limits::new(1, 0, 1, false, 3).map(|l| l.max_total_pages),
            Ok(1)
        );
    }

    #[test]
    fn limits_refuse_out_of_range_values() {
        assert!(Limits::new(0, 0, 1, false, 1000).is_err());
        assert!(Limits::new(Limits::MAX_PAGES_LIMIT + 1, 0, 1, false, 1000).is_err());
        assert!(Limits::new(16, 1001, 1, false, 1000).is_err());
        assert!(Limits::new(16, 0, 0, false, 1000).is_err());
        assert!(Limits::new(16, 0, 513, false, 1000).is_err());
        assert!(Limits::new(Limits::MAX_PAGES_LIMIT, 1000, 512, false, 1000).is_ok());
    }

    #[test]
    fn limits_allow_a_cap_below_the_size() {
        assert_eq!(
            Limits::new(64, 16, 16, false, 1000),
            Ok(Limits {
                max_pages: 64,
                max_total_pages: 16,
                prefault: 16,
                huge: false,
                switches: Switches::DEFAULT,
            })
        );
    }

    #[test]
    fn limits_for_huge_frames() {
        // The cap must hold one 2 MiB frame, and prefault is a 4 KiB notion.
        assert!(Limits::new(1024, 511, 1, true, 100_000).is_err());
        assert!(Limits::new(1024, 0, 2, true, 100_000).is_err());
        assert!(Limits::new(1024, 0, 1, true, 1000).is_err());
        assert_eq!(
            Limits::new(1024, 512, 1, true, 100_000).map(|l| l.huge),
            Ok(true)
        );
    }
}
