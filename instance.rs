// SPDX-License-Identifier: GPL-2.0

//! An instance: one open file of the device, with its own frames, shared by all its mappings.
//!
//! This file is steps 1 and 9 of the story: `open` creates an instance, `mmap` checks the
//! request and installs the fault handler ([`fault`], the steps in between) without
//! allocating anything, and the last `close` frees the frames. It also keeps the list of open
//! instances, which the `frames` file in debugfs walks.
//!
//! Calling context: the file operations run in process context and may sleep.
//!
//! Locks: [`INSTANCES`] (a mutex) guards the list of open instances; it is taken by `open`,
//! `release` and the `frames` file, never on the fault path and never with another lock of
//! this module held. A huge instance's `pmd_lock` (a mutex) is taken on its fault path, with
//! the core's mmap or VMA read lock held, and never with `INSTANCES`.

use core::fmt;
use kernel::{
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    mm::virt::VmaNew,
    page::PAGE_SHIFT,
    prelude::*,
    seq_file::{
        seq_print,
        SeqFile, //
    },
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        new_mutex,
        Arc,
        ArcBorrow,
        Mutex, //
    },
};

use crate::{
    budget::BUDGET,
    frame_table::FrameTable,
    limits::{
        limits,
        Switches, //
    },
    stats::{
        Counter,
        STATS, //
    },
    vm, //
};

mod fault;

/// The next instance's id.
static NEXT_INSTANCE_ID: Atomic<u64> = Atomic::new(1);

kernel::sync::global_lock! {
    // SAFETY: `PagefaultDemo::init` initialises it (with `init_instances`) before the device
    // and debugfs exist, which are its only users.
    unsafe(uninit) static INSTANCES: Mutex<KVec<Arc<Instance>>> = KVec::new();
}

/// Sets up the list of open instances.
///
/// # Safety
///
/// Called once, at load, before the device and the debugfs files that use the list exist.
pub(crate) unsafe fn init_instances() {
    // SAFETY: the caller calls this once, before any user of the list exists.
    unsafe { INSTANCES.init() };
}

/// Empties the list of open instances at unload, returning how many were left (none should
/// be: an open file pins the module).
///
/// The list is a static, never dropped: its buffer is freed here, or each load would leak it.
pub(crate) fn drain_instances() -> usize {
    core::mem::take(&mut *INSTANCES.lock()).len()
}

/// One open file of the device: its own frames, shared by all its mappings.
#[pin_data(PinnedDrop)]
pub(crate) struct Instance {
    /// Unique among the instances of this module load; shown in fdinfo and `frames`.
    id: u64,
    /// The instance's size in pages (`max_pages` when it was opened).
    size: usize,
    /// Pages mapped per 4 KiB fault (`prefault` when it was opened).
    prefault: usize,
    /// Whether the frames are 2 MiB (`huge` when it was opened): then `small` has no slots,
    /// else `large` has none.
    huge: bool,
    /// The fault path's switches when it was opened.
    switches: Switches,
    /// Held, in a huge instance, from looking at a PMD entry to filling it (with a leaf, or a
    /// page table through a 4 KiB insertion), so that the 4 KiB and the PMD path never find
    /// the entry changed under them (see `fault.rs`). Taken on the fault path with the mmap
    /// or VMA lock held for reading; nothing is taken while it is held but the page-table
    /// locks inside the core's insertion.
    #[pin]
    pmd_lock: Mutex<()>,
    small: FrameTable<0>,
    large: FrameTable<{ vm::HUGE_ORDER }>,
}

impl Instance {
    fn new() -> impl PinInit<Self, Error> {
        let limits = limits();
        let (small, large) = if limits.huge {
            (0, limits.max_pages)
        } else {
            (limits.max_pages, 0)
        };
        try_pin_init!(Self {
            id: NEXT_INSTANCE_ID.fetch_add(1, Relaxed),
            size: limits.max_pages,
            prefault: limits.prefault,
            huge: limits.huge,
            switches: limits.switches,
            pmd_lock <- new_mutex!(()),
            small: FrameTable::new(small)?,
            large: FrameTable::new(large)?,
        })
    }

    /// The 4 KiB pages of the instance's frames.
    fn pages(&self) -> usize {
        self.small.pages() + self.large.pages()
    }

    /// The bytes the instance takes besides its frames: itself and its frame tables'
    /// directories and leaves. All of it is charged to a memory cgroup:
    /// the instance and the directories to the opener's, a leaf to the toucher's.
    fn metadata_bytes(&self) -> usize {
        core::mem::size_of::<Self>() + self.small.bytes() + self.large.bytes()
    }
}

#[pinned_drop]
impl PinnedDrop for Instance {
    fn drop(self: Pin<&mut Self>) {
        // The frame tables free the frames right after this; count them as freed now.
        let n = self.pages();
        STATS.add(Counter::FramesFreed, n as u64);
        STATS.sub(Counter::Instances, 1);
        BUDGET.release(n);
    }
}

