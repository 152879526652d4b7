// SPDX-License-Identifier: GPL-2.0

//! The frames of one instance: which frame backs each page offset.
//!
//! Each instance owns two tables, one of 4 KiB frames and one of 2 MiB frames (only one of
//! them has slots). The fault path asks a table for the frame of an offset ([`FrameTable::frame`]
//! or, for a prefault batch, [`FrameTable::fill`]); the table allocates it on the first touch,
//! after reserving it in the [`FrameBudget`], and counts it in [`Stats`].
//!
//! Calling context: process context that may sleep (the fault path, under the mmap or VMA read
//! lock; the `frames` file, under the instance list's mutex). No lock of its own: the
//! [`OnceArray`] under it is lock-free.

use core::fmt;
use kernel::prelude::*;

use crate::{
    budget::FrameBudget,
    once_array::OnceArray,
    recorder::Trace,
    stats::{
        Counter,
        Stats, //
    },
    vm, //
};

/// The frames of one instance, indexed by frame number: page offset >> `ORDER`.
///
/// Frames live in a [`OnceArray`], so the first frame stored for an offset is the one every
/// mapping gets, and a frame found in the table stays valid for as long as the table is
/// borrowed: the table never removes one, and frees them all when it is dropped. Dense, a frame
/// costs the table 8 bytes (its slot; a leaf of 4 KiB serves 512 frames), plus 8 bytes of
/// directory per 512 slots of the instance's size. The table keeps no counters: on a fault,
/// every word written is either the new frame's slot or per CPU, so two threads faulting on
/// one instance write to no shared word but the global budget's (eight neighbouring slots
/// share a cache line, which two first touches of neighbouring pages may both write).
pub(crate) struct FrameTable<const ORDER: u32> {
    frames: OnceArray<vm::Frame<ORDER>>,
}

impl<const ORDER: u32> FrameTable<ORDER> {
    /// An empty table for the frames of `pages` 4 KiB pages.
    pub(crate) fn new(pages: usize) -> Result<Self> {
        Ok(Self {
            frames: OnceArray::new(pages.div_ceil(1 << ORDER))?,
        })
    }

    /// The bytes of memory the table itself takes (its frames not counted).
    pub(crate) fn bytes(&self) -> usize {
        self.frames.bytes()
    }

    /// The number of 4 KiB pages in the table's frames, counted (fdinfo and the instance's
    /// end need it, faults do not).
    pub(crate) fn pages(&self) -> usize {
        self.frames.count() << ORDER
    }

