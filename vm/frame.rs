// SPDX-License-Identifier: GPL-2.0

//! Frames: zeroed pages the module owns, stored in the frame table as bare pointers.
//!
//! Calling context: allocation may sleep (process context); everything else may run anywhere.

use core::{
    marker::PhantomData,
    ptr::NonNull, //
};
use kernel::{
    alloc::AllocError,
    bindings,
    ffi::c_void,
    page::BorrowedPage,
    prelude::*,
    types::ForeignOwnable, //
};

/// An owned, zeroed frame of `1 << ORDER` pages (a compound page when `ORDER` > 0),
/// stored in the frame table as its bare `struct page` pointer, so a frame costs no
/// allocation besides its pages.
///
/// # Invariants
///
/// `page` points to the head of an order-`ORDER` allocation from `alloc_pages`, of which
/// `Frame` owns one reference.
pub(crate) struct Frame<const ORDER: u32> {
    page: NonNull<bindings::page>,
}

// SAFETY: a page reference may be dropped and used from any thread.
unsafe impl<const ORDER: u32> Send for Frame<ORDER> {}
// SAFETY: `Frame` has no interior mutability; shared access only reads the pointer.
unsafe impl<const ORDER: u32> Sync for Frame<ORDER> {}

impl<const ORDER: u32> Frame<ORDER> {
    /// Allocates a zeroed frame, charged to the current task's memory cgroup
    /// (`__GFP_ACCOUNT`, as kernel memory): for a fault, the task that touches the page.
    /// (Anonymous memory is charged to the memory cgroup of the mm's owner instead; the two
    /// differ only for a remote access such as `process_vm_writev` or `/proc/<pid>/mem`, where
    /// ours goes to the accessing task.) A huge frame is one compound page, and its allocation does not warn
    /// when no free 2 MiB block is left: the fault reports that.
    pub(crate) fn alloc_zeroed() -> Result<Self, AllocError> {
        let mut flags = bindings::GFP_KERNEL_ACCOUNT | bindings::__GFP_ZERO;
        if ORDER > 0 {
            flags |= (1 << bindings::___GFP_COMP_BIT) | bindings::__GFP_NOWARN;
        }
        // SAFETY: `alloc_pages` may sleep with these flags; we are in process context.
        let page = unsafe { bindings::alloc_pages(flags, ORDER) };
        // INVARIANT: a non-null result is a new order-`ORDER` allocation with one
        // reference, ours.
        Ok(Self {
            page: NonNull::new(page).ok_or(AllocError)?,
        })
    }
}

impl<const ORDER: u32> Drop for Frame<ORDER> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one reference to an order-`ORDER`
        // allocation. Mappings hold references of their own (or, at PMD level, none but
        // they are gone before us), so the pages are freed when the last one is dropped.
        unsafe { bindings::__free_pages(self.page.as_ptr(), ORDER) };
    }
}

/// The memory model [`FrameRef::pfn`] is written for. A wrong PFN would go into a PMD entry and
/// map arbitrary physical memory writable, so another model must fail the build, not the run.
#[cfg(not(all(CONFIG_X86_64, CONFIG_SPARSEMEM_VMEMMAP)))]
compile_error!("rust_pagefault_demo computes page_to_pfn for x86-64 SPARSEMEM_VMEMMAP only");

/// A borrowed frame: its head page, valid for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct FrameRef<'a, const ORDER: u32> {
    page: NonNull<bindings::page>,
    _frame: PhantomData<&'a Frame<ORDER>>,
}

impl<'a, const ORDER: u32> FrameRef<'a, ORDER> {
    /// The frame's head page, for the shim's bindings; valid for `'a`.
    pub(super) fn as_ptr(self) -> *mut bindings::page {
        self.page.as_ptr()
    }

    /// The page frame number of the first page: what `/proc/<pid>/pagemap` reports for its
    /// mappings, and what a PMD entry for the frame holds.
    ///
    /// The C `page_to_pfn` is an inline the bindings cannot call. With the x86-64
    /// `SPARSEMEM_VMEMMAP` memory model, which the build insists on (a `compile_error!` above),
    /// it is exact arithmetic: `struct page`s form one virtual array starting at
    /// `vmemmap_base`, indexed by PFN.
    pub(crate) fn pfn(self) -> usize {
        // SAFETY: `vmemmap_base` is set during early boot and read-only afterwards.
        let base = unsafe { bindings::vmemmap_base };
        (self.page.as_ptr() as usize - base) / core::mem::size_of::<bindings::page>()
    }
}