#[vtable]
impl MiscDevice for Instance {
    type Ptr = Arc<Instance>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Instance>> {
        // Every error here is a failed allocation: counted, so that a test injecting them can
        // tell the module's ENOMEM from the kernel's.
        let nomem = |e: Error| {
            STATS.add(Counter::OpenNomem, 1);
            e
        };
        // Charged to the opener's memory cgroup, like the frame tables' directories in it.
        let instance = Arc::pin_init(Instance::new(), GFP_KERNEL_ACCOUNT).map_err(nomem)?;
        // Counted now, so that dropping it (below, if the list cannot grow) balances.
        STATS.add(Counter::Instances, 1);
        STATS.add(Counter::InstancesOpened, 1);
        INSTANCES
            .lock()
            .push(instance.clone(), GFP_KERNEL)
            .map_err(|e| nomem(e.into()))?;
        Ok(instance)
    }

    fn release(instance: Arc<Instance>, _file: &File) {
        INSTANCES.lock().retain(|i| i.id != instance.id);
        // The last reference frees the frames: no mapping is left, since every VMA of this
        // file holds a reference on the file and release runs only after the last one is gone.
    }

    fn mmap(instance: ArcBorrow<'_, Instance>, _file: &File, vma: &VmaNew) -> Result {
        let refuse = |e: Error| {
            STATS.add(Counter::MmapRefused, 1);
            Err(e)
        };
        let pages = (vma.end() - vma.start()) >> PAGE_SHIFT;
        let pgoff = vm::pgoff(vma);
        match pgoff.checked_add(pages) {
            Some(end) if pages > 0 && end <= instance.size => {}
            _ => return refuse(EINVAL),
        }
        // Data frames have no business being executed.
        if vma.executable() {
            return refuse(EPERM);
        }
        vma.try_clear_mayexec()?;
        // Growth by mremap is refused: the size is checked here, once.
        vma.set_dontexpand();
        let vma = vma.set_mixedmap();
        let ops = vm::Ops {
            huge: instance.huge,
            map_pages: instance.switches.map_pages,
        };
        // SAFETY: `vma` maps this file, so it holds a reference on the file for as long as it
        // (or a copy made by fork or split) exists, and the file holds `instance` until its
        // release, which runs only after the last such reference is dropped.
        unsafe { vm::install(vma, &*instance, ops) };
        Ok(())
    }

    /// The page-table walk (`RPD_IOC_WALK`, see [`crate::walk`]). A 32-bit caller gets the
    /// same through `compat_ptr_ioctl`: the reply has one layout for both (no pointers, no
    /// padding).
    fn ioctl(
        _instance: ArcBorrow<'_, Instance>,
        file: &File,
        cmd: u32,
        arg: usize,
    ) -> Result<isize> {
        crate::walk::ioctl(file, cmd, arg)
    }

    fn show_fdinfo(instance: ArcBorrow<'_, Instance>, m: &SeqFile, _file: &File) {
        seq_print!(
            m,
            "instance:\t{}\nframes:\t{}\nsize_pages:\t{}\nmetadata_bytes:\t{}\n",
            instance.id,
            instance.pages(),
            instance.size,
            instance.metadata_bytes()
        );
    }
}

/// The open instances, each with a reference of its own, so that a long render does not hold
/// the list's lock: `open` and `close` then never wait behind a reader of `frames` (which
/// seq_file may render several times, with a larger buffer each time).
fn snapshot() -> Result<KVec<Arc<Instance>>> {
    let instances = INSTANCES.lock();
    let mut copy = KVec::with_capacity(instances.len(), GFP_KERNEL)?;
    for instance in instances.iter() {
        copy.push(instance.clone(), GFP_KERNEL)?;
    }
    Ok(copy)
}

/// The bytes of metadata of all open instances (see [`Instance::metadata_bytes`]).
pub(crate) fn metadata_bytes() -> usize {
    INSTANCES.lock().iter().map(|i| i.metadata_bytes()).sum()
}

/// The `frames` debugfs file: a header, then `instance pgoff pfn phys` per live 4 KiB page
/// (a 2 MiB frame shows as its 512 pages).
///
/// If an instance is closed during the render, its last reference may be the snapshot's:
/// then its frames are freed here, in the reader's context, which may sleep.
pub(crate) fn write_frames(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "# instance pgoff pfn phys")?;
    let instances = snapshot().map_err(|_| fmt::Error)?;
    for instance in instances.iter() {
        let mut row = |pgoff: usize, pfn: usize| {
            writeln!(
                f,
                "{} {} {:#x} {:#x}",
                instance.id,
                pgoff,
                pfn,
                pfn << PAGE_SHIFT
            )
        };
        instance.small.for_each(&mut row)?;
        instance.large.for_each(&mut row)?;
    }
    Ok(())
}
