// SPDX-License-Identifier: GPL-2.0

//! The x86-64 page-table entry, as the MMU reads it: a 64-bit word of flag bits and the
//! physical frame number of the next table or of the mapped page.
//!
//! Only decoding lives here, pure arithmetic on a value already read; reading an entry out of
//! a live table is the business of the code that holds the locks that keep the table alive
//! (see [`super::fault`]). The bit numbers are those of `arch/x86/include/asm/pgtable_types.h`.
//!
//! C header: [`arch/x86/include/asm/pgtable_types.h`](srctree/arch/x86/include/asm/pgtable_types.h)

use kernel::prelude::*;

/// One page-table entry's raw value, at any level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry(pub(crate) u64);

impl Entry {
    /// The entry maps something the MMU may use.
    pub(crate) const PRESENT: u64 = 1 << 0;
    /// Writes are allowed.
    pub(crate) const WRITABLE: u64 = 1 << 1;
    /// User mode may access.
    pub(crate) const USER: u64 = 1 << 2;
    /// Set by the MMU when the entry is used for a translation.
    pub(crate) const ACCESSED: u64 = 1 << 5;
    /// Set by the MMU on a write through a leaf entry.
    pub(crate) const DIRTY: u64 = 1 << 6;
    /// In a PMD or PUD entry: a leaf that maps 2 MiB or 1 GiB directly (page size).
    pub(crate) const HUGE: u64 = 1 << 7;
    /// Not flushed from the TLB on an address-space switch.
    pub(crate) const GLOBAL: u64 = 1 << 8;
    /// Software bit: the kernel's `_PAGE_SPECIAL`, a PFN mapping without a `struct page`
    /// reference (what `vmf_insert_pfn_pmd` writes).
    pub(crate) const SPECIAL: u64 = 1 << 9;
    /// Instruction fetches are not allowed.
    pub(crate) const NO_EXECUTE: u64 = 1 << 63;

    /// The bits the MMU may set on its own (`_PAGE_KNL_ERRATUM_MASK`): an entry with only
    /// these is still empty to the kernel (`pmd_none`).
    const MMU_SET: u64 = Self::ACCESSED | Self::DIRTY;

    /// The physical-address bits of an entry that points to a table or a 4 KiB page, as far
    /// as the architecture goes (bits 12 to 51). A machine with memory encryption (AMD SME or
    /// SEV, Intel TDX) uses one of them as the encryption bit instead: see [`Self::pfn`].
    const ADDRESS: u64 = ((1 << 52) - 1) & !((1 << 12) - 1);

    /// The low bits of a non-present entry that are no part of what it encodes: what a caller
    /// who may not see frame numbers gets of a swap or migration entry, whose other bits hold
    /// a swap offset or a PFN (as pagemap hides them).
    const NON_PRESENT_FLAGS: u64 = (1 << 9) - 1;

    /// Whether the kernel sees nothing in the entry (`pmd_none`, `pte_none`).
    pub(crate) fn is_none(self) -> bool {
        self.0 & !Self::MMU_SET == 0
    }

    /// Whether the present bit is set.
    pub(crate) fn is_present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }

    /// Whether a PMD or PUD entry is a leaf (`pmd_leaf`): the page-size bit, which stays set
    /// while the kernel splits or migrates a huge mapping with the present bit clear.
    pub(crate) fn is_huge(self) -> bool {
        self.0 & Self::HUGE != 0
    }

    /// Whether all of `bits` are set.
    pub(crate) fn has(self, bits: u64) -> bool {
        self.0 & bits == bits
    }

    /// The entry as a caller who may not see frame numbers gets it: a present entry without
    /// its physical-address bits, a non-present one without anything but its low flag bits.
    pub(crate) fn without_pfn(self) -> Self {
        if self.is_present() {
            Self(self.0 & !Self::ADDRESS)
        } else {
            Self(self.0 & Self::NON_PRESENT_FLAGS)
        }
    }

    /// The frame number the entry points to: of the next table, or of the mapped page.
    ///
    /// `physical` is the machine's mask of physical-address bits (the kernel's
    /// `physical_mask`): with memory encryption one address bit is the encryption bit, set in
    /// every entry of an encrypted page, and no part of the frame number. A leaf of
    /// `1 << order` pages has its low address bits used for other things (bit 12 is the PAT
    /// bit of a huge leaf), so they are masked off too.
    pub(crate) fn pfn(self, order: u32, physical: u64) -> u64 {
        (self.0 & Self::ADDRESS & physical) >> 12 & !((1u64 << order) - 1)
    }
}

/// What a PMD entry holds, as the fault path needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PmdState {
    /// Nothing: neither a page table nor a huge leaf.
    None,
    /// A page table of 512 PTEs.
    Table,
    /// A 2 MiB leaf (possibly being split or migrated: the page-size bit is set).
    Huge,
}

impl PmdState {
    /// The state of a PMD entry of raw value `entry`.
    pub(crate) fn of(entry: Entry) -> Self {
        if entry.is_none() {
            Self::None
        } else if entry.is_huge() {
            Self::Huge
        } else {
            Self::Table
        }
    }
}

#[kunit_tests(rust_pagefault_demo_pgtable)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_as_the_mmu_reads_them() {
        // A user data page: present, writable, user, accessed, dirty, no-execute, PFN 0x1234.
        let pte = Entry(0x8000_0000_0123_4067);
        assert!(pte.is_present() && !pte.is_none() && !pte.is_huge());
        assert!(pte.has(Entry::WRITABLE | Entry::USER | Entry::ACCESSED | Entry::DIRTY));
        assert!(pte.has(Entry::NO_EXECUTE) && !pte.has(Entry::GLOBAL));
        let all = u64::MAX;
        assert_eq!(pte.pfn(0, all), 0x1234);
        assert_eq!(pte.without_pfn(), Entry(0x8000_0000_0000_0067));
        // An encrypted page's entry (the encryption bit at 47): not part of the PFN.
        let encrypted = Entry(pte.0 | 1 << 47);
        assert_eq!(encrypted.pfn(0, (1 << 47) - 1), 0x1234);
        // A swap entry: the caller who may not see PFNs gets its low flag bits only.
        assert_eq!(Entry(0x7fff_ffff_ffff_f340).without_pfn(), Entry(0x140));
        // A special 2 MiB leaf at 0x40000000 with the PAT bit (12) set: not part of the PFN.
        let pmd = Entry(0x4000_1000 | Entry::HUGE | Entry::SPECIAL | 0x7);
        assert!(pmd.is_huge());
        assert_eq!(pmd.pfn(9, all), 0x40000);
        // Only the bits the MMU sets on its own: still empty.
        assert!(Entry(Entry::ACCESSED | Entry::DIRTY).is_none());
        assert!(!Entry(Entry::PRESENT).is_none());
    }

    #[test]
    fn pmd_states() {
        assert_eq!(PmdState::of(Entry(0)), PmdState::None);
        assert_eq!(PmdState::of(Entry(0x1234_5067)), PmdState::Table);
        assert_eq!(PmdState::of(Entry(0x4000_00e7)), PmdState::Huge);
        // Being split: present clear, page size still set.
        assert_eq!(PmdState::of(Entry(0x4000_00e6)), PmdState::Huge);
    }
}
