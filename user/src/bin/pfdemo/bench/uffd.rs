//! `pfdemo bench`'s `uffd` mode: the first touches of anonymous memory resolved in user space.
//! The range is registered with userfaultfd for missing faults and one handler thread answers
//! every fault with `UFFDIO_COPY` (the touches are writes); the measurement itself is the
//! benchmark's own, run inside [`with_handler`].

use pfdemo::sys::Mapping;
use pfdemo::uffd::{Handler, Uffd};
use pfdemo::{io, Res};

/// Maps `pages` pages of anonymous memory, registers them with a userfaultfd served by a
/// handler thread, runs `measure` on the mapping, and stops the handler; fails if the handler
/// did not resolve a fault per page (the faults then went elsewhere: nothing was measured).
pub fn with_handler<T>(pages: usize, measure: impl FnOnce(&Mapping) -> Res<T>) -> Res<T> {
    let map = io("mmap anonymous", Mapping::anonymous_4k(pages))?;
    let uffd = io("userfaultfd", Uffd::open())?;
    io("UFFDIO_REGISTER", uffd.register_missing(&map))?;
    let handler = Handler::start(uffd, 0, false);
    let result = measure(&map);
    let resolved = handler.resolved();
    io("the userfaultfd handler", handler.stop())?;
    let result = result?;
    if resolved < pages as u64 {
        return Err(format!(
            "uffd: the handler resolved {resolved} faults for {pages} pages"
        ));
    }
    Ok(result)
}
