// SPDX-License-Identifier: GPL-2.0

//! What the module reads of the memory-management state: a new VMA's page offset, the
//! machine's RAM.
//!
//! Calling context: the `mmap` hook for the page offset (the new VMA is the caller's alone),
//! any process context for the RAM size.

use kernel::{
    bindings,
    mm::virt::VmaNew, //
};

/// The page offset of the mapping's first page in the file.
pub(crate) fn pgoff(vma: &VmaNew) -> usize {
    // SAFETY: `VmaNew` guarantees that the VMA is valid and that we have exclusive access
    // to it during the mmap hook, so this read does not race.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}

/// The machine's RAM in pages.
pub(crate) fn ram_pages() -> usize {
    let mut info = core::mem::MaybeUninit::<bindings::sysinfo>::zeroed();
    // SAFETY: `si_meminfo` fills in the `sysinfo` it is given and nothing else; all-zero
    // bytes are a valid `sysinfo` (integers and a padding array), so it is initialised
    // whatever `si_meminfo` writes.
    let info = unsafe {
        bindings::si_meminfo(info.as_mut_ptr());
        info.assume_init()
    };
    // `totalram` is in units of `mem_unit` bytes, which is the page size.
    info.totalram
}
