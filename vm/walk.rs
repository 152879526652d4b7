// SPDX-License-Identifier: GPL-2.0

//! The page-table walk of one address of the current process, as the x86-64 MMU does it: from
//! the top table (`mm->pgd`) down, one entry per level, until an entry is empty, not present,
//! or a leaf.
//!
//! Reading the tables: a table is one page, read through the kernel's direct map of physical
//! memory (`page_offset_base` plus its physical address), one 64-bit entry at a time with a
//! single load, as the core's lockless walkers read them (`READ_ONCE`): the entries change
//! under us (other threads fault, the MMU sets accessed and dirty bits), and any value read is
//! one the entry really had.
//!
//! Locks and context: process context, may sleep only before the walk. The mmap lock is held
//! for reading around the walk: it keeps the VMA that the walk reports, and it is what the
//! kernel's own walkers (`walk_page_range`) hold for the upper levels. That alone does not keep
//! the tables alive: 7.3 frees empty PTE tables with only the mmap lock held for reading
//! (`CONFIG_PT_RECLAIM`), and `munmap` frees the tables of the range it unmapped after
//! downgrading the mmap lock to reading. x86 frees every page-table page after an RCU grace
//! period (it selects `MMU_GATHER_RCU_TABLE_FREE`; PT_RECLAIM uses RCU too), so the whole walk
//! runs inside one RCU read-side critical section, as `pte_offset_map` requires for a PTE
//! table: a table reached from an entry read inside it is not freed before it ends.
//!
//! C headers: [`arch/x86/include/asm/pgtable_64.h`](srctree/arch/x86/include/asm/pgtable_64.h),
//! [`include/linux/pgtable.h`](srctree/include/linux/pgtable.h).

use kernel::{
    bindings,
    fs::File,
    page::PAGE_SHIFT,
    prelude::*,
    sync::rcu, //
};

use super::{
    fault::handled_by,
    pgtable::Entry,
    FaultHandler, //
};

/// The levels of the x86-64 page tables, top first. With 4-level paging the P4D level is
/// folded into the PGD (the kernel's `p4d_offset` returns the PGD entry itself) and is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Level {
    /// Page global directory: the table `mm->pgd` points to (CR3 while the process runs in
    /// the kernel; with page-table isolation, user mode runs on a copy of it whose user
    /// entries the kernel's own copy mirrors, NX aside).
    Pgd = 0,
    /// Page level-4 directory: only with 5-level paging.
    P4d = 1,
    /// Page upper directory: an entry maps 1 GiB (a table, or a 1 GiB leaf).
    Pud = 2,
    /// Page middle directory: an entry maps 2 MiB (a table, or a 2 MiB leaf).
    Pmd = 3,
    /// Page table: an entry maps one 4 KiB page.
    Pte = 4,
}

impl Level {
    /// The lowest address bit of this level's index.
    pub(crate) fn shift(self, five_level: bool) -> u32 {
        match self {
            Self::Pgd if five_level => 48,
            Self::Pgd | Self::P4d => 39,
            Self::Pud => 30,
            Self::Pmd => 21,
            Self::Pte => PAGE_SHIFT as u32,
        }
    }

    /// The levels an address goes through, top first.
    pub(crate) fn all(five_level: bool) -> &'static [Level] {
        if five_level {
            &[Self::Pgd, Self::P4d, Self::Pud, Self::Pmd, Self::Pte]
        } else {
            &[Self::Pgd, Self::Pud, Self::Pmd, Self::Pte]
        }
    }

    /// The index of `address` in a table of this level: 9 bits of the address.
    pub(crate) fn index(self, address: usize, five_level: bool) -> usize {
        (address >> self.shift(five_level)) & (ENTRIES - 1)
    }

    /// Whether an entry of this level with the page-size bit maps memory directly.
    fn may_be_huge(self) -> bool {
        matches!(self, Self::Pud | Self::Pmd)
    }
}

