// SPDX-License-Identifier: GPL-2.0

//! The MMU's view: the page-table walk of one address of the caller, level by level, as the
//! `RPD_IOC_WALK` ioctl on the device file answers it.
//!
//! A program asks for an address of its own; the reply lists, for every level from the top
//! table down, the index the address selects, the entry found there, and the frame it points
//! to (the next table, or the page), and says where and why the walk ended. Before a first
//! touch the walk ends at an empty entry (where the MMU raises the page fault); after it, at
//! the leaf our handler wrote. The program that uses it:
//!
//! ```c
//! struct rpd_walk w = { .size = sizeof(w), .version = RPD_WALK_VERSION,
//!                       .address = (uintptr_t)p };
//! ioctl(fd, RPD_IOC_WALK, &w);     // any open file of the device; p: any address of ours
//! for (unsigned i = 0; i < w.count; i++)
//!         printf("%u %u %#llx\n", w.levels[i].level, w.levels[i].index, w.levels[i].entry);
//! ```
//!
//! The reply is [`WalkReply`], a fixed-size versioned structure (the README documents it
//! field by field; `user/src/walk.rs` is its user-space twin). Frame numbers are shown only to
//! an opener with `CAP_SYS_ADMIN`, as `/proc/<pid>/pagemap` does: for others they are zero,
//! also inside the raw entries (a non-present entry, which may hold a swap offset or a PFN,
//! keeps only its low flag bits).
//!
//! Calling context: the ioctl, in process context; the walk itself is [`vm::walk_current`].

use kernel::{
    fs::File,
    ioctl::{
        _IOC_SIZE,
        _IOWR, //
    },
    page::PAGE_SIZE,
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    instance::Instance,
    vm::{
        self,
        Entry, //
    },
};

/// The version of [`WalkReply`] this module speaks.
pub(crate) const WALK_VERSION: u32 = 1;

/// The ioctl: read a [`WalkReply`] with `size`, `version` and `address` set, write it back
/// filled in.
pub(crate) const RPD_IOC_WALK: u32 = _IOWR::<WalkReply>(0xE7, 1);

/// `flags`: the frame numbers are hidden (zero) because the opener lacks `CAP_SYS_ADMIN`.
pub(crate) const WALK_PFNS_HIDDEN: u32 = 1 << 0;
/// `flags`: a VMA holds the address (`vma_start`, `vma_end` are set).
pub(crate) const WALK_IN_VMA: u32 = 1 << 1;
/// `flags`: that VMA is a mapping of this device.
pub(crate) const WALK_OUR_VMA: u32 = 1 << 2;
/// `flags`: the machine uses 5-level paging (a P4D level is walked).
pub(crate) const WALK_FIVE_LEVEL: u32 = 1 << 3;

/// One level of a walk, as user space reads it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct WalkLevel {
    /// The entry, as read (its frame-number bits zero when hidden).
    pub(crate) entry: u64,
    /// The PFN of the table the entry was read from.
    pub(crate) table_pfn: u64,
    /// The PFN the entry points to: the next table, or the mapped frame (zero when the entry
    /// is not present, or hidden).
    pub(crate) pfn: u64,
    /// 0 PGD, 1 P4D, 2 PUD, 3 PMD, 4 PTE.
    pub(crate) level: u16,
    /// The entry's index in its table: 9 bits of the address.
    pub(crate) index: u16,
    /// The lowest address bit of the index (48, 39, 30, 21, 12).
    pub(crate) shift: u32,
}

/// The walk of one address: what `RPD_IOC_WALK` reads and writes back.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct WalkReply {
    /// In: `size_of::<WalkReply>()` (208).
    pub(crate) size: u32,
    /// In: [`WALK_VERSION`].
    pub(crate) version: u32,
    /// In: a page-aligned user address of the caller.
    pub(crate) address: u64,
    /// Out: the levels the machine's paging has (4 or 5).
    pub(crate) paging_levels: u32,
    /// Out: how many of `levels` were read.
    pub(crate) count: u32,
    /// Out: why the walk stopped: 1 empty entry, 2 not present, 3 PTE leaf, 4 PMD leaf
    /// (2 MiB), 5 PUD leaf (1 GiB).
    pub(crate) end: u32,
    /// Out: `WALK_*` flags.
    pub(crate) flags: u32,
    /// Out: the VMA that holds the address, if `WALK_IN_VMA`.
    pub(crate) vma_start: u64,
    /// Out: the end of that VMA.
    pub(crate) vma_end: u64,
    /// Out: the entries read, top first.
    pub(crate) levels: [WalkLevel; 5],
}

// SAFETY: `WalkLevel` is plain integers laid out with no padding (8 + 8 + 8 + 2 + 2 + 4
// bytes), so every byte of it is initialised and every bit pattern is a valid value.
unsafe impl AsBytes for WalkLevel {}
// SAFETY: as above.
unsafe impl FromBytes for WalkLevel {}
// SAFETY: `WalkReply` is plain integers and `WalkLevel`s laid out with no padding (48 bytes of
// header, all 8-byte fields at multiples of 8, then five 32-byte levels).
unsafe impl AsBytes for WalkReply {}
// SAFETY: as above.
unsafe impl FromBytes for WalkReply {}

