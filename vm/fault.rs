// SPDX-License-Identifier: GPL-2.0

//! The fault hooks: a VMA's `vm_operations_struct`, and what the core passes to them.
//!
//! [`install`] makes a [`FaultHandler`] the owner of a mapping's faults. The C entry points
//! in [`VmOps`] unpack the core's `struct vm_fault` into a [`Fault`] and call the handler;
//! its [`FaultOutcome`] goes back as a `vm_fault_t`.
//!
//! Calling context: the entry points run on the page-fault path, in the faulting task's
//! context, with the mmap lock or the VMA's lock held for reading by the core; they may
//! sleep.

use core::{
    marker::PhantomData,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    mm::virt::{
        VmaMixedMap,
        VmaRef, //
    },
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

use super::{
    pgtable::{
        Entry,
        PmdState, //
    },
    FrameRef,
    HUGE_MASK,
    HUGE_ORDER, //
};

/// The fault flags the flight recorder shows, each by its letter: the access (write,
/// instruction fetch), who asked (user, remote: `get_user_pages` for another mm), and under
/// which lock and on which try the core calls (the per-VMA lock, a retry, killable).
pub(crate) const FAULT_FLAG_LETTERS: [(u32, u8); 7] = [
    (bindings::fault_flag_FAULT_FLAG_WRITE, b'W'),
    (bindings::fault_flag_FAULT_FLAG_USER, b'U'),
    (bindings::fault_flag_FAULT_FLAG_VMA_LOCK, b'V'),
    (bindings::fault_flag_FAULT_FLAG_TRIED, b'T'),
    (bindings::fault_flag_FAULT_FLAG_REMOTE, b'R'),
    (bindings::fault_flag_FAULT_FLAG_INSTRUCTION, b'I'),
    (bindings::fault_flag_FAULT_FLAG_KILLABLE, b'K'),
];

/// What the core asked for in one fault.
///
/// # Invariants
///
/// `pmd`, when set, points to the PMD entry that covers `address` in the faulting process's
/// page tables, in a PMD table that stays allocated for `'a`. The core holds the faulting
/// VMA's lock or the mmap lock for reading during the fault, and a PMD table is freed only by
/// `free_pgtables` for a range that no VMA covers any more: `munmap` may do that after
/// downgrading the mmap lock, but only for tables wholly inside the gap it unmapped, never for
/// one under a VMA that is still there and locked.
///
/// `vmf` is the core's `struct vm_fault` of the call, valid for `'a`; the core reads its
/// `page` only after the call returns.
pub(crate) struct Fault<'a> {
    /// Page offset in the file of the faulting page.
    pub(crate) pgoff: usize,
    /// The faulting user address.
    pub(crate) address: usize,
    /// Whether the access was a write.
    pub(crate) write: bool,
    /// Whether the mapping is shared (`MAP_SHARED`) rather than private.
    pub(crate) shared: bool,
    /// The core's fault flags (`vmf->flags`, `enum fault_flag`), for the flight recorder.
    pub(crate) flags: u32,
    /// The order of the mapping the core asks for: 0 for `fault`, the PMD's or the PUD's
    /// for `huge_fault`.
    pub(crate) order: u32,
    /// The core's `vmf->pmd`: set for a 4 KiB fault and a PMD-level one, not for a PUD-level
    /// one, which the core asks for before it has looked up a PMD (`vmf->pmd` is NULL then).
    pmd: Option<NonNull<bindings::pmd_t>>,
    /// The core's `struct vm_fault`, for [`Fault::give`] to set its `page`.
    vmf: *mut bindings::vm_fault,
    _fault: PhantomData<&'a bindings::vm_fault>,
}