/// Entries per table at every level: a 4 KiB page of 8-byte entries.
pub(crate) const ENTRIES: usize = 512;

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum End {
    /// An entry was empty: no table and no page below it. The MMU raises a page fault here.
    Empty = 1,
    /// An entry was not present but not empty either: a swap or migration entry, a
    /// `PROT_NONE` or NUMA-hinting entry (present clear, `_PAGE_PROTNONE` set), or a huge leaf
    /// being split. The MMU raises a page fault here too.
    NotPresent = 2,
    /// A present PTE: the 4 KiB page it maps is the translation.
    Leaf = 3,
    /// A present PMD with the page-size bit: a 2 MiB leaf.
    HugePmd = 4,
    /// A present PUD with the page-size bit: a 1 GiB leaf.
    HugePud = 5,
}

/// One entry the walk read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub(crate) level: Level,
    /// The entry's index in its table.
    pub(crate) index: usize,
    /// The entry, as read.
    pub(crate) entry: Entry,
    /// The PFN of the table the entry was read from.
    pub(crate) table_pfn: u64,
    /// The PFN the entry points to, the next table or the mapped frame's first page; zero
    /// when the entry is not present.
    pub(crate) points_to: u64,
}

/// The VMA that holds the walked address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VmaSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Whether its faults are this module's, by the `vm_operations_struct` it carries.
    pub(crate) ours: bool,
}

/// A walk: what the MMU would read, top first, and where it stopped.
pub(crate) struct Walk {
    /// Whether the machine uses 5-level paging.
    pub(crate) five_level: bool,
    pub(crate) steps: KVec<Step>,
    pub(crate) end: End,
    pub(crate) vma: Option<VmaSpan>,
}

/// Whether the machine runs with 5-level paging (`pgtable_l5_enabled()`, which is not exported;
/// the PGD's shift, which is, says the same: 48 with five levels, 39 with four).
pub(crate) fn five_level() -> bool {
    // SAFETY: `pgdir_shift` is set during early boot and read-only afterwards.
    let shift = unsafe { bindings::pgdir_shift };
    shift == 48
}

/// The end of user space (`TASK_SIZE_MAX`, the top page excluded): 2^47 - 4 KiB, or
/// 2^56 - 4 KiB with 5-level paging.
pub(crate) fn user_end() -> usize {
    let bits = if five_level() { 56 } else { 47 };
    (1usize << bits) - (1 << PAGE_SHIFT)
}

/// Whether the opener of `file` may see physical frame numbers: as for
/// `/proc/<pid>/pagemap`, `CAP_SYS_ADMIN` in the initial user namespace, checked against the
/// credentials the file was opened with.
pub(crate) fn may_see_pfns(file: &File) -> bool {
    // SAFETY: `file` is a valid file for the duration of the call, and `init_user_ns` is a
    // static that lives for the whole uptime; `file_ns_capable` only reads them.
    unsafe {
        bindings::file_ns_capable(
            file.as_ptr(),
            core::ptr::addr_of_mut!(bindings::init_user_ns),
            bindings::CAP_SYS_ADMIN as i32,
        )
    }
}

/// The machine's physical-address bits (the kernel's `physical_mask`): fewer than 52 with
/// memory encryption, whose encryption bit is set in page-table entries.
#[cfg(CONFIG_DYNAMIC_PHYSICAL_MASK)]
fn physical_mask() -> u64 {
    // SAFETY: `physical_mask` is set during early boot (memory encryption setup) and
    // read-only afterwards.
    unsafe { bindings::physical_mask }
}

/// The machine's physical-address bits: all 52 without `CONFIG_DYNAMIC_PHYSICAL_MASK`.
#[cfg(not(CONFIG_DYNAMIC_PHYSICAL_MASK))]
fn physical_mask() -> u64 {
    (1 << 52) - 1
}

