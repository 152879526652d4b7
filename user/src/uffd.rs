//! A page-fault handler in user space: `userfaultfd(2)` for missing faults on anonymous memory,
//! and a handler thread that resolves each fault with `UFFDIO_COPY` (a write: a page of the
//! handler's contents) or `UFFDIO_ZEROPAGE` (a read: the shared zero page, as the kernel's
//! own handler maps it). The tour's `uffd` chapter and `pfdemo bench`'s `uffd` mode use it.
//!
//! The libc crate has `SYS_userfaultfd` but none of the ioctls or structures: they are
//! defined here from the kernel's `include/uapi/linux/userfaultfd.h`.

use crate::sys::{page_size, Mapping};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// `UFFD_API`: the API version of the handshake.
const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xaa, 0x3f, struct uffdio_api)`, 24 bytes.
const UFFDIO_API: u64 = ioc_rw(0x3f, 24);
/// `_IOWR(0xaa, 0x00, struct uffdio_register)`, 32 bytes.
const UFFDIO_REGISTER: u64 = ioc_rw(0x00, 32);
/// `_IOWR(0xaa, 0x03, struct uffdio_copy)`, 40 bytes.
const UFFDIO_COPY: u64 = ioc_rw(0x03, 40);
/// `_IOWR(0xaa, 0x04, struct uffdio_zeropage)`, 32 bytes.
const UFFDIO_ZEROPAGE: u64 = ioc_rw(0x04, 32);
/// `UFFDIO_REGISTER_MODE_MISSING`: report faults on pages with nothing mapped.
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
/// `UFFD_EVENT_PAGEFAULT`: the message is a page fault.
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// `UFFD_PAGEFAULT_FLAG_WRITE`: the fault was a write.
const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1;

/// `_IOWR(0xaa, nr, size)`: direction read|write (3) in bits 30-31, the size in bits 16-29,
/// the type 0xaa in bits 8-15, the number in bits 0-7.
const fn ioc_rw(nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (0xaa << 8) | nr
}

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

/// `struct uffdio_copy`.
#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// `struct uffdio_zeropage`.
#[repr(C)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

/// `struct uffd_msg` as a page fault: event, padding, then `flags`, `address`, `ptid`.
#[repr(C)]
#[derive(Default)]
struct UffdMsg {
    event: u8,
    reserved: [u8; 7],
    flags: u64,
    address: u64,
    ptid: u64,
}

/// A userfaultfd: the kernel's channel for faults of registered ranges.
pub struct Uffd {
    fd: OwnedFd,
}

/// Sends `arg` with the ioctl `cmd` to `fd`.
///
/// # Safety
///
/// `arg` must be the structure `cmd` encodes (its size), valid and writable for the call.
unsafe fn ioctl<T>(fd: &OwnedFd, cmd: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: the caller passes the structure of `cmd`; the kernel reads and writes only it.
    if unsafe { libc::ioctl(fd.as_raw_fd(), cmd as _, arg as *mut T) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Uffd {
    /// A new userfaultfd after the API handshake; non-blocking reads, so the handler can
    /// poll with a timeout and stop. `ENOSYS`: the kernel lacks `CONFIG_USERFAULTFD`.
    pub fn open() -> io::Result<Self> {
        // SAFETY: userfaultfd(2) takes flags only and returns a new descriptor or -1.
        let fd =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor the kernel just gave us, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        // SAFETY: `api` is the `struct uffdio_api` of UFFDIO_API.
        unsafe { ioctl(&fd, UFFDIO_API, &mut api)? };
        Ok(Self { fd })
    }

    /// Registers all of `map` for missing faults: its first touches come to this fd.
    pub fn register_missing(&self, map: &Mapping) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: map.as_ptr() as u64,
                len: map.len() as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: `reg` is the `struct uffdio_register` of UFFDIO_REGISTER.
        unsafe { ioctl(&self.fd, UFFDIO_REGISTER, &mut reg) }
    }

    /// The next page fault, waiting at most `timeout_ms`; `None` if none came.
    fn next_fault(&self, timeout_ms: i32) -> io::Result<Option<Fault>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, alive for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(None);
        }
        let mut msg = UffdMsg::default();
        let size = std::mem::size_of::<UffdMsg>();
        // SAFETY: `msg` is `size` writable bytes, the size of one `struct uffd_msg`.
        let got =
            unsafe { libc::read(self.fd.as_raw_fd(), (&mut msg as *mut UffdMsg).cast(), size) };
        if got < 0 {
            let e = io::Error::last_os_error();
            // Another reader took it, or a spurious wake-up: nothing to do.
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if got as usize != size || msg.event != UFFD_EVENT_PAGEFAULT {
            return Ok(None);
        }
        Ok(Some(Fault {
            address: msg.address,
            write: msg.flags & UFFD_PAGEFAULT_FLAG_WRITE != 0,
        }))
    }

    /// `UFFDIO_COPY`: maps a new page at `dst` (page-aligned) holding the page at `src`, and
    /// wakes the faulting thread.
    fn copy(&self, dst: u64, src: *const u8) -> io::Result<()> {
        let mut copy = UffdioCopy {
            dst,
            src: src as u64,
            len: page_size() as u64,
            mode: 0,
            copy: 0,
        };
        // SAFETY: `copy` is the `struct uffdio_copy` of UFFDIO_COPY; `src` is a readable page
        // of ours (the kernel copies from it with user-access checks anyway).
        unsafe { ioctl(&self.fd, UFFDIO_COPY, &mut copy) }
    }

    /// `UFFDIO_ZEROPAGE`: maps the zero page at `dst` (page-aligned) and wakes the faulter.
    fn zeropage(&self, dst: u64) -> io::Result<()> {
        let mut zero = UffdioZeropage {
            range: UffdioRange {
                start: dst,
                len: page_size() as u64,
            },
            mode: 0,
            zeropage: 0,
        };
        // SAFETY: `zero` is the `struct uffdio_zeropage` of UFFDIO_ZEROPAGE.
        unsafe { ioctl(&self.fd, UFFDIO_ZEROPAGE, &mut zero) }
    }
}

/// A fault as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The faulting address (the page's start: no `UFFD_FEATURE_EXACT_ADDRESS`).
    pub address: u64,
    pub write: bool,
}

/// How the handler resolved a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Copy,
    ZeroPage,
}

/// The faults a handler resolved, in order, with how.
type Log = Arc<Mutex<Vec<(Fault, Resolution)>>>;

/// The handler thread: resolves the faults of its userfaultfd until stopped. Dropping the
/// userfaultfd when it ends (stopped or failed) ends the registration, so a later touch is an
/// ordinary fault: no toucher waits forever on a handler that is gone.
pub struct Handler {
    stop: Arc<AtomicBool>,
    resolved: Arc<AtomicU64>,
    log: Option<Log>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Handler {
    /// Starts the thread; a write fault gets a copy of a page filled with `fill`, a read the
    /// zero page. With `keep_log`, every fault and its resolution is kept for [`Handler::log`]
    /// (the tour's evidence; the benchmark does without).
    pub fn start(uffd: Uffd, fill: u8, keep_log: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let resolved = Arc::new(AtomicU64::new(0));
        let log = keep_log.then(|| Arc::new(Mutex::new(Vec::new())));
        let (stop2, resolved2, log2) = (stop.clone(), resolved.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let source = vec![fill; page_size()];
            while !stop2.load(Ordering::Acquire) {
                let Some(fault) = uffd.next_fault(50)? else {
                    continue;
                };
                let page = fault.address & !(page_size() as u64 - 1);
                let how = if fault.write {
                    Resolution::Copy
                } else {
                    Resolution::ZeroPage
                };
                // Counted before the answer: the answer wakes the faulting thread, which may
                // look at the count right away.
                resolved2.fetch_add(1, Ordering::Release);
                if let Some(log) = &log2 {
                    log.lock()
                        .map_err(|_| io::Error::other("log poisoned"))?
                        .push((fault, how));
                }
                match how {
                    Resolution::Copy => uffd.copy(page, source.as_ptr())?,
                    Resolution::ZeroPage => uffd.zeropage(page)?,
                }
            }
            Ok(())
        });
        Self {
            stop,
            resolved,
            log,
            thread: Some(thread),
        }
    }

    /// Faults taken on so far (each counted right before its answer).
    pub fn resolved(&self) -> u64 {
        self.resolved.load(Ordering::Acquire)
    }

    /// The faults taken on so far, with how they were answered (empty without `keep_log`).
    pub fn log(&self) -> Vec<(Fault, Resolution)> {
        self.log
            .as_ref()
            .and_then(|l| l.lock().ok().map(|l| l.clone()))
            .unwrap_or_default()
    }

    /// Stops the thread (within its 50 ms poll) and returns how it ended.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the userfaultfd handler panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctls_have_the_uapi_numbers() {
        assert_eq!(std::mem::size_of::<UffdioApi>(), 24);
        assert_eq!(std::mem::size_of::<UffdioRegister>(), 32);
        assert_eq!(std::mem::size_of::<UffdioCopy>(), 40);
        assert_eq!(std::mem::size_of::<UffdioZeropage>(), 32);
        assert_eq!(std::mem::size_of::<UffdMsg>(), 32);
        assert_eq!(UFFDIO_API, 0xc018_aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020_aa00);
        assert_eq!(UFFDIO_COPY, 0xc028_aa03);
        assert_eq!(UFFDIO_ZEROPAGE, 0xc020_aa04);
    }
}