    /// Frame number `index`, if it exists.
    pub(crate) fn get(&self, index: usize) -> Option<vm::FrameRef<'_, ORDER>> {
        self.frames.get(index)
    }

    /// Stores `frame` as frame number `index` unless the table has that frame already. Returns
    /// the frame the table holds then, and whether it is `frame` (if not, `frame` is freed).
    fn store(
        &self,
        index: usize,
        frame: vm::Frame<ORDER>,
    ) -> Result<(vm::FrameRef<'_, ORDER>, bool), Shortage> {
        self.frames.set(index, frame).map_err(|e| {
            if e == ENOMEM {
                Shortage::Memory
            } else {
                Shortage::Refused
            }
        })
    }

    /// Why a frame of this table's order could not be allocated.
    fn alloc_failed() -> Shortage {
        if ORDER > vm::COSTLY_ORDER {
            Shortage::NoHugeFrame
        } else {
            Shortage::Memory
        }
    }

    /// Frame number `index`: the one in the table, or a new zeroed one, reserved in `budget`
    /// first and counted in `stats` (the module's [`BUDGET`](crate::budget::BUDGET) and
    /// [`STATS`](crate::stats::STATS); tests bring their own). `trace` gets the time of each
    /// part and whether the frame is new.
    pub(crate) fn frame(
        &self,
        budget: &FrameBudget,
        stats: &Stats,
        index: usize,
        trace: &mut Trace,
    ) -> Result<vm::FrameRef<'_, ORDER>, Shortage> {
        if let Some(frame) = self.get(index) {
            trace.reserved();
            return Ok(frame);
        }
        let reservation = budget.reserve(1 << ORDER).ok_or(Shortage::Cap)?;
        trace.reserved();
        let frame = vm::Frame::alloc_zeroed().map_err(|_| Self::alloc_failed())?;
        // A concurrent fault may have stored a frame meanwhile: then ours is freed, and the
        // reservation given back when it drops.
        let (frame, stored) = self.store(index, frame)?;
        trace.allocated(u32::from(stored));
        trace.new = stored;
        if stored {
            // Counted in the table now: so in the budget and the counters, before anything
            // else can return.
            reservation.commit(1 << ORDER);
            stats.add(Counter::FramesAllocated, 1 << ORDER);
        } else {
            stats.add(Counter::FramesDiscarded, 1 << ORDER);
        }
        Ok(frame)
    }

    /// Fills `slots` with frames `start..start + slots.len()`, as [`Self::frame`] would one by
    /// one, for prefaulting.
    ///
    /// However many slots there are, the cap is asked once: that, and the one
    /// `vm_insert_pages` call the caller makes, is what makes a batch cheaper per page than
    /// single faults. With `blocks`, the new frames are allocated in blocks of several pages
    /// ([`vm::FrameSource`]), which saves the page allocator's work per call too. On a
    /// shortage, the slots from the first one that could not be filled may stay empty.
    /// `trace` gets the time of each part and the frames allocated.
    pub(crate) fn fill<'a>(
        &'a self,
        budget: &FrameBudget,
        stats: &Stats,
        start: usize,
        slots: &mut [Option<vm::FrameRef<'a, ORDER>>],
        blocks: bool,
        trace: &mut Trace,
    ) -> Result<(), Shortage> {
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = self.get(start + i);
        }
        let missing = slots.iter().filter(|slot| slot.is_none()).count();
        if missing == 0 {
            return Ok(());
        }
        let reservation = budget.reserve(missing << ORDER).ok_or(Shortage::Cap)?;
        trace.reserved();
        // Dropped before the reservation is settled, with the pages of its last block that
        // no slot took, so that the cap never counts fewer frames than exist.
        let mut source = vm::FrameSource::new(missing, blocks);
        let (mut stored, mut discarded, mut result) = (0, 0, Ok(()));
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let frame = match source.next() {
                Ok(frame) => frame,
                Err(_) => {
                    result = Err(Self::alloc_failed());
                    break;
                }
            };
            match self.store(start + i, frame) {
                Ok((frame, ours)) => {
                    stored += usize::from(ours);
                    discarded += usize::from(!ours);
                    *slot = Some(frame);
                }
                Err(shortage) => {
                    result = Err(shortage);
                    break;
                }
            }
        }
        drop(source);
        trace.allocated(stored as u32);
        // The reservations of the frames that did not go in are given back here.
        reservation.commit(stored << ORDER);
        stats.add(Counter::FramesAllocated, (stored as u64) << ORDER);
        if discarded > 0 {
            stats.add(Counter::FramesDiscarded, (discarded as u64) << ORDER);
        }
        result
    }

    /// Calls `f(pgoff, pfn)` for every 4 KiB page of every frame, in page-offset order.
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, usize) -> fmt::Result) -> fmt::Result {
        self.frames.try_for_each(|index, frame| {
            for i in 0..1 << ORDER {
                f((index << ORDER) + i, frame.pfn() + i)?;
            }
            Ok(())
        })
    }
}

