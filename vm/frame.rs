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
/// `page` points to the head of an order-`ORDER` allocation from `alloc_pages` (for `ORDER`
/// 0, possibly one page of a block that `split_page` split), of which `Frame` owns one
/// reference.
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

/// The largest block [`FrameSource`] asks for: `PAGE_ALLOC_COSTLY_ORDER` (8 pages), the
/// largest order the page allocator keeps on its per-CPU free lists for every kind of
/// allocation (the PMD order is the only larger one, with THP), so a block is usually taken
/// from this CPU's list, without the zone's lock, as a single page is.
const BLOCK_ORDER: u32 = super::COSTLY_ORDER;

/// Where a prefault batch's new frames come from: one allocation each, or, for 4 KiB frames
/// with `blocks`, blocks of up to [`BLOCK_ORDER`] pages from one allocation, split into
/// independent pages (`split_page`), so the allocator's and the memory cgroup's work per call
/// (finding the pages, charging them, the allocation hooks) is done once per block. Only the
/// zeroing stays per page. The pages of a block not handed out are freed when the source drops.
///
/// Charging is unchanged: a block is charged as one allocation of its pages to the current
/// task's memory cgroup, and `split_page` gives each page its share, so each is uncharged on
/// its own when it is freed. A block is only taken if it can be had at once: without direct
/// reclaim or compaction, and without reclaim in the memory cgroup when it is at its limit
/// (and so never the OOM killer). One that cannot (no free block of that order, or not within
/// `memory.max`) is tried smaller, and the source asks for nothing larger afterwards, down to
/// single pages, which the allocator tries as hard as [`Frame::alloc_zeroed`] always does.
///
/// # Invariants
///
/// `left` pages starting at `next` are order-0 pages, split from a block, of which the source
/// owns one reference each, and `wanted` is the number of frames still to be handed out after
/// those. `max_order` is at most [`BLOCK_ORDER`], and 0 unless blocks are wanted and the
/// frames are 4 KiB.
pub(crate) struct FrameSource<const ORDER: u32> {
    next: *mut bindings::page,
    left: usize,
    wanted: usize,
    max_order: u32,
}

impl<const ORDER: u32> FrameSource<ORDER> {
    /// A source for `wanted` frames, in blocks if `blocks` and the frames are 4 KiB.
    pub(crate) fn new(wanted: usize, blocks: bool) -> Self {
        // INVARIANT: no block yet; blocks only of 4 KiB pages.
        Self {
            next: core::ptr::null_mut(),
            left: 0,
            wanted,
            max_order: if blocks && ORDER == 0 { BLOCK_ORDER } else { 0 },
        }
    }

    /// Allocates a block for the frames still wanted, which must be two or more: the largest
    /// power of two not above their number and `max_order`, or a smaller one if that cannot
    /// be had (and then `max_order` comes down to it). Returns whether it got one.
    fn refill(&mut self) -> bool {
        debug_assert!(self.wanted > 1);
        let mut order = self.wanted.ilog2().min(self.max_order);
        while order > 0 {
            // Tried once, quietly, without direct reclaim: a block is worth having only if it
            // is there. Single pages are the fallback, with the allocator's usual retries.
            let flags = (bindings::GFP_KERNEL_ACCOUNT
                & !(1 << bindings::___GFP_DIRECT_RECLAIM_BIT))
                | bindings::__GFP_ZERO
                | bindings::__GFP_NOWARN
                | (1 << bindings::___GFP_NORETRY_BIT);
            // SAFETY: `alloc_pages` does not sleep with these flags, and may be called here,
            // in process context.
            let page = unsafe { bindings::alloc_pages(flags, order) };
            if !page.is_null() {
                // SAFETY: `page` is a new, non-compound order-`order` allocation of which we
                // own the one reference; `split_page` turns it into `1 << order` order-0
                // pages with one reference each, and splits the memory cgroup charge too.
                unsafe { bindings::split_page(page, order) };
                // INVARIANT: those pages are ours now, and `wanted` counted them before.
                self.next = page;
                self.left = 1 << order;
                self.wanted -= 1 << order;
                return true;
            }
            // INVARIANT: smaller than `BLOCK_ORDER` still.
            order -= 1;
            self.max_order = order;
        }
        false
    }

    /// The next frame: from the current block, a new one, or an allocation of its own.
    pub(crate) fn next(&mut self) -> Result<Frame<ORDER>, AllocError> {
        if self.left == 0 && !(self.max_order > 0 && self.wanted > 1 && self.refill()) {
            self.wanted = self.wanted.saturating_sub(1);
            return Frame::alloc_zeroed();
        }
        let page = self.next;
        // SAFETY: `left` > 0, so the block's pages run at least one past `page`, within one
        // allocation (the struct pages of a block are contiguous in the vmemmap).
        self.next = unsafe { page.add(1) };
        self.left -= 1;
        // INVARIANT: the page's reference moves to the frame. `ORDER` is 0 (`max_order` is
        // 0 for other orders, so they have no blocks), so an order-0 page is an
        // order-`ORDER` allocation.
        Ok(Frame {
            // SAFETY: a block's pages are non-null.
            page: unsafe { NonNull::new_unchecked(page) },
        })
    }
}