impl Fault<'_> {
    /// What the PMD entry of the faulting address holds now.
    ///
    /// Read once, without the page-table lock, as the core's own `pmdp_get_lockless` does:
    /// the entry may change right after (another thread's fault, a zap), so this is a hint,
    /// and whatever maps a page re-checks the entry under the page-table lock.
    /// `None` for a PUD-level call, which has no PMD entry yet.
    pub(crate) fn pmd(&self) -> Option<PmdState> {
        let pmd = self.pmd?;
        // SAFETY: by the type invariant a set `pmd` points to a live PMD entry; a volatile
        // read of the aligned 64-bit word is a single load that cannot tear (`READ_ONCE`).
        let raw = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*pmd.as_ptr()).pmd)) };
        Some(PmdState::of(Entry(raw as u64)))
    }

    /// Hands `page` to the core to map: the `fault` of a file's page cache. The core locks
    /// the page, maps it with one entry in the page table it walked to before calling
    /// (`finish_fault`: no second walk from the top, as `vm_insert_page` makes), on a shared
    /// write marks it dirty and updates the file's time (`fault_dirty_shared_page`), and
    /// unlocks it. For a write to a private mapping it maps a copy instead (`do_cow_fault`).
    ///
    /// The mapping takes over one reference on the page, which this adds. The core puts it
    /// back when it does not map the page: a racing thread mapped it first, the mapping is a
    /// private one written to (the copy is mapped), or mapping failed (no memory for a page
    /// table, a dying mm). The zap drops it when the entry goes. For an order-0 frame only
    /// (the type says so): the core would map a larger folio whole, with PTEs or a PMD of its
    /// own choosing. And from a `fault` call only: the core reads no page after a
    /// `huge_fault`, which gets [`FaultOutcome::Fallback`] here.
    ///
    /// The result is the only way to a [`FaultOutcome::Given`]: the core dereferences
    /// `vmf->page` when `fault` returns 0, so that outcome must mean the page is set.
    #[must_use]
    pub(crate) fn give(&self, page: FrameRef<'_, 0>) -> FaultOutcome {
        if self.order != 0 {
            return FaultOutcome::Fallback;
        }
        let page = page.as_ptr();
        // SAFETY: `page` is a live order-0 page whose owner holds a reference for `'_`, so
        // its count is at least 1 and cannot reach 0 during this call. `_refcount` is an
        // `atomic_t` that the kernel only ever accesses atomically (`page_ref.h`), so an
        // atomic add on it races with nothing. This is the C `page_ref_inc`, without its
        // tracepoint (`CONFIG_DEBUG_PAGE_REF`), which bindings cannot call (an inline).
        let count = unsafe { Atomic::from_ptr(&raw mut (*page)._refcount.counter) };
        count.add(1, Relaxed);
        // SAFETY: `vmf` is the core's fault for this call, which the core passed to `fault`
        // for it to set `page`, and reads only after `fault` returns. No reference to `*vmf`
        // is alive: `unpack` copied what it needed out of one that ended there.
        unsafe { (*self.vmf).page = page };
        FaultOutcome::Given(PageGiven(()))
    }
}

/// Proof that [`Fault::give`] set the fault's page: its field is private to this file.
pub(crate) struct PageGiven(());

/// How a fault ended, as the core's `vm_fault_t` knows it.
pub(crate) enum FaultOutcome {
    /// The page-table entry is in place: `VM_FAULT_NOPAGE`, the access is retried.
    Mapped,
    /// No memory: `VM_FAULT_OOM`, the OOM killer's business.
    Oom,
    /// The page cannot exist: `VM_FAULT_SIGBUS`.
    Sigbus,
    /// Not at this level: `VM_FAULT_FALLBACK`, the core retries with 4 KiB faults.
    Fallback,
    /// The page is in `vmf->page`, for the core to lock and map ([`Fault::give`]): 0.
    Given(PageGiven),
}

impl FaultOutcome {
    fn into_raw(self) -> bindings::vm_fault_t {
        (match self {
            Self::Mapped => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            Self::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
            Self::Sigbus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
            Self::Fallback => bindings::vm_fault_reason_VM_FAULT_FALLBACK,
            Self::Given(_) => 0,
        }) as bindings::vm_fault_t
    }

    fn from_raw(raw: bindings::vm_fault_t) -> Self {
        let has = |reason: bindings::vm_fault_reason| raw & reason as bindings::vm_fault_t != 0;
        if has(bindings::vm_fault_reason_VM_FAULT_NOPAGE) {
            Self::Mapped
        } else if has(bindings::vm_fault_reason_VM_FAULT_OOM) {
            Self::Oom
        } else if has(bindings::vm_fault_reason_VM_FAULT_FALLBACK) {
            Self::Fallback
        } else {
            Self::Sigbus
        }
    }
}