/// Why a page could not be mapped.
pub(crate) enum Shortage {
    /// `max_total_pages` is reached.
    Cap,
    /// An allocation failed: a 4 KiB frame, a leaf of the table, or a page table.
    Memory,
    /// No 2 MiB frame could be had: no free block (after compaction and reclaim), or not
    /// within the memory cgroup's limit.
    ///
    /// This is not `Memory`: the core's answer to `VM_FAULT_OOM` is the OOM killer, which
    /// does not act for a costly order (above `PAGE_ALLOC_COSTLY_ORDER`, 3), so the access
    /// would fault again and again, forever.
    NoHugeFrame,
    /// `vm_insert_page` refused the page.
    Refused,
}

#[kunit_tests(rust_pagefault_demo_frame_table)]
mod tests {
    use super::*;
    use kernel::page::PAGE_SIZE;

    /// A frame table with a budget and counters of its own, so tests leave the module's alone.
    struct Bench<const ORDER: u32> {
        table: KBox<FrameTable<ORDER>>,
        budget: FrameBudget,
        stats: KBox<Stats>,
    }

    impl<const ORDER: u32> Bench<ORDER> {
        fn new(cap: usize) -> Result<Self> {
            Ok(Self {
                table: KBox::new(FrameTable::new(4096)?, GFP_KERNEL)?,
                budget: FrameBudget::new(cap),
                stats: KBox::new(Stats::new(), GFP_KERNEL)?,
            })
        }

