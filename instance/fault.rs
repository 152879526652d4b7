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
};

use super::Instance;
use crate::{
    budget::BUDGET,
    frame_table::Shortage,
    recorder::{
        Call,
        Path,
        Trace,
        RECORDER, //
    },
    stats::{
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
        // `VM_FAULT_OOM` would retry the fault forever (see `Shortage::NoHugeFrame`):
        // `SIGBUS`, as hugetlbfs gives when it has no huge page for a fault.
        Shortage::NoHugeFrame => {
            STATS.add(Counter::Sigbus, 1);
            STATS.add(Counter::NoHugeFrame, 1);
            vm::FaultOutcome::Sigbus
        }
    }
}

/// Runs `insert` again once when it fails for lack of memory: 7.3 frees empty page tables
/// with only the mmap lock held for reading (`CONFIG_PT_RECLAIM`), so a `MADV_DONTNEED` of
/// the same range may free the PTE table between `vm_insert_page`'s allocating it and its
/// locking it, which it reports as `ENOMEM`. A second failure is a real shortage.
fn retried(insert: impl Fn() -> Result<bool, Shortage>) -> Result<bool, Shortage> {
    match insert() {
        Err(Shortage::Memory) => insert(),
        other => other,
    }
}

/// The result of mapping one page: whether this call mapped it. `EBUSY` means a thread of
/// the same process mapped it first, so the access will succeed all the same.
fn inserted(result: Result) -> Result<bool, Shortage> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e == EBUSY => Ok(false),
        Err(e) if e == ENOMEM => Err(Shortage::Memory),
        Err(_) => Err(Shortage::Refused),
    }
}

impl Instance {
    /// Maps the page of `fault` into `vma`, allocating its frame on the first touch, or with
    /// `return_page` hands it to the core to map; with `prefault` > 1, also maps the pages
    /// after it. `trace` follows what it does.
    fn map(
        &self,
        vma: &VmaMixedMap,
        fault: &vm::Fault<'_>,
        trace: &mut Trace,
    ) -> Result<vm::FaultOutcome, Shortage> {
        let pgoff = fault.pgoff;
        if pgoff >= self.size {
            // mmap refuses such ranges and VM_DONTEXPAND stops growth: only a kernel bug gets
            // here, and it must not get a frame.
            return Err(Shortage::Refused);
        }
        let address = fault.address & PAGE_MASK;
        if self.huge {
            return self
                .map_subpage(vma, fault, address, trace)
                .map(|()| vm::FaultOutcome::Mapped);
        }
        let frame = self.small.frame(&BUDGET, &STATS, pgoff, trace)?;
        let outcome = if self.switches.return_page {
            // The core maps it after this call, or puts it back if a racing thread of the same
            // process mapped the page first (or, for a private write, maps a copy); the record
            // counts the one page this call offered, and its frame.
            trace.path = Path::Core;
            trace.mapped(1);
            fault.give(frame)
        } else {
            self.insert(vma, address, frame, trace)?;
            vm::FaultOutcome::Mapped
        };
        trace.pfn = Some(frame.pfn());
        if self.prefault > 1 {
            trace.path = Path::Batch;
            self.prefault(
                vma,
                pgoff + 1,
                address + PAGE_SIZE,
                self.prefault - 1,
                trace,
            );
        }
        Ok(outcome)
    }

    /// Maps `frame` at `address` with `vm_insert_page` (or, with `insert_pages`, a batch of
    /// one).
    fn insert(
        &self,
        vma: &VmaMixedMap,
        address: usize,
        frame: vm::FrameRef<'_, 0>,
        trace: &mut Trace,
    ) -> Result<(), Shortage> {
        let mapped = retried(|| {
            if self.switches.insert_pages {
                // The switch: the batch call for a batch of one, to measure what it costs.
                let mut batch = vm::PageBatch::new(address);
                batch.push(&frame.page());
                // A page already mapped (a thread of the same process won) is skipped, as
                // `EBUSY` is below; any other refusal is a page table that could not be had.
                match batch.insert(vma) {
                    (n, true) => Ok(n == 1),
                    (_, false) => Err(Shortage::Memory),
                }
            } else {
                inserted(vma.vm_insert_page(address, &frame.page()))
            }
        })?;
        trace.path = if self.switches.insert_pages {
            Path::Pages
        } else {
            Path::Page
        };
        trace.mapped(u32::from(mapped));
        Ok(())
    }

    /// Maps one 4 KiB page of a 2 MiB frame at `address`: the huge instance's path when the
    /// core did not map the whole frame with one PMD (a private mapping, a range the frame
    /// does not fit, THP turned off for the process or the machine).
    ///
    /// In one 2 MiB range, a 4 KiB fault and a PMD fault may run at the same time, each
    /// under the VMA's read lock only, when they disagree about THP (the process's
    /// `PR_SET_THP_DISABLE` or the machine's THP setting changed between them, or soft-dirty
    /// tracking made the core split our leaf). Only this module fills its VMAs' PMD entries,
    /// so [`Instance::pmd_lock`], held from looking at the entry to filling it, orders the
    /// two: a PMD leaf already there is what the retried access will be translated by, and
    /// none can appear while `vm_insert_page` walks down (where 7.3 has
    /// `VM_BUG_ON(pmd_trans_huge(*pmd))`).
    fn map_subpage(
        &self,
        vma: &VmaMixedMap,
        fault: &vm::Fault<'_>,
        address: usize,
        trace: &mut Trace,
    ) -> Result<(), Shortage> {
        let frame = self
            .large
            .frame(&BUDGET, &STATS, fault.pgoff >> vm::HUGE_ORDER, trace)?;
        trace.path = Path::Subpage;
        let pfn = frame.pfn() + (fault.pgoff & vm::HUGE_MASK);
        let _filling = self.pmd_lock.lock();
        if fault.pmd() == Some(vm::PmdState::Huge) {
            // Mapped already, by the PMD leaf that translates the retried access.
            trace.pfn = Some(pfn);
            trace.mapped(0);
            return Ok(());
        }
        let mapped = retried(|| {
            inserted(vm::insert_subpage(
                vma,
                address,
                frame,
                fault.pgoff & vm::HUGE_MASK,
            ))
        })?;
        trace.pfn = Some(pfn);
        trace.mapped(u32::from(mapped));
        Ok(())
    }