impl WalkReply {
    /// Fills the output fields from `walk`, hiding frame numbers unless `show_pfns`. Every
    /// output field is written, also the levels not read and the VMA when there is none, so
    /// nothing of what the caller sent comes back as if the module had said it.
    fn fill(&mut self, walk: &vm::Walk, show_pfns: bool) {
        *self = Self {
            size: self.size,
            version: self.version,
            address: self.address,
            ..Self::default()
        };
        self.paging_levels = if walk.five_level { 5 } else { 4 };
        self.count = walk.steps.len() as u32;
        self.end = walk.end as u32;
        if !show_pfns {
            self.flags |= WALK_PFNS_HIDDEN;
        }
        if walk.five_level {
            self.flags |= WALK_FIVE_LEVEL;
        }
        if let Some(vma) = walk.vma {
            self.flags |= WALK_IN_VMA;
            if vma.ours {
                self.flags |= WALK_OUR_VMA;
            }
            self.vma_start = vma.start as u64;
            self.vma_end = vma.end as u64;
        }
        for (out, step) in self.levels.iter_mut().zip(walk.steps.iter()) {
            let points_to = step.points_to;
            *out = WalkLevel {
                entry: if show_pfns {
                    step.entry.0
                } else {
                    step.entry.without_pfn().0
                },
                table_pfn: if show_pfns { step.table_pfn } else { 0 },
                pfn: if show_pfns { points_to } else { 0 },
                level: step.level as u16,
                index: step.index as u16,
                shift: step.level.shift(walk.five_level),
            };
        }
    }
}

/// Checks the address of a walk request: a page-aligned user address (canonical: below the
/// top of user space). `EINVAL` otherwise.
fn check_address(address: u64) -> Result<usize> {
    let address = usize::try_from(address).map_err(|_| EINVAL)?;
    if address % PAGE_SIZE != 0 || address >= vm::user_end() {
        return Err(EINVAL);
    }
    Ok(address)
}

/// The device file's ioctl: `RPD_IOC_WALK`; `ENOTTY` for any other command.
///
/// `EINVAL` for a reply of the wrong size or version, or an address that is not a
/// page-aligned user address; `EFAULT` when the reply cannot be read or written.
pub(crate) fn ioctl(file: &File, cmd: u32, arg: usize) -> Result<isize> {
    if cmd != RPD_IOC_WALK {
        return Err(ENOTTY);
    }
    let (mut reader, mut writer) =
        UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd)).reader_writer();
    let mut reply: WalkReply = reader.read()?;
    if reply.size as usize != core::mem::size_of::<WalkReply>() || reply.version != WALK_VERSION {
        return Err(EINVAL);
    }
    let address = check_address(reply.address)?;
    let walk = vm::walk_current::<Instance>(address)?;
    reply.fill(&walk, vm::may_see_pfns(file));
    writer.write(&reply)?;
    Ok(0)
}

#[kunit_tests(rust_pagefault_demo_walk)]
mod tests {
    use super::*;
    use crate::vm::Level;

    #[test]
    fn the_reply_has_the_documented_layout() {
        assert_eq!(core::mem::size_of::<WalkLevel>(), 32);
        assert_eq!(core::mem::size_of::<WalkReply>(), 208);
        assert_eq!(core::mem::offset_of!(WalkReply, levels), 48);
    }

    #[test]
    fn an_address_splits_into_nine_bit_indices() {
        // 0x7f12_3456_7000: PGD 254, PUD 72, PMD 162, PTE 359 with 4 levels.
        let address = (254 << 39) | (72 << 30) | (162 << 21) | (359 << 12);
        let four = Level::all(false)
            .iter()
            .map(|level| level.index(address, false));
        assert!(four.eq([254, 72, 162, 359]));
        // With 5 levels the PGD index takes bits 48..57 and the P4D bits 39..48.
        let address = (3 << 48) | address;
        assert_eq!(Level::Pgd.index(address, true), 3);
        assert_eq!(Level::P4d.index(address, true), 254);
        assert_eq!(Level::Pte.index(address, true), 359);
    }

    #[test]
    fn only_page_aligned_user_addresses_are_walked() {
        assert_eq!(check_address(0x7000), Ok(0x7000));
        assert_eq!(check_address(0x7001), Err(EINVAL));
        assert_eq!(check_address(vm::user_end() as u64), Err(EINVAL));
        assert_eq!(check_address(0xffff_8880_0000_0000), Err(EINVAL));
        // 2^47 is past user space with 4-level paging only.
        assert_eq!(check_address(1 << 47).is_ok(), vm::five_level());
    }

    #[test]
    fn hidden_pfns_are_zero_everywhere() {
        let mut steps = KVec::new();
        let entry = Entry(0x8000_0000_0123_4067);
        for (i, &level) in Level::all(false).iter().enumerate() {
            steps
                .push(
                    vm::Step {
                        level,
                        index: i,
                        entry,
                        table_pfn: 0x999,
                        points_to: 0x1234,
                    },
                    GFP_KERNEL,
                )
                .expect("four steps");
        }
        let walk = vm::Walk {
            five_level: false,
            steps,
            end: vm::End::Leaf,
            vma: None,
        };
        // What the caller sent in the output fields does not come back.
        let mut reply = WalkReply {
            vma_start: 7,
            ..WalkReply::default()
        };
        reply.levels[4].entry = 7;
        reply.fill(&walk, false);
        assert_eq!((reply.vma_start, reply.levels[4].entry), (0, 0));
        assert_eq!(reply.flags, WALK_PFNS_HIDDEN);
        assert_eq!((reply.count, reply.end, reply.paging_levels), (4, 3, 4));
        for level in &reply.levels[..4] {
            assert_eq!((level.pfn, level.table_pfn), (0, 0));
            assert_eq!(level.entry, 0x8000_0000_0000_0067);
        }
        reply.fill(&walk, true);
        assert_eq!(reply.flags, 0);
        assert_eq!(
            (reply.levels[3].pfn, reply.levels[3].table_pfn),
            (0x1234, 0x999)
        );
        assert_eq!(reply.levels[3].shift, 12);
    }
}