/// The owner of a mapping's pages: what a VMA's `vm_private_data` points to.
pub(crate) trait FaultHandler: Sync + Sized {
    /// Handles a 4 KiB fault of `vma`, called with the mmap lock or the VMA's lock held
    /// for reading. Must not take the mmap lock.
    fn fault(&self, vma: &VmaMixedMap, fault: &Fault<'_>) -> FaultOutcome;

    /// Handles a fault that may be served at PMD level, on mappings installed with `huge`;
    /// the same locking as `fault`. Every call of the core's `huge_fault` comes here: `pmd` is
    /// `None` when the fault cannot be served with one PMD (the core asked for another order,
    /// such as a PUD, or the 2 MiB around the fault do not lie inside the VMA or do not map
    /// one whole frame; the shim checks), and the handler must then fall back.
    fn pmd_fault(&self, fault: &Fault<'_>, pmd: Option<&PmdFault<'_>>) -> FaultOutcome;
}

/// Which fault operations a mapping gets.
#[derive(Clone, Copy)]
pub(crate) struct Ops {
    /// PMD-level faults too (`huge_fault`), and the mapping marked as wanting huge pages (as
    /// `MADV_HUGEPAGE` would).
    pub(crate) huge: bool,
    /// A `map_pages` hook (see [`VmOps::map_pages`]).
    pub(crate) map_pages: bool,
}

/// Makes `handler` the owner of `vma`'s faults, with the operations `ops` says.
///
/// # Safety
///
/// `handler` must stay valid for as long as `vma`, or any VMA copied or split from it,
/// exists.
pub(crate) unsafe fn install<T: FaultHandler>(vma: &VmaMixedMap, handler: &T, ops: Ops) {
    let raw = vma.as_ptr();
    // SAFETY: `install` is called from the mmap hook (it takes the `VmaMixedMap` that
    // `VmaNew::set_mixedmap` returned), while the VMA is not yet visible to other threads,
    // so writing these fields does not race. `VM_HUGEPAGE` is a valid flag for any VMA.
    // The caller guarantees that `handler` outlives every VMA that will carry this pointer.
    unsafe {
        (*raw).vm_ops = VmOps::<T>::table(ops);
        (*raw).vm_private_data = core::ptr::from_ref(handler).cast_mut().cast();
        if ops.huge {
            (*raw).__bindgen_anon_2.vm_flags |= bindings::VM_HUGEPAGE;
        }
    }
}

/// Whether `vma`'s faults go to a `T`: whether it carries the `vm_operations_struct` that
/// [`install`] gives it. (Binder's lesson: a VMA found by address may be anyone's.)
pub(crate) fn handled_by<T: FaultHandler>(vma: &VmaRef) -> bool {
    // SAFETY: `VmaRef` guarantees a valid VMA with its lock or the mmap lock held, so its
    // `vm_ops` is stable for this read.
    let ops = unsafe { (*vma.as_ptr()).vm_ops };
    [false, true].iter().any(|&huge| {
        [false, true]
            .iter()
            .any(|&map_pages| core::ptr::eq(ops, VmOps::<T>::table(Ops { huge, map_pages })))
    })
}

/// The `vm_operations_struct`s of a [`FaultHandler`].
struct VmOps<T>(PhantomData<T>);

impl<T: FaultHandler> VmOps<T> {
    /// The 4 KiB fault, without `map_pages` (the `map_pages=0` switch).
    const BARE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        fault: Some(Self::fault),
        ..pin_init::zeroed()
    };

