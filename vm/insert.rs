// SPDX-License-Identifier: GPL-2.0

//! Putting pages into a mapping's page table: one page, or a batch of them with one call.
//!
//! Calling context: the page-fault path (the mmap lock or the VMA's lock held for reading, as
//! a [`VmaMixedMap`] guarantees); may sleep to allocate a page table.

use core::marker::PhantomData;
use kernel::{
    bindings,
    mm::virt::VmaMixedMap,
    page::{
        BorrowedPage,
        Page,
        PAGE_SIZE, //
    },
    prelude::*, //
};

use super::FrameRef;

/// Maps page `index` of `frame` at `address` (for order 0, the frame itself).
pub(crate) fn insert_subpage<const ORDER: u32>(
    vma: &VmaMixedMap,
    address: usize,
    frame: FrameRef<'_, ORDER>,
    index: usize,
) -> Result {
    if index >= 1 << ORDER {
        return Err(EINVAL);
    }
    // SAFETY: `vma` has `VM_MIXEDMAP` and its lock held (the invariants of `VmaMixedMap`).
    // The page is page `index` of a live frame (checked above to lie inside it): an
    // ordinary, non-anonymous page, which `vm_insert_page` accepts and takes its own
    // reference on, as it does for the pages of a page-cache folio.
    let ret = unsafe { bindings::vm_insert_page(vma.as_ptr(), address, frame.as_ptr().add(index)) };
    kernel::error::to_result(ret)
}

/// Pages to map at consecutive addresses with one `vm_insert_pages` call, which takes the
/// page-table lock once for the whole batch instead of once per page.
///
/// # Invariants
///
/// `pages[..len]` point to order-0 pages that stay valid for `'a`.
pub(crate) struct PageBatch<'a> {
    address: usize,
    len: usize,
    pages: [*mut bindings::page; PageBatch::CAPACITY],
    _pages: PhantomData<&'a Page>,
}

impl<'a> PageBatch<'a> {
    pub(crate) const CAPACITY: usize = 32;

    /// An empty batch whose first page goes to `address`.
    pub(crate) fn new(address: usize) -> Self {
        // INVARIANT: no pages yet.
        Self {
            address,
            len: 0,
            pages: [core::ptr::null_mut(); PageBatch::CAPACITY],
            _pages: PhantomData,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == Self::CAPACITY
    }

    /// Adds the page for the next address; a full batch ignores it.
    pub(crate) fn push(&mut self, page: &BorrowedPage<'a>) {
        if self.is_full() {
            return;
        }
        // INVARIANT: a `BorrowedPage<'a>` is an order-0 page valid for `'a`.
        self.pages[self.len] = page.as_ptr();
        self.len += 1;
    }

    /// Maps the batch into `vma`, skipping pages whose page-table entry is already there
    /// (`EBUSY`) and stopping at any other error. Returns how many pages it mapped and
    /// whether it met no other error; the batch is then empty and its address moved past
    /// it.
    pub(crate) fn insert(&mut self, vma: &VmaMixedMap) -> (usize, bool) {
        let (mut start, mut mapped, mut clean) = (0, 0, true);
        while start < self.len {
            let mut left = self.len - start;
            // SAFETY: `pages[start..len]` are valid order-0 pages (type invariant), and
            // `vm_insert_pages` reads `left` of them and writes back `left`. `vma` has
            // `VM_MIXEDMAP` set and its lock held (the invariants of `VmaMixedMap`), which
            // is what `vm_insert_pages` requires, as `vm_insert_page` does.
            let ret = unsafe {
                bindings::vm_insert_pages(
                    vma.as_ptr(),
                    self.address + start * PAGE_SIZE,
                    self.pages[start..].as_mut_ptr(),
                    &mut left,
                )
            };
            // `left` counts the pages not mapped, starting with the one that failed.
            let done = self.len - start - left;
            mapped += done;
            if ret != -(bindings::EBUSY as i32) {
                clean = ret == 0;
                break;
            }
            start += done + 1;
        }
        self.address += self.len * PAGE_SIZE;
        self.len = 0;
        (mapped, clean)
    }
}