impl<const ORDER: u32> Drop for FrameSource<ORDER> {
    fn drop(&mut self) {
        // The pages of the block not handed out, freed one by one as the frames they were
        // to become (`next` allocates nothing while `left` > 0).
        while self.left > 0 {
            drop(self.next());
        }
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
    use kernel::page::PAGE_SIZE;

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

    /// The page's reference count, as the allocator keeps it.
    fn refs(page: *mut bindings::page) -> i32 {
        // SAFETY: `page` is a live page (the callers hold a reference); `_refcount` is an
        // atomic, read atomically.
        unsafe { bindings::atomic_read(&raw const (*page)._refcount) }
    }

    /// Whether the page's 4 KiB are all zero.
    fn zeroed(page: *mut bindings::page) -> bool {
        // SAFETY: `page` is a live page; the mapping is undone right below, on this CPU.
        let va = unsafe { bindings::kmap_local_page(page) };
        // SAFETY: `va` maps the page's `PAGE_SIZE` bytes, which nothing else writes meanwhile.
        let bytes = unsafe { core::slice::from_raw_parts(va.cast::<u8>(), PAGE_SIZE) };
        let zero = bytes.iter().all(|&b| b == 0);
        // SAFETY: `va` was mapped just above by `kmap_local_page`.
        unsafe { bindings::kunmap_local(va) };
        zero
    }

    /// Eight frames wanted: one block of eight consecutive zeroed pages, each an independent
    /// page with one reference, the frame's. (The suite runs at every load of the module; a
    /// 2 GiB test VM has free blocks of eight pages then, even after its stress runs.)
    #[test]
    fn a_source_hands_out_a_block_as_independent_zeroed_pages() -> Result {
        let mut source = FrameSource::<0>::new(8, true);
        let mut frames = KVec::with_capacity(8, GFP_KERNEL)?;
        frames.push(source.next()?, GFP_KERNEL)?;
        // One allocation, of eight pages: seven are left in the source after the first.
        assert_eq!(source.left, 7);
        for _ in 1..8 {
            frames.push(source.next()?, GFP_KERNEL)?;
        }
        let first = frames[0].page.as_ptr();
        for (i, frame) in frames.iter().enumerate() {
            let page = frame.page.as_ptr();
            // SAFETY: `first` heads the block of eight the frames came from.
            assert_eq!(page, unsafe { first.add(i) });
            assert_eq!(refs(page), 1);
            assert!(zeroed(page));
        }
        Ok(())
    }

    /// Three of a block of eight handed out, then the source dropped: the other five pages
    /// lose the reference the source held (a reference taken here shows it), and the three
    /// keep theirs.
    #[test]
    fn a_source_frees_the_pages_it_did_not_hand_out() -> Result {
        let mut source = FrameSource::<0>::new(8, true);
        let mut frames = KVec::with_capacity(3, GFP_KERNEL)?;
        for _ in 0..3 {
            frames.push(source.next()?, GFP_KERNEL)?;
        }
        // A block of eight, five of them still the source's: only then are the pages below
        // ours to touch (the assertion ends the test before that otherwise).
        assert_eq!(source.left, 5);
        let first = source.next;
        // SAFETY: the source's five pages are `first..first + 5`, live while it holds them.
        let rest: [*mut bindings::page; 5] = core::array::from_fn(|i| unsafe { first.add(i) });
        for &page in &rest {
            // SAFETY: `page` is live (the source's reference); ours is dropped below.
            unsafe { bindings::atomic_inc(&raw mut (*page)._refcount) };
        }
        drop(source);
        for &page in &rest {
            assert_eq!(refs(page), 1);
            // SAFETY: the reference taken above, the last one: the page is freed.
            unsafe { bindings::__free_pages(page, 0) };
        }
        assert!(frames.iter().all(|frame| refs(frame.page.as_ptr()) == 1));
        Ok(())
    }

    /// Without blocks, or for 2 MiB frames, every frame is an allocation of its own.
    #[test]
    fn a_source_without_blocks_allocates_each_frame() -> Result {
        let mut source = FrameSource::<0>::new(4, false);
        let (a, b) = (source.next()?, source.next()?);
        assert!(source.left == 0 && refs(a.page.as_ptr()) == 1 && refs(b.page.as_ptr()) == 1);
        let mut huge = FrameSource::<{ crate::vm::HUGE_ORDER }>::new(2, true);
        let frame = huge.next()?;
        assert!(huge.left == 0 && zeroed(frame.page.as_ptr()));
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
