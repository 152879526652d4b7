// SPDX-License-Identifier: GPL-2.0

//! A sparse array of write-once slots, read and written without a lock: the storage under
//! each instance's frame table ([`crate::frame_table`]).
//!
//! Calling context: any in which the allocator may sleep (a store may allocate a leaf with
//! `GFP_KERNEL`); lookups never sleep; dropping the array may sleep (it gives the CPU away
//! between leaves). No lock is taken anywhere: a slot and a directory entry each change once,
//! from null, by compare-and-exchange.

use core::marker::PhantomData;
use kernel::{
    alloc::KVVec,
    ffi::c_void,
    page::PAGE_SIZE,
    prelude::*,
    sync::atomic::{
        Acquire,
        Atomic,
        Full,
        Relaxed, //
    },
    types::ForeignOwnable, //
};

/// A sparse array of write-once slots, read and written without a lock.
///
/// Two levels, as in the page tables it feeds: a directory, allocated for the whole length up
/// front, points to leaves of [`LEAF_SLOTS`] slots (4 KiB each), allocated when a value first
/// lands in their range. A slot is written once: the first value stored in it stays until the
/// array is dropped, and a later store gets that first value back. So a value borrowed from
/// the array stays valid for as long as the array is borrowed, a lookup is two acquire loads,
/// and a store one compare-and-exchange: concurrent faults never wait for each other.
///
/// # Invariants
///
/// - A non-null directory entry comes from [`KBox::into_raw`] of a [`Leaf`] that the array
///   owns, and it never changes until the array is dropped.
/// - A non-null slot comes from [`ForeignOwnable::into_foreign`] of a `T` that the array owns,
///   and it never changes until the array is dropped.
/// - Both are published with release (or full) ordering, after the leaf or value is initialised.
///
/// `T: Send` because a value stored from one thread may be dropped on another; sharing the
/// array (`Sync`) lends values to every thread, which `PhantomData<T>` allows only if
/// `T: Sync`.
pub(crate) struct OnceArray<T: ForeignOwnable + Send> {
    dir: KVVec<Atomic<*mut Leaf>>,
    /// The number of slots: indices `0..len` are valid.
    len: usize,
    /// The number of leaves allocated, for [`Self::bytes`].
    leaves: Atomic<usize>,
    _values: PhantomData<T>,
}

/// The slots per leaf of a [`OnceArray`]: one page of pointers.
pub(crate) const LEAF_SLOTS: usize = PAGE_SIZE / core::mem::size_of::<usize>();

/// One leaf of a [`OnceArray`].
type Leaf = [Atomic<*mut c_void>; LEAF_SLOTS];