    /// What a mapping gets by default.
    const TABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        map_pages: Some(Self::map_pages),
        ..Self::BARE
    };

    const HUGE_BARE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        huge_fault: Some(Self::huge_fault),
        ..Self::BARE
    };

    const HUGE_TABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        huge_fault: Some(Self::huge_fault),
        ..Self::TABLE
    };

    /// The table a VMA with `ops` gets.
    ///
    /// A constant has no address of its own: each `&TABLE` is promoted to a static of its
    /// own, which need not be the same one at two places. Every user takes the address here,
    /// at one place in one function that is never inlined, so that [`handled_by`] can tell
    /// our VMAs by the pointer [`install`] wrote. (That holds because the kernel builds Rust
    /// with one codegen unit; nothing unsafe depends on it, only the walk's `WALK_OUR_VMA`.)
    #[inline(never)]
    fn table(ops: Ops) -> &'static bindings::vm_operations_struct {
        match (ops.huge, ops.map_pages) {
            (false, false) => &Self::BARE,
            (false, true) => &Self::TABLE,
            (true, false) => &Self::HUGE_BARE,
            (true, true) => &Self::HUGE_TABLE,
        }
    }

    /// The handler and the fault of `vmf`.
    ///
    /// # Safety
    ///
    /// `vmf` must be the valid fault of a VMA whose ops are one of this type's tables, and
    /// the returned references are used only during that fault.
    /// `order` is what the core asks for: 0 from `fault`, the PMD's or the PUD's order from
    /// `huge_fault`.
    unsafe fn unpack<'a>(
        vmf: *mut bindings::vm_fault,
        order: u32,
    ) -> (&'a T, &'a VmaMixedMap, Fault<'a>) {
        // The core sets `vmf->pmd` for a 4 KiB fault and a PMD-level one, not for a PUD-level
        // one.
        let with_pmd = order == 0 || order == HUGE_ORDER;
        let vmf_ptr = vmf;
        // SAFETY: the caller passes a valid `vmf` that lives for the whole fault, and its `vma`
        // is the faulting VMA, valid and locked (mmap or VMA read lock) for that long, so its
        // flags may be read.
        let (vma, fault) = unsafe {
            let vmf = &*vmf;
            let args = &vmf.__bindgen_anon_1;
            let shared = (*args.vma).__bindgen_anon_2.vm_flags & bindings::VM_SHARED;
            (
                args.vma,
                Fault {
                    pgoff: args.pgoff,
                    address: args.address,
                    write: vmf.flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0,
                    shared: shared != 0,
                    flags: vmf.flags,
                    order,
                    // INVARIANT: the core sets `vmf->pmd` to the faulting address's PMD entry
                    // (allocating the PMD table if need be) before it calls `fault` or a
                    // PMD-level `huge_fault`, and holds the mmap or VMA lock (see above).
                    pmd: if with_pmd {
                        NonNull::new(vmf.pmd)
                    } else {
                        None
                    },
                    // INVARIANT: the core's fault of this call, valid for all of it.
                    vmf: vmf_ptr,
                    _fault: PhantomData,
                },
            )
        };
        // SAFETY: the VMA carries our ops, which only `install::<T>` sets, together with
        // `vm_private_data` pointing to a `T` that `install`'s caller keeps alive while the
        // VMA exists. fork and split copy both fields together.
        let handler = unsafe { &*(*vma).vm_private_data.cast::<T>() };
        // SAFETY: the core holds the mmap read lock or the per-VMA read lock for the whole
        // fault, and `VM_MIXEDMAP` was set by `VmaNew::set_mixedmap` before `install` and is
        // never cleared. (`VmaMixedMap::from_raw` names the mmap read lock; its type's
        // invariant, and `VmaRef`'s, accept the VMA's own read lock too, which is what the
        // core holds for a fault it takes under the per-VMA lock: the VMA cannot change or go
        // away either way.)
        let vma = unsafe { VmaMixedMap::from_raw(vma) };
        (handler, vma, fault)
    }

    /// # Safety
    ///
    /// Called by the core's fault path with a valid `vmf` whose VMA carries these ops.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: as this function's own requirements.
        let (handler, vma, fault) = unsafe { Self::unpack(vmf, 0) };
        match handler.fault(vma, &fault) {
            // A 4 KiB fault has nothing smaller to fall back to: x86's fault path `BUG()`s
            // on `VM_FAULT_FALLBACK` from here.
            FaultOutcome::Fallback => FaultOutcome::Sigbus,
            outcome => outcome,
        }
        .into_raw()
    }

    /// # Safety
    ///
    /// Called by the core's fault path with a valid `vmf` whose VMA carries these ops.
    unsafe extern "C" fn huge_fault(
        vmf: *mut bindings::vm_fault,
        order: kernel::ffi::c_uint,
    ) -> bindings::vm_fault_t {
        // SAFETY: as this function's own requirements.
        let (handler, vma, fault) = unsafe { Self::unpack(vmf, order) };
        // The core does not check, for a file VMA, that a PMD fits (the driver must, as
        // DAX does): the whole 2 MiB must lie inside the VMA, and map a whole frame.
        let pmd = (order == HUGE_ORDER && pmd_fits(vma, &fault)).then_some(PmdFault {
            vmf,
            _fault: PhantomData,
        });
        match handler.pmd_fault(&fault, pmd.as_ref()) {
            // Nothing to give at this level (`give` refuses it): the core reads no page.
            FaultOutcome::Given(_) => FaultOutcome::Fallback,
            outcome => outcome,
        }
        .into_raw()
    }

    /// Fault-around: maps pages that are "readily available" near a read fault, under RCU.
    ///
    /// Ours maps none: `vm_insert_page` may allocate a page table and sleep, which RCU
    /// forbids, so every page still goes through `fault` and is counted there. Having this
    /// operation at all is what tells the core (`vmf_can_call_fault` in mm/memory.c) that
    /// our `fault` does not need the mmap lock. Without it, every fault taken under the
    /// per-VMA lock would be refused with `VM_FAULT_RETRY` and redone under the mmap lock:
    /// twice the work, and faults of different threads would serialise.
    ///
    /// # Safety
    ///
    /// Called by the core; nothing is dereferenced.
    unsafe extern "C" fn map_pages(
        _vmf: *mut bindings::vm_fault,
        _start_pgoff: kernel::ffi::c_ulong,
        _end_pgoff: kernel::ffi::c_ulong,
    ) -> bindings::vm_fault_t {
        0
    }
}

