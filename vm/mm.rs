// SPDX-License-Identifier: GPL-2.0

//! What the module reads of the memory-management state: a new VMA's page offset, the
//! machine's RAM; and the scheduler's `cond_resched`, for the long loop that frees an
//! instance's frames.
//!
//! Calling context: the `mmap` hook for the page offset (the new VMA is the caller's alone),
//! any process context for the RAM size, process context that may sleep for
//! [`cond_resched`].

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

/// Lets another task run if one is waiting: the C `cond_resched()`, for a long loop in
/// process context (freeing the frames of a large instance, up to 16M of them) on a kernel
/// whose preemption does not already do it.
///
/// The C macro calls `__cond_resched` where the kernel has no preemption or chooses it at
/// boot (`PREEMPT_DYNAMIC`, Debian's kernels); with full preemption built in (the VM's
/// kernels) it does nothing, for preemption needs no such points. Calling `__cond_resched`
/// directly under `PREEMPT_DYNAMIC` is what its `none` and `voluntary` modes do; in `full`
/// mode it only finds that no reschedule is pending at a preemptible point, or schedules.
pub(crate) fn cond_resched() {
    kernel::task::might_sleep();
    #[cfg(any(not(CONFIG_PREEMPTION), CONFIG_PREEMPT_DYNAMIC))]
    // SAFETY: `__cond_resched` may be called in any context that may sleep, which callers of
    // this function are in (its documentation; `might_sleep` checks it on debug kernels).
    unsafe {
        bindings::__cond_resched()
    };
}