        fn frame(&self, index: usize) -> Result<vm::FrameRef<'_, ORDER>> {
            self.table
                .frame(
                    &self.budget,
                    &self.stats,
                    index,
                    &mut Trace::begin(false, false),
                )
                .map_err(|_| ENOMEM)
        }
    }

    #[test]
    fn frame_table_maps_each_offset_once() -> Result {
        let t = Bench::<0>::new(16)?;
        assert!(t.table.get(5).is_none());
        let first = t.frame(5)?;
        // A later fault on the same offset gets the same frame, and allocates nothing.
        assert_eq!(t.frame(5)?.pfn(), first.pfn());
        assert_eq!(t.table.get(5).map(|f| f.pfn()), Some(first.pfn()));
        assert_eq!(t.table.pages(), 1);
        assert_eq!(t.budget.live(), 1);
        assert_eq!(t.stats.get(Counter::FramesAllocated), 1);
        Ok(())
    }

    #[test]
    fn frame_tells_the_trace_whether_it_allocated() -> Result {
        let t = Bench::<0>::new(16)?;
        let mut first = Trace::begin(true, false);
        t.table
            .frame(&t.budget, &t.stats, 1, &mut first)
            .map_err(|_| ENOMEM)?;
        assert!(first.new);
        assert_eq!(first.allocs, 1);
        // The second touch finds the frame: nothing allocated, nothing new.
        let mut again = Trace::begin(true, false);
        t.table
            .frame(&t.budget, &t.stats, 1, &mut again)
            .map_err(|_| ENOMEM)?;
        assert!(!again.new);
        assert_eq!(again.allocs, 0);
        Ok(())
    }

    #[test]
    fn fill_keeps_existing_frames_and_allocates_the_rest() -> Result {
        // One allocation per frame, and blocks: 13 missing frames are a block of 8, one of 4,
        // and a frame of its own.
        for blocks in [false, true] {
            let t = Bench::<0>::new(16)?;
            let known = t.frame(2)?.pfn();
            let mut slots = [None; 14];
            t.table
                .fill(
                    &t.budget,
                    &t.stats,
                    0,
                    &mut slots,
                    blocks,
                    &mut Trace::begin(false, false),
                )
                .map_err(|_| ENOMEM)?;
            assert!(slots.iter().all(|slot| slot.is_some()));
            assert_eq!(slots[2].map(|f| f.pfn()), Some(known));
            // Fourteen different frames, each in the table as the slot says.
            for (i, slot) in slots.iter().enumerate() {
                let pfn = slot.map(|f| f.pfn());
                assert_eq!(t.table.get(i).map(|f| f.pfn()), pfn);
                assert!(slots[..i].iter().all(|other| other.map(|f| f.pfn()) != pfn));
            }
            if blocks {
                // The block of eight went to the first eight empty slots, in order.
                let pfns = [0, 1, 3, 4, 5, 6, 7, 8].map(|i| slots[i].map(|f| f.pfn()));
                assert!(pfns
                    .windows(2)
                    .all(|w| matches!((w[0], w[1]), (Some(a), Some(b)) if b == a + 1)));
            }
            assert_eq!(t.table.pages(), 14);
            assert_eq!(t.budget.live(), 14);
            assert_eq!(t.stats.get(Counter::FramesAllocated), 14);
        }
        Ok(())
    }

    #[test]
    fn fill_stops_at_the_cap() -> Result {
        for blocks in [false, true] {
            let t = Bench::<0>::new(3)?;
            let mut slots = [None; 5];
            // Five new frames do not fit under a cap of three: none is allocated.
            assert!(matches!(
                t.table.fill(
                    &t.budget,
                    &t.stats,
                    0,
                    &mut slots,
                    blocks,
                    &mut Trace::begin(false, false)
                ),
                Err(Shortage::Cap)
            ));
            assert!(slots.iter().all(|slot| slot.is_none()));
            assert_eq!((t.table.pages(), t.budget.live()), (0, 0));
            // Three do, and a fourth single frame does not.
            t.table
                .fill(
                    &t.budget,
                    &t.stats,
                    0,
                    &mut slots[..3],
                    blocks,
                    &mut Trace::begin(false, false),
                )
                .map_err(|_| ENOMEM)?;
            assert!(matches!(
                t.table
                    .frame(&t.budget, &t.stats, 3, &mut Trace::begin(false, false)),
                Err(Shortage::Cap)
            ));
            assert_eq!((t.table.pages(), t.budget.live()), (3, 3));
        }
        Ok(())
    }

    #[test]
    fn frame_table_lists_pages_in_order() -> Result {
        let t = Bench::<0>::new(16)?;
        for pgoff in [9, 2, 700] {
            t.frame(pgoff)?;
        }
        let mut seen = KVec::new();
        t.table
            .for_each(|pgoff, pfn| {
                assert!(pfn != 0);
                seen.push(pgoff, GFP_KERNEL).map_err(|_| fmt::Error)
            })
            .map_err(|_| ENOMEM)?;
        assert_eq!(&seen[..], &[2, 9, 700]);
        assert_eq!(t.table.pages(), 3);
        Ok(())
    }

    #[test]
    fn huge_frames_count_and_list_their_pages() -> Result {
        let t = Bench::<{ vm::HUGE_ORDER }>::new(1024)?;
        // The VM has free 2 MiB blocks (and compaction) at every load: failing to get one is
        // a failure, not a reason to skip.
        let frame = t.frame(3)?;
        assert_eq!(frame.pfn() % 512, 0);
        assert_eq!(t.table.pages(), 512);
        assert_eq!(t.budget.live(), 512);
        let (mut rows, mut last) = (0, None);
        t.table
            .for_each(|pgoff, pfn| {
                assert_eq!(pgoff, 3 * 512 + rows);
                assert_eq!(pfn, frame.pfn() + rows);
                rows += 1;
                last = Some(pgoff);
                Ok(())
            })
            .map_err(|_| EINVAL)?;
        assert_eq!((rows, last), (512, Some(4 * 512 - 1)));
        Ok(())
    }

    #[test]
    fn new_frames_are_zeroed() -> Result {
        let t = Bench::<0>::new(16)?;
        let page = t.frame(0)?.page();
        let mut buf = [0xffu8; 64];
        for offset in (0..PAGE_SIZE).step_by(buf.len()) {
            // SAFETY: `buf` is valid for writes of its length, and nobody else writes the page.
            unsafe { page.read_raw(buf.as_mut_ptr(), offset, buf.len())? };
            assert!(buf.iter().all(|&b| b == 0));
        }
        Ok(())
    }
}