/// Whether the 2 MiB around `fault` lies inside `vma` and starts at a page offset that is
/// a multiple of 512, so one PMD maps exactly one whole frame.
fn pmd_fits(vma: &VmaMixedMap, fault: &Fault<'_>) -> bool {
    let size = PAGE_SIZE << HUGE_ORDER;
    let start = fault.address & !(size - 1);
    // The page offset of `start`; none when the mapping begins past it in the file.
    let first = fault
        .pgoff
        .checked_sub((fault.address - start) >> PAGE_SHIFT);
    start >= vma.start()
        && start + size <= vma.end()
        && first.is_some_and(|first| first & HUGE_MASK == 0)
}

/// A fault being served at PMD level.
///
/// # Invariants
///
/// `vmf` is the valid fault of a VMA with `VM_MIXEDMAP` set, for the duration of `'a`,
/// with the mmap or VMA lock held.
pub(crate) struct PmdFault<'a> {
    vmf: *mut bindings::vm_fault,
    _fault: PhantomData<&'a mut bindings::vm_fault>,
}

impl PmdFault<'_> {
    /// Maps all of `frame` with one PMD entry; with `write`, writable and dirty (a write
    /// fault), also when the entry is there already.
    ///
    /// The entry is a special (PFN) one that holds no reference on the frame, as 7.3's
    /// PMD split and zap expect for a `VM_MIXEDMAP` VMA: a folio-backed PMD would be
    /// split there without dropping its reference, leaking the frame. Our frames outlive
    /// every mapping anyway: a mapping holds the file, and the file holds the frames.
    ///
    /// The caller must know the entry to be empty or `frame`'s own leaf, and keep it so but
    /// for a zap (the handler's `pmd_lock`): with `write`, `insert_pmd` in mm/huge_memory.c
    /// warns when it finds any other entry under the PMD lock, such as a page table.
    pub(crate) fn insert(&self, frame: FrameRef<'_, HUGE_ORDER>, write: bool) -> FaultOutcome {
        // SAFETY: by the type invariant `vmf` is valid with the right lock held and
        // `VM_MIXEDMAP` set, which `vmf_insert_pfn_pmd` requires. The PFN is that of a
        // live, PMD-aligned 2 MiB frame that outlives the mapping (see above).
        let raw = unsafe { bindings::vmf_insert_pfn_pmd(self.vmf, frame.pfn(), write) };
        FaultOutcome::from_raw(raw)
    }
}
