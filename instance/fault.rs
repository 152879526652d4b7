// SPDX-License-Identifier: GPL-2.0

//! The fault handler: steps 2 to 8 of the story, from the MMU's miss to the mapped frame.
//!
//! The core calls [`vm::FaultHandler::fault`] when a program touches a page of an instance's
//! mapping that has no page-table entry yet (and [`vm::FaultHandler::pmd_fault`] first, for a
//! `huge` mapping). The handler finds or allocates the page's frame in the instance's frame
//! table, maps it, and returns; the core then retries the faulting instruction.
//!
//! Calling context: the page-fault path, in the faulting task's context, with the mmap lock or
//! the VMA's lock held for reading (never for writing: other faults of the same mapping may run
//! at the same time, which the frame table's first-frame-wins store resolves). It may sleep
//! (allocation, page-table allocation). It must not take the mmap lock, nor [`INSTANCES`].
//!
//! [`INSTANCES`]: super::INSTANCES

use kernel::{
    mm::virt::VmaMixedMap,
    page::{
        PAGE_MASK,
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    time::{
        Instant,
        Monotonic, //
    },
};

use super::Instance;
use crate::{
    budget::BUDGET,
    frame_table::Shortage,
    stats::{
        record_call,
        Counter,
        STATS, //
    },
    vm, //
};

/// Counts a shortage and turns it into what the faulting access gets.
fn outcome_of(shortage: Shortage) -> vm::FaultOutcome {
    match shortage {
        Shortage::Cap | Shortage::Refused => {
            STATS.add(Counter::Sigbus, 1);
            vm::FaultOutcome::Sigbus
        }
        Shortage::Memory => {
            STATS.add(Counter::Oom, 1);
            vm::FaultOutcome::Oom
        }
    }
}

/// The result of mapping one page: `EBUSY` means a thread of the same process mapped it
/// first, so the access will succeed.
fn inserted(result: Result) -> Result<(), Shortage> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e == EBUSY => Ok(()),
        Err(e) if e == ENOMEM => Err(Shortage::Memory),
        Err(_) => Err(Shortage::Refused),
    }
}

impl Instance {
    /// Maps the page of `pgoff` at `address`, allocating its frame on the first touch; with
    /// `prefault` > 1, also maps the pages after it.
    fn map(&self, vma: &VmaMixedMap, pgoff: usize, address: usize) -> Result<(), Shortage> {
        if pgoff >= self.size {
            // mmap refuses such ranges and VM_DONTEXPAND stops growth: only a kernel bug gets
            // here, and it must not get a frame.
            return Err(Shortage::Refused);
        }
        let address = address & PAGE_MASK;
        if self.huge {
            let frame = self.large.frame(&BUDGET, &STATS, pgoff >> vm::HUGE_ORDER)?;
            return inserted(vm::insert_subpage(
                vma,
                address,
                frame,
                pgoff & vm::HUGE_MASK,
            ));
        }
        let frame = self.small.frame(&BUDGET, &STATS, pgoff)?;
        inserted(vma.vm_insert_page(address, &frame.page()))?;
        if self.prefault > 1 {
            self.prefault(vma, pgoff + 1, address + PAGE_SIZE, self.prefault - 1);
        }
        Ok(())
    }

    /// Maps up to `count` pages from `pgoff` at `address`, allocating their frames, in batches
    /// of one `vm_insert_pages` call each. Best effort: it stops at the end of the mapping or
    /// of the instance, at the frame cap, or at an allocation failure (those pages then fault
    /// on their own), and skips pages that are mapped already.
    fn prefault(&self, vma: &VmaMixedMap, pgoff: usize, address: usize, count: usize) {
        let count = count
            .min(self.size.saturating_sub(pgoff))
            .min((vma.end() - address) >> PAGE_SHIFT);
        let mut batch = vm::PageBatch::new(address);
        let (mut done, mut mapped) = (0, 0);
        while done < count {
            let mut slots = [None; vm::PageBatch::CAPACITY];
            let n = (count - done).min(slots.len());
            // Best effort: a shortage ends the prefault at the first page it left empty.
            let _ = self
                .small
                .fill(&BUDGET, &STATS, pgoff + done, &mut slots[..n]);
            let filled = slots[..n].iter().take_while(|slot| slot.is_some()).count();
            for frame in slots[..filled].iter().flatten() {
                batch.push(&frame.page());
            }
            let (inserted, clean) = batch.insert(vma);
            mapped += inserted;
            done += filled;
            // A shortage, or a page the core would not map (no memory for a page table):
            // those pages fault on their own.
            if filled < n || !clean {
                break;
            }
        }
        STATS.add(Counter::Prefaulted, mapped as u64);
    }

    /// Maps the 2 MiB frame around `fault` with one PMD, or asks for 4 KiB faults instead.
    fn map_pmd(&self, fault: &vm::Fault, pmd: &vm::PmdFault<'_>) -> vm::FaultOutcome {
        let index = fault.pgoff >> vm::HUGE_ORDER;
        // A private mapping must never get a writable view of the instance's frame: its pages
        // go through 4 KiB faults, where the core copies on write. So does a frame that would
        // reach past the instance's end.
        if !self.huge || !fault.shared || (index + 1) << vm::HUGE_ORDER > self.size {
            STATS.add(Counter::HugeFallbacks, 1);
            return vm::FaultOutcome::Fallback;
        }
        match self.large.frame(&BUDGET, &STATS, index) {
            Ok(frame) => pmd.insert(frame, fault.write),
            Err(shortage) => outcome_of(shortage),
        }
    }
}

impl vm::FaultHandler for Instance {
    fn fault(&self, vma: &VmaMixedMap, fault: &vm::Fault) -> vm::FaultOutcome {
        let start = Instant::<Monotonic>::now();
        let outcome = match self.map(vma, fault.pgoff, fault.address) {
            Ok(()) => vm::FaultOutcome::Mapped,
            Err(shortage) => outcome_of(shortage),
        };
        let kind = if fault.write {
            Counter::WriteFaults
        } else {
            Counter::ReadFaults
        };
        record_call(start, &[Counter::Faults, kind]);
        outcome
    }

    fn pmd_fault(&self, fault: &vm::Fault, pmd: &vm::PmdFault<'_>) -> vm::FaultOutcome {
        let start = Instant::<Monotonic>::now();
        let outcome = self.map_pmd(fault, pmd);
        record_call(start, &[Counter::HugeFaults]);
        outcome
    }
}