impl<T: ForeignOwnable + Send> OnceArray<T> {
    /// An empty array of `len` slots; only its directory is allocated (8 bytes per 512 slots),
    /// charged, as the leaves are later, to the current task's memory cgroup.
    pub(crate) fn new(len: usize) -> Result<Self> {
        let leaves = len.div_ceil(LEAF_SLOTS);
        let mut dir = KVVec::with_capacity(leaves, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..leaves {
            dir.push_within_capacity(Atomic::new(core::ptr::null_mut()))
                .map_err(|_| ENOMEM)?;
        }
        // INVARIANT: every entry is null.
        Ok(Self {
            dir,
            len,
            leaves: Atomic::new(0),
            _values: PhantomData,
        })
    }

    /// The leaf that holds slot `index`, if it exists.
    fn leaf(&self, index: usize) -> Option<&Leaf> {
        self.leaf_at(index / LEAF_SLOTS)
    }

    /// Leaf number `i`, if it exists.
    fn leaf_at(&self, i: usize) -> Option<&Leaf> {
        let leaf = self.dir.get(i)?.load(Acquire);
        // SAFETY: a non-null entry points to a leaf that the array owns until it is dropped
        // (the type invariant), and the acquire load pairs with the release that published it,
        // so it is initialised.
        unsafe { leaf.as_ref() }
    }

    /// The value in `slot`, one of the array's, if there is one.
    fn value<'a>(&'a self, slot: &'a Atomic<*mut c_void>) -> Option<T::Borrowed<'a>> {
        let ptr = slot.load(Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-null slot holds a pointer from `into_foreign` that the array owns and
        // does not give back (`from_foreign`) before it is dropped (the type invariant), so it
        // may be borrowed for as long as `self` is; the acquire load makes the value's
        // initialisation visible.
        Some(unsafe { T::borrow(ptr) })
    }

    /// The value in slot `index`, if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<T::Borrowed<'_>> {
        self.value(&self.leaf(index)?[index % LEAF_SLOTS])
    }

    /// Calls `f(index, value)` for every slot that holds a value, in index order, until `f`
    /// fails. Values stored meanwhile may or may not be seen.
    pub(crate) fn try_for_each<E>(
        &self,
        mut f: impl FnMut(usize, T::Borrowed<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for first in (0..self.len).step_by(LEAF_SLOTS) {
            let Some(leaf) = self.leaf(first) else {
                continue;
            };
            for (i, slot) in leaf.iter().enumerate() {
                if let Some(value) = self.value(slot) {
                    f(first + i, value)?;
                }
            }
        }
        Ok(())
    }

    /// The number of slots that hold a value.
    pub(crate) fn count(&self) -> usize {
        let mut n = 0;
        let _ = self.try_for_each(|_, _| -> Result<(), ()> {
            n += 1;
            Ok(())
        });
        n
    }

    /// Stores `value` in slot `index` unless the slot holds a value already. Returns the value
    /// the slot holds then, and whether it is `value` (if not, `value` is dropped). `EINVAL`
    /// for an index past the end, `ENOMEM` if the slot's leaf could not be allocated.
    pub(crate) fn set(&self, index: usize, value: T) -> Result<(T::Borrowed<'_>, bool)> {
        if index >= self.len {
            return Err(EINVAL);
        }
        let leaf = match self.leaf(index) {
            Some(leaf) => leaf,
            None => self.new_leaf(index / LEAF_SLOTS)?,
        };
        let slot = &leaf[index % LEAF_SLOTS];
        let ptr = value.into_foreign();
        // INVARIANT: the slot changes only from null, once, with full ordering.
        if slot.cmpxchg(core::ptr::null_mut(), ptr, Full).is_ok() {
            // SAFETY: `ptr` is in the slot now, owned by the array until it is dropped.
            return Ok((unsafe { T::borrow(ptr) }, true));
        }
        // SAFETY: `ptr` comes from `into_foreign` above and went nowhere.
        drop(unsafe { T::from_foreign(ptr) });
        // The exchange failed, so the slot holds a value, for good (the type invariant). A
        // failed exchange is only a relaxed load, which orders nothing: `value` loads the slot
        // again with acquire, which pairs with the winner's fully ordered store and so makes
        // the winner's value visible before it is borrowed.
        Ok((self.value(slot).ok_or(EINVAL)?, false))
    }

    /// Installs an empty leaf as directory entry `i`, or returns the one a concurrent store
    /// installed first. The leaf is charged to the current task's memory cgroup.
    fn new_leaf(&self, i: usize) -> Result<&Leaf> {
        let leaf = KBox::init(
            pin_init::init_array_from_fn(|_| Ok::<_, Error>(Atomic::new(core::ptr::null_mut()))),
            GFP_KERNEL_ACCOUNT,
        )?;
        let raw = KBox::into_raw(leaf);
        // INVARIANT: the entry changes only from null, once, with full ordering, to a leaf
        // that is fully initialised.
        if self.dir[i]
            .cmpxchg(core::ptr::null_mut(), raw, Full)
            .is_ok()
        {
            self.leaves.add(1, Relaxed);
            // SAFETY: the leaf is the array's now, and lives until the array is dropped.
            return Ok(unsafe { &*raw });
        }
        // SAFETY: `raw` comes from `KBox::into_raw` above and went nowhere.
        drop(unsafe { KBox::from_raw(raw) });
        // As in `set`: the entry is non-null for good, and `leaf_at` loads it again with
        // acquire, since the failed exchange ordered nothing.
        self.leaf_at(i).ok_or(EINVAL)
    }

    /// The bytes of memory the array itself takes: its directory and its leaves (the values
    /// are not counted).
    pub(crate) fn bytes(&self) -> usize {
        self.dir.capacity() * core::mem::size_of::<Atomic<*mut Leaf>>()
            + self.leaves.load(Relaxed) * core::mem::size_of::<Leaf>()
    }
}

impl<T: ForeignOwnable + Send> Drop for OnceArray<T> {
    fn drop(&mut self) {
        for entry in self.dir.iter() {
            let leaf = entry.load(Relaxed);
            if leaf.is_null() {
                continue;
            }
            // SAFETY: a non-null entry is a leaf the array owns (the type invariant), and
            // `&mut self` means that nothing borrows from the array any more.
            let leaf = unsafe { KBox::from_raw(leaf) };
            for slot in leaf.iter() {
                let ptr = slot.load(Relaxed);
                if !ptr.is_null() {
                    // SAFETY: a non-null slot holds a `T` that the array owns (the type
                    // invariant), given back here once.
                    drop(unsafe { T::from_foreign(ptr) });
                }
            }
            // Up to 16M frames (64 GiB) may go here: a chance to reschedule after each leaf
            // of them, as the core's own zap loops give.
            crate::vm::cond_resched();
        }
    }
}

#[kunit_tests(rust_pagefault_demo_once_array)]
mod tests {
    use super::*;

    /// Counts how many [`Tracked`] values were dropped.
    static DROPPED: Atomic<usize> = Atomic::new(0);

    /// A value whose drop is counted in [`DROPPED`].
    struct Tracked(usize);

    impl Drop for Tracked {
        fn drop(&mut self) {
            DROPPED.add(1, Relaxed);
        }
    }

    #[test]
    fn once_array_keeps_the_first_value_and_frees_all_at_drop() -> Result {
        let dropped = DROPPED.load(Relaxed);
        let len = 2 * LEAF_SLOTS + 3;
        let array = OnceArray::<KBox<Tracked>>::new(len)?;
        assert!(array.get(0).is_none());
        // Slots on both sides of a leaf boundary, and the very last one.
        for (i, index) in [0, LEAF_SLOTS - 1, LEAF_SLOTS, len - 1]
            .into_iter()
            .enumerate()
        {
            let (value, ours) = array.set(index, KBox::new(Tracked(i), GFP_KERNEL)?)?;
            assert!(ours);
            assert_eq!(value.0, i);
        }
        // A second store keeps the first value and drops the newcomer.
        let (value, ours) = array.set(LEAF_SLOTS, KBox::new(Tracked(99), GFP_KERNEL)?)?;
        assert!(!ours);
        assert_eq!(value.0, 2);
        assert_eq!(DROPPED.load(Relaxed) - dropped, 1);
        assert_eq!(array.get(LEAF_SLOTS).map(|v| v.0), Some(2));
        assert_eq!(array.get(len - 1).map(|v| v.0), Some(3));
        assert!(array.get(1).is_none());
        assert_eq!(array.count(), 4);
        let mut seen = KVec::new();
        array.try_for_each(|index, value| seen.push((index, value.0), GFP_KERNEL))?;
        assert_eq!(
            &seen[..],
            &[(0, 0), (LEAF_SLOTS - 1, 1), (LEAF_SLOTS, 2), (len - 1, 3)]
        );
        // Past the end: nothing to find, and a store is refused (its value dropped).
        assert!(array.get(len).is_none());
        assert!(array.get(usize::MAX).is_none());
        assert_eq!(
            array.set(len, KBox::new(Tracked(7), GFP_KERNEL)?).err(),
            Some(EINVAL)
        );
        assert_eq!(DROPPED.load(Relaxed) - dropped, 2);
        // Dropping the array drops the four values it holds.
        drop(array);
        assert_eq!(DROPPED.load(Relaxed) - dropped, 6);
        Ok(())
    }

    #[test]
    fn once_array_counts_its_leaves_in_its_bytes() -> Result {
        let array = OnceArray::<KBox<Tracked>>::new(3 * LEAF_SLOTS)?;
        let dir = array.bytes();
        assert!(dir >= 3 * core::mem::size_of::<usize>());
        // The first value in a leaf's range allocates the leaf, the next ones do not.
        array.set(1, KBox::new(Tracked(1), GFP_KERNEL)?)?;
        assert_eq!(array.bytes(), dir + PAGE_SIZE);
        array.set(2, KBox::new(Tracked(2), GFP_KERNEL)?)?;
        array.set(1, KBox::new(Tracked(3), GFP_KERNEL)?)?;
        assert_eq!(array.bytes(), dir + PAGE_SIZE);
        array.set(2 * LEAF_SLOTS, KBox::new(Tracked(4), GFP_KERNEL)?)?;
        assert_eq!(array.bytes(), dir + 2 * PAGE_SIZE);
        Ok(())
    }

    #[test]
    fn once_array_of_no_slots_holds_nothing() -> Result {
        let array = OnceArray::<KBox<Tracked>>::new(0)?;
        assert!(array.get(0).is_none());
        assert_eq!(
            array.set(0, KBox::new(Tracked(0), GFP_KERNEL)?).err(),
            Some(EINVAL)
        );
        Ok(())
    }
}