/// The highest PFN the direct map can hold plus one (`MAX_PHYSMEM_BITS`: 46 bits of physical
/// address with 4-level paging, 52 with 5-level).
fn pfn_limit(five_level: bool) -> u64 {
    1 << (if five_level { 52 } else { 46 } - PAGE_SHIFT)
}

/// The kernel's direct-map address of the page of `pfn`.
fn direct_map(pfn: u64) -> *const u64 {
    // SAFETY: `page_offset_base` is set during early boot and read-only afterwards.
    let base = unsafe { bindings::page_offset_base };
    (base + ((pfn as usize) << PAGE_SHIFT)) as *const u64
}

/// The PFN of the page at direct-map address `va`.
fn pfn_of(va: *const u64) -> u64 {
    // SAFETY: as in `direct_map`.
    let base = unsafe { bindings::page_offset_base };
    ((va as usize - base) >> PAGE_SHIFT) as u64
}

/// Walks the current process's page tables for `address` (a user address), reporting the
/// VMA that holds it, if any, and whether that VMA's faults are handled by a `T`.
///
/// `EINVAL` when the current task has no address space (a kernel thread).
pub(crate) fn walk_current<T: FaultHandler>(address: usize) -> Result<Walk> {
    let task = kernel::current!();
    let mm = task.mm().ok_or(EINVAL)?;
    let five_level = five_level();
    let mut steps = KVec::with_capacity(Level::all(five_level).len(), GFP_KERNEL)?;
    let mmap = mm.mmap_read_lock();
    let vma = mmap.vma_lookup(address).map(|vma| VmaSpan {
        start: vma.start(),
        end: vma.end(),
        ours: handled_by::<T>(vma),
    });
    let rcu = rcu::read_lock();
    // SAFETY: `mm` is the current task's address space, alive while the task uses it, and
    // its `pgd` is set when the mm is made and never changes while it lives.
    let mut table = unsafe { (*mm.as_raw()).__bindgen_anon_1.pgd }
        .cast::<u64>()
        .cast_const();
    let physical = physical_mask();
    let mut end = End::Empty;
    for &level in Level::all(five_level) {
        let index = level.index(address, five_level);
        // SAFETY: `table` is the direct-map address of a live page-table page: the PGD, which
        // lives as long as the mm, or a table reached from a present entry read inside this
        // RCU read-side critical section, which cannot be freed before it ends (see the module
        // documentation). `index` is below 512, inside the page. The volatile read is one
        // aligned 64-bit load (`READ_ONCE`).
        let entry = Entry(unsafe { core::ptr::read_volatile(table.add(index)) });
        let huge = level.may_be_huge() && entry.is_huge();
        // A huge leaf's frame number has its low bits masked off (see `Entry::pfn`).
        let order = match level {
            Level::Pmd if huge => 9,
            Level::Pud if huge => 18,
            _ => 0,
        };
        let points_to = if entry.is_present() {
            entry.pfn(order, physical)
        } else {
            0
        };
        // Never fails: the capacity is one step per level.
        steps
            .push_within_capacity(Step {
                level,
                index,
                entry,
                table_pfn: pfn_of(table),
                points_to,
            })
            .map_err(|_| ENOMEM)?;
        if entry.is_none() {
            end = End::Empty;
            break;
        }
        if !entry.is_present() {
            end = End::NotPresent;
            break;
        }
        if level == Level::Pte {
            end = End::Leaf;
            break;
        }
        if huge {
            end = if level == Level::Pmd {
                End::HugePmd
            } else {
                End::HugePud
            };
            break;
        }
        // A table outside the direct map would be a corrupt entry: not followed.
        if points_to >= pfn_limit(five_level) {
            return Err(EIO);
        }
        table = direct_map(points_to);
    }
    drop(rcu);
    drop(mmap);
    Ok(Walk {
        five_level,
        steps,
        end,
        vma,
    })
}