    /// Maps up to `count` pages from `pgoff` at `address`, allocating their frames, in batches
    /// of one `vm_insert_pages` call each. Best effort: it stops at the end of the mapping or
    /// of the instance, at the frame cap, or at an allocation failure (those pages then fault
    /// on their own), and skips pages that are mapped already.
    fn prefault(
        &self,
        vma: &VmaMixedMap,
        pgoff: usize,
        address: usize,
        count: usize,
        trace: &mut Trace,
    ) {
        let count = count
            .min(self.size.saturating_sub(pgoff))
            .min((vma.end() - address) >> PAGE_SHIFT);
        let mut batch = vm::PageBatch::new(address);
        let (mut done, mut mapped) = (0, 0);
        while done < count {
            let mut slots = [None; vm::PageBatch::CAPACITY];
            let n = (count - done).min(slots.len());
            trace.mapped_before_more();
            // Best effort: a shortage ends the prefault at the first page it left empty.
            let _ = self.small.fill(
                &BUDGET,
                &STATS,
                pgoff + done,
                &mut slots[..n],
                self.switches.alloc_blocks,
                trace,
            );
            let filled = slots[..n].iter().take_while(|slot| slot.is_some()).count();
            for frame in slots[..filled].iter().flatten() {
                batch.push(&frame.page());
            }
            let (inserted, clean) = batch.insert(vma);
            trace.mapped(inserted as u32);
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
    fn map_pmd(
        &self,
        fault: &vm::Fault<'_>,
        pmd: Option<&vm::PmdFault<'_>>,
        trace: &mut Trace,
    ) -> vm::FaultOutcome {
        let index = fault.pgoff >> vm::HUGE_ORDER;
        // Not at PMD level: another order, or a PMD that does not fit (the shim said so).
        // A private mapping must never get a writable view of the instance's frame: its pages
        // go through 4 KiB faults, where the core copies on write. So does a frame that would
        // reach past the instance's end.
        let Some(pmd) = pmd else {
            trace.path = Path::Fallback;
            return vm::FaultOutcome::Fallback;
        };
        if !self.huge || !fault.shared || (index + 1) << vm::HUGE_ORDER > self.size {
            trace.path = Path::Fallback;
            return vm::FaultOutcome::Fallback;
        }
        let frame = match self.large.frame(&BUDGET, &STATS, index, trace) {
            Ok(frame) => frame,
            Err(shortage) => return outcome_of(shortage),
        };
        // See `map_subpage`: with this held, the entry stays what it is read to be until it
        // is filled, but for a zap that empties it.
        let _filling = self.pmd_lock.lock();
        let outcome = match fault.pmd() {
            // Empty: the frame, with one PMD.
            Some(vm::PmdState::None) => pmd.insert(frame, fault.write),
            // Our leaf, and this is a write to it while read-only (soft-dirty tracking
            // write-protected it): the same frame again, made writable and dirty.
            Some(vm::PmdState::Huge) => pmd.insert(frame, fault.write),
            // A 4 KiB fault put a page table there: its pages are mapped one by one now.
            Some(vm::PmdState::Table) | None => {
                trace.path = Path::Fallback;
                return vm::FaultOutcome::Fallback;
            }
        };
        trace.path = Path::Pmd;
        trace.pfn = Some(frame.pfn());
        let mapped = matches!(outcome, vm::FaultOutcome::Mapped);
        trace.mapped(if mapped { 1 << vm::HUGE_ORDER } else { 0 });
        outcome
    }
}

impl vm::FaultHandler for Instance {
    fn fault(&self, vma: &VmaMixedMap, fault: &vm::Fault<'_>) -> vm::FaultOutcome {
        let timed = STATS.timed(self.switches.latency);
        let mut trace = Trace::begin(RECORDER.on(), timed);
        let outcome = self.map(vma, fault, &mut trace).unwrap_or_else(outcome_of);
        let kind = if fault.write {
            Counter::WriteFaults
        } else {
            Counter::ReadFaults
        };
        STATS.record_call(&[Counter::Faults, kind], trace.finish());
        RECORDER.record(&trace, Call::Fault, &outcome, self.id, fault);
        outcome
    }

    fn pmd_fault(&self, fault: &vm::Fault<'_>, pmd: Option<&vm::PmdFault<'_>>) -> vm::FaultOutcome {
        let timed = STATS.timed(self.switches.latency);
        let mut trace = Trace::begin(RECORDER.on(), timed);
        let outcome = self.map_pmd(fault, pmd, &mut trace);
        let calls = [Counter::HugeFaults, Counter::HugeFallbacks];
        let fell_back = matches!(outcome, vm::FaultOutcome::Fallback);
        STATS.record_call(&calls[..1 + usize::from(fell_back)], trace.finish());
        let call = if fault.order == vm::HUGE_ORDER {
            Call::Pmd
        } else {
            Call::Pud
        };
        RECORDER.record(&trace, call, &outcome, self.id, fault);
        outcome
    }
}