impl<'a> FrameRef<'a, 0> {
    /// The frame as a page, for the kernel crate's page APIs.
    pub(crate) fn page(self) -> BorrowedPage<'a> {
        // SAFETY: an order-0 frame is a valid page, alive for `'a` by the type's contract.
        unsafe { BorrowedPage::from_raw(self.page) }
    }
}

// SAFETY: `into_foreign` returns the `struct page` pointer, which is aligned to
// `FOREIGN_ALIGN` because it points to a `struct page`. `from_foreign` and the borrows
// rebuild the pointer exactly as `into_foreign` gave it.
unsafe impl<const ORDER: u32> ForeignOwnable for Frame<ORDER> {
    const FOREIGN_ALIGN: usize = core::mem::align_of::<bindings::page>();
    type Borrowed<'a> = FrameRef<'a, ORDER>;
    type BorrowedMut<'a> = FrameRef<'a, ORDER>;

    fn into_foreign(self) -> *mut c_void {
        let page = self.page;
        // The reference `self` owned now belongs to the foreign pointer.
        core::mem::forget(self);
        page.as_ptr().cast()
    }

    unsafe fn from_foreign(ptr: *mut c_void) -> Self {
        // SAFETY: the caller passes a pointer from `into_foreign`: non-null, and owning the
        // reference that the forgotten `Frame` owned.
        let page = unsafe { NonNull::new_unchecked(ptr.cast()) };
        // INVARIANT: ownership of that reference moves back into the `Frame`.
        Self { page }
    }

    unsafe fn borrow<'a>(ptr: *mut c_void) -> FrameRef<'a, ORDER> {
        FrameRef {
            // SAFETY: the caller passes a pointer from `into_foreign`, so it is non-null,
            // and guarantees that its `Frame` is not reclaimed during `'a`.
            page: unsafe { NonNull::new_unchecked(ptr.cast()) },
            _frame: PhantomData,
        }
    }

    unsafe fn borrow_mut<'a>(ptr: *mut c_void) -> FrameRef<'a, ORDER> {
        // SAFETY: the same requirements as `borrow`, which the caller upholds.
        unsafe { Self::borrow(ptr) }
    }
}

#[kunit_tests(rust_pagefault_demo_frame)]
mod tests {
    use super::*;

    /// `pfn` against the direct map: on x86-64 every page has an address there, at
    /// `page_offset_base` plus its physical address, and `kmap_local_page` returns it.
    fn pfn_matches_the_direct_map<const ORDER: u32>() -> Result {
        let ptr = Frame::<ORDER>::alloc_zeroed()?.into_foreign();
        // SAFETY: `ptr` comes from `into_foreign` just above and is given back below.
        let frame = unsafe { Frame::<ORDER>::borrow(ptr) };
        // SAFETY: `frame` is a live page; the mapping is undone right below, on this CPU.
        let va = unsafe { bindings::kmap_local_page(frame.as_ptr()) };
        // SAFETY: `page_offset_base` is set during early boot and read-only afterwards.
        let base = unsafe { bindings::page_offset_base };
        let direct = (va as usize - base) >> kernel::page::PAGE_SHIFT;
        // SAFETY: `va` was mapped just above by `kmap_local_page`.
        unsafe { bindings::kunmap_local(va) };
        assert_eq!(frame.pfn(), direct);
        // SAFETY: `ptr` comes from `into_foreign` above; `frame` is not used any more.
        drop(unsafe { Frame::<ORDER>::from_foreign(ptr) });
        Ok(())
    }

    #[test]
    fn pfn_of_a_page_matches_the_direct_map() -> Result {
        pfn_matches_the_direct_map::<0>()
    }

    #[test]
    fn pfn_of_a_huge_frame_matches_the_direct_map() -> Result {
        pfn_matches_the_direct_map::<{ super::super::HUGE_ORDER }>()
    }
}
