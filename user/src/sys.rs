//! System access: the device, its debugfs files, mappings (the crate's one `mmap(2)` call),
//! pagemap, fdinfo, `/proc/self/stat`, `/proc/meminfo`, `/proc/kpageflags`, `/proc/self/maps`,
//! the kernel log, and loading and unloading the module.

use crate::parse::{self, FdInfo, FrameRow, PagemapEntry, Stats};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;

pub const DEVICE: &str = "/dev/rust_pagefault_demo";
pub const DEBUGFS: &str = "/sys/kernel/debug/rust_pagefault_demo";
/// Where the guest keeps the module (`RPD_MODULE` or `--module` point elsewhere).
pub const MODULE_PATH: &str = "/lib/modules/rust_pagefault_demo.ko";

/// `madvise` advice the libc crate does not name yet (Linux 5.14): fault the range in, as
/// a read or as a write would, through the kernel's get_user_pages.
pub const MADV_POPULATE_READ: i32 = 22;
pub const MADV_POPULATE_WRITE: i32 = 23;

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Checks what the tools need, with one clear line (and its fix) for each missing piece.
pub fn check_environment(need_debugfs: bool) -> Result<(), String> {
    match fs::metadata(DEVICE) {
        Ok(m) if m.file_type().is_char_device() => {}
        Ok(_) => {
            return Err(format!(
                "{DEVICE} is not a character device; remove it and load the module"
            ))
        }
        Err(_) => {
            return Err(format!(
                "{DEVICE} is missing: the module is not loaded. Fix: insmod rust_pagefault_demo.ko"
            ))
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: the device is 0600, and PFNs (in debugfs and pagemap) are shown only to root. Fix: run as root".into());
    }
    if need_debugfs && fs::metadata(DEBUGFS).is_err() {
        if fs::read_to_string("/proc/mounts")
            .map(|m| m.contains(" debugfs "))
            .unwrap_or(false)
        {
            return Err(format!("{DEBUGFS} is missing: is the module loaded?"));
        }
        return Err("debugfs is not mounted. Fix: mount -t debugfs none /sys/kernel/debug".into());
    }
    Ok(())
}

/// The module's debugfs files.
pub const DEBUGFS_FILES: [&str; 3] = ["stats", "frames", "latency"];

/// The path of the module's debugfs file `name`.
pub fn debugfs_path(name: &str) -> String {
    format!("{DEBUGFS}/{name}")
}

fn read_debugfs(name: &str) -> io::Result<String> {
    fs::read_to_string(debugfs_path(name))
}

fn invalid(e: parse::ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Loads the module file at `path` with `params` by finit_module(2), as insmod does, without
/// starting a process; the error is the errno.
pub fn load_module(path: &str, params: &[&str]) -> Result<(), i32> {
    let file = File::open(path).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let params = std::ffi::CString::new(params.join(" ")).map_err(|_| libc::EINVAL)?;
    // SAFETY: a valid module file descriptor and a NUL-terminated parameter string, both
    // alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Unloads the module by delete_module(2), as rmmod does (without waiting: a module in use
/// gives EWOULDBLOCK); the error is the errno.
pub fn unload_module() -> Result<(), i32> {
    // SAFETY: a NUL-terminated module name, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_delete_module,
            c"rust_pagefault_demo".as_ptr(),
            libc::O_NONBLOCK,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Unloads the module if it is loaded (not loaded is fine), then loads the file at `path`
/// with `params`; the error is the load's errno.
pub fn reload_module(path: &str, params: &[&str]) -> Result<(), i32> {
    let _ = unload_module();
    load_module(path, params)
}

/// The field `name` of `/proc/meminfo` (e.g. `MemTotal`), in kB.
pub fn meminfo_kb(name: &str) -> io::Result<u64> {
    let text = fs::read_to_string("/proc/meminfo")?;
    parse::meminfo_kb(&text, name).map_err(invalid)
}

/// The `/proc/kpageflags` word of frame `pfn` (bits in [`parse::KPF_ANON`] and its siblings).
pub fn kpageflags(pfn: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut raw = [0u8; 8];
    File::open("/proc/kpageflags")?.read_exact_at(&mut raw, pfn * 8)?;
    Ok(u64::from_le_bytes(raw))
}

/// This process's mappings, `/proc/self/maps`.
pub fn read_maps() -> io::Result<Vec<parse::MapsLine>> {
    parse::parse_maps(&fs::read_to_string("/proc/self/maps")?).map_err(invalid)
}

pub fn read_stats() -> io::Result<Stats> {
    Stats::parse(&read_debugfs("stats")?).map_err(invalid)
}

pub fn read_frames() -> io::Result<Vec<FrameRow>> {
    parse::parse_frames(&read_debugfs("frames")?).map_err(invalid)
}

pub fn read_latency() -> io::Result<Vec<(u64, u64)>> {
    parse::parse_latency(&read_debugfs("latency")?).map_err(invalid)
}

/// An open instance of the device.
pub struct Device {
    file: File,
}

impl Device {
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            file: OpenOptions::new().read(true).write(true).open(DEVICE)?,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn fdinfo(&self) -> io::Result<FdInfo> {
        let text = fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd()))?;
        parse::parse_fdinfo(&text).map_err(invalid)
    }

    /// Maps `pages` pages from page offset `pgoff`, shared or private, readable and writable.
    pub fn map(&self, pages: usize, pgoff: usize, shared: bool) -> io::Result<Mapping> {
        let flags = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        Mapping::new(
            Some(self.fd()),
            pages,
            pgoff,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
        )
    }

    /// Like [`Device::map`], at an address aligned to `align` bytes (a power of two), as a
    /// PMD-level (2 MiB) mapping needs. The aligned blocks the mapping lies in hold no other
    /// mapping when it is made, so it shares no page-table page with them (yet).
    pub fn map_aligned(
        &self,
        pages: usize,
        pgoff: usize,
        shared: bool,
        align: usize,
    ) -> io::Result<Mapping> {
        self.map_skewed(pages, pgoff, shared, align, 0)
    }

    /// Like [`Device::map_aligned`], starting `skew` pages after an `align`ed address: a
    /// mapping that starts in the middle of a 2 MiB range, say.
    pub fn map_skewed(
        &self,
        pages: usize,
        pgoff: usize,
        shared: bool,
        align: usize,
        skew: usize,
    ) -> io::Result<Mapping> {
        let len = pages * page_size();
        // Reserve enough address space to find an aligned start in it with a whole aligned
        // block past the end (an aligned start is at most `align` in), then map over it.
        let hole = Mapping::new(
            None,
            (len + 2 * align) / page_size() + skew,
            0,
            libc::PROT_NONE,
            libc::MAP_PRIVATE,
        )?;
        let start = (hole.ptr as usize).next_multiple_of(align) + skew * page_size();
        let flags = libc::MAP_FIXED
            | if shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        let offset = (pgoff * page_size()) as u64;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: the range lies inside `hole`, which we own; MAP_FIXED replaces that part.
        let ptr = unsafe { mmap(start, len, prot, flags, self.fd(), offset)? };
        // Give back the rest of the hole around the new mapping.
        let (hole_start, hole_end) = (hole.ptr as usize, hole.ptr as usize + hole.len);
        std::mem::forget(hole);
        // SAFETY: unmapping the parts of our own reservation that the new mapping did not take.
        unsafe {
            if start > hole_start {
                libc::munmap(hole_start as *mut libc::c_void, start - hole_start);
            }
            if hole_end > start + len {
                libc::munmap((start + len) as *mut libc::c_void, hole_end - start - len);
            }
        }
        Ok(Mapping { ptr, len })
    }
}

/// The one `mmap(2)` call of the crate: at `addr` (0: the kernel's choice), `len` bytes from
/// byte `offset` of `fd` (-1 with `MAP_ANONYMOUS`).
///
/// # Safety
///
/// With `MAP_FIXED`, `[addr, addr + len)` must be memory the caller owns and gives up.
unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: RawFd,
    offset: u64,
) -> io::Result<*mut u8> {
    // SAFETY: without MAP_FIXED the kernel picks an address that touches no existing memory;
    // with it, the caller owns the range (this function's contract).
    let ptr = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            prot,
            flags,
            fd,
            offset as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// A mapping, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; threads touch disjoint or racing bytes through raw
// volatile accesses only.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(2)` of `pages` pages from page offset `pgoff`; `fd: None` maps anonymous memory.
    pub fn new(
        fd: Option<RawFd>,
        pages: usize,
        pgoff: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<Self> {
        let (fd, flags) = match fd {
            Some(fd) => (fd, flags),
            None => (-1, flags | libc::MAP_ANONYMOUS),
        };
        Self::raw(
            fd,
            pages * page_size(),
            (pgoff * page_size()) as u64,
            prot,
            flags,
        )
    }

    /// `pages` pages of private anonymous memory, read-write, in 4 KiB pages only
    /// (`MADV_NOHUGEPAGE`): one fault per page touched, as the tour and its chapters count.
    pub fn anonymous_4k(pages: usize) -> io::Result<Self> {
        let map = Self::new(
            None,
            pages,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        )?;
        map.madvise(libc::MADV_NOHUGEPAGE)?;
        Ok(map)
    }

    /// `mmap(2)` with the arguments as they are: a length and a byte offset that need not be
    /// whole pages, any flags. For the tests that hand the kernel bad arguments on purpose;
    /// a mapping that works anyway is unmapped when dropped, as any other.
    pub fn raw(fd: RawFd, len: usize, offset: u64, prot: i32, flags: i32) -> io::Result<Self> {
        // MAP_FIXED would replace whatever lies at the address: not for a raw test mapping.
        if flags & libc::MAP_FIXED != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: no MAP_FIXED (checked above).
        let ptr = unsafe { mmap(0, len, prot, flags, fd, offset)? };
        Ok(Self { ptr, len })
    }

    pub fn pages(&self) -> usize {
        self.len / page_size()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The virtual address of page `i`.
    pub fn addr(&self, i: usize) -> usize {
        self.ptr as usize + i * page_size()
    }

    fn at(&self, page: usize, offset: usize) -> *mut u64 {
        assert!(
            page * page_size() + offset + 8 <= self.len,
            "access outside the mapping"
        );
        (self.addr(page) + offset) as *mut u64
    }

    /// Writes `value` at byte `offset` of page `page` (a write fault if it is not mapped).
    pub fn write(&self, page: usize, offset: usize, value: u64) {
        // SAFETY: `at` checked that the word lies inside the mapping.
        unsafe { self.at(page, offset).write_volatile(value) }
    }

    /// Reads the word at byte `offset` of page `page` (a read fault if it is not mapped).
    pub fn read(&self, page: usize, offset: usize) -> u64 {
        // SAFETY: `at` checked that the word lies inside the mapping.
        unsafe { self.at(page, offset).read_volatile() }
    }

    /// Whether every byte of page `page` is zero.
    pub fn page_is_zero(&self, page: usize) -> bool {
        (0..page_size()).step_by(8).all(|o| self.read(page, o) == 0)
    }

    pub fn madvise(&self, advice: i32) -> io::Result<()> {
        // SAFETY: the range is exactly this mapping.
        if unsafe { libc::madvise(self.ptr.cast(), self.len, advice) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `mprotect(2)` on the whole mapping.
    pub fn mprotect(&self, prot: i32) -> io::Result<()> {
        // SAFETY: the range is exactly this mapping; the caller's accesses check nothing the
        // protection could break (they fault, as any access to such memory would).
        if unsafe { libc::mprotect(self.ptr.cast(), self.len, prot) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `mremap(2)` of the whole mapping to `new_len` bytes; on success the mapping is the new
    /// range (moved, with `MREMAP_MAYMOVE`, or resized in place). On failure nothing changes.
    pub fn mremap(&mut self, new_len: usize, flags: i32) -> io::Result<()> {
        // SAFETY: remapping exactly this mapping, which we own; the old range is not used
        // again (`self` takes the new one).
        let ptr = unsafe { libc::mremap(self.ptr.cast(), self.len, new_len, flags) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.ptr = ptr.cast();
        self.len = new_len;
        Ok(())
    }

    /// Maps anew over this mapping's own range (`MAP_FIXED`), from page offset `pgoff` of
    /// `fd` (`None`: anonymous memory): the kernel unmaps the old pages and frees their page
    /// tables as `munmap` does, and the new mapping takes the same addresses, with no moment
    /// in which another mapping could take them. For the tests that race walks against
    /// unmapping.
    pub fn remap_fixed(
        &self,
        fd: Option<RawFd>,
        pgoff: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<()> {
        let (fd, flags) = match fd {
            Some(fd) => (fd, flags),
            None => (-1, flags | libc::MAP_ANONYMOUS),
        };
        let offset = (pgoff * page_size()) as u64;
        // SAFETY: the range is exactly this mapping, which we own; it stays ours (the same
        // length, unmapped on drop), and its accessors check nothing a remap could break
        // (an access to a range mapped without permission faults, as any such access would).
        unsafe {
            mmap(
                self.ptr as usize,
                self.len,
                prot,
                flags | libc::MAP_FIXED,
                fd,
                offset,
            )?
        };
        Ok(())
    }

    /// Keeps the mapping for the rest of the program (never unmapped) and returns its start.
    pub fn leak(self) -> *mut u8 {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; nothing refers to it after drop.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// `/proc/self/pagemap`: the kernel's record of what each virtual page maps to.
pub struct Pagemap {
    file: File,
}

impl Pagemap {
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            file: File::open("/proc/self/pagemap")?,
        })
    }

    pub fn entry(&mut self, va: usize) -> io::Result<PagemapEntry> {
        let mut raw = [0u8; 8];
        self.file
            .seek(SeekFrom::Start((va / page_size() * 8) as u64))?;
        self.file.read_exact(&mut raw)?;
        Ok(PagemapEntry::from_raw(u64::from_le_bytes(raw)))
    }

    /// Another process's record, `/proc/<pid>/pagemap` (root may read any; PFNs need
    /// `CAP_SYS_ADMIN`), for `pfdemo watch --pid`.
    pub fn of(pid: u32) -> io::Result<Self> {
        Ok(Self {
            file: File::open(format!("/proc/{pid}/pagemap"))?,
        })
    }

    /// The present pages of `[start, end)` by `PAGEMAP_SCAN` (Linux 6.7): runs `(start, end,
    /// huge)` of pages the page tables map, `huge` for a run mapped by PMD (or PUD) leaves.
    /// pagemap's entries cannot tell a PMD leaf, and smaps' `FilePmdMapped` skips the special
    /// PMDs the module maps; the scan reads the entries themselves (`PAGE_IS_HUGE` for any
    /// huge leaf on a VMA that is not `VM_PFNMAP`; ours is `VM_MIXEDMAP`).
    pub fn scan_present(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64, bool)>> {
        const PAGE_IS_PRESENT: u64 = 1 << 3;
        const PAGE_IS_HUGE: u64 = 1 << 6;
        let mut runs = Vec::new();
        let mut regions = vec![PageRegion::default(); 256];
        let mut at = start;
        while at < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start: at,
                end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                category_mask: PAGE_IS_PRESENT,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_HUGE,
                ..PmScanArg::default()
            };
            // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points to `vec_len` writable
            // page_regions, all alive for the call.
            let n = unsafe { libc::ioctl(self.file.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for r in &regions[..n as usize] {
                runs.push((r.start, r.end, r.categories & PAGE_IS_HUGE != 0));
            }
            if arg.walk_end <= at {
                break;
            }
            at = arg.walk_end;
        }
        Ok(runs)
    }
}

/// `PAGEMAP_SCAN` = `_IOWR('f', 16, struct pm_scan_arg)` (`linux/fs.h`).
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;

/// `struct pm_scan_arg` (`linux/fs.h`).
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` (`linux/fs.h`): pages `[start, end)` of the same categories.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `/proc/self/stat` (or `status`), sampled into a caller's buffer: a sample allocates nothing, so two
/// samples taken right around one access count the faults of that access alone.
pub struct StatSampler {
    file: File,
}

impl StatSampler {
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            file: File::open("/proc/self/stat")?,
        })
    }

    /// `/proc/self/status` instead, for [`StatSampler::vm_pte_kb`]: the page-table pages a
    /// fault allocates show there (`VmPTE`).
    pub fn status() -> io::Result<Self> {
        Ok(Self {
            file: File::open("/proc/self/status")?,
        })
    }

    /// The `VmPTE` line of a `/proc/self/status` sample: the process's page-table pages, in
    /// kB (4 per table page).
    pub fn vm_pte_kb(sample: &[u8]) -> io::Result<u64> {
        let text = std::str::from_utf8(sample)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        parse::meminfo_kb(text, "VmPTE").map_err(invalid)
    }

    /// The calling thread's own counters (`/proc/thread-self/stat`), not the whole
    /// process's: for a toucher whose faults another thread of the process resolves.
    pub fn open_thread() -> io::Result<Self> {
        Ok(Self {
            file: File::open("/proc/thread-self/stat")?,
        })
    }

    /// Reads the file into `buf` (which the caller has already written, so the kernel's copy
    /// into it cannot fault) and returns its length.
    pub fn sample(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, 0)?;
        if n == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/self/stat does not fit the sample buffer",
            ));
        }
        Ok(n)
    }

    /// A sample of the minor-fault counter taken right before `access` and one right after
    /// it, with nothing in between that could fault (no allocation, buffers already
    /// written): the faults of that access and nothing else's.
    pub fn minflt_around(&self, access: impl FnOnce()) -> io::Result<(u64, u64)> {
        let (mut b0, mut b1) = ([0u8; 1024], [0u8; 1024]);
        let n0 = self.sample(&mut b0)?;
        access();
        let n1 = self.sample(&mut b1)?;
        let (before, _) = Self::faults(&b0[..n0])?;
        let (after, _) = Self::faults(&b1[..n1])?;
        Ok((before, after))
    }

    /// The minor and major fault counts in a sample.
    pub fn faults(sample: &[u8]) -> io::Result<(u64, u64)> {
        let text = std::str::from_utf8(sample)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        parse::parse_stat_faults(text).map_err(invalid)
    }
}

/// The kernel log, record by record, through `/dev/kmsg`.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    fn open() -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(Self {
            file: OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open("/dev/kmsg")?,
        })
    }

    /// The records logged from now on.
    pub fn from_now() -> io::Result<Self> {
        let mut k = Self::open()?;
        k.file.seek(SeekFrom::End(0))?;
        Ok(k)
    }

    /// Every record still in the kernel's buffer, then the new ones.
    pub fn from_start() -> io::Result<Self> {
        Self::open()
    }

    /// The messages of the records logged since the last read (without their
    /// `level,seq,time,flags;` prefix).
    pub fn read_new(&mut self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    let first = record.lines().next().unwrap_or("");
                    let message = first.split_once(';').map_or(first, |(_, m)| m);
                    out.push(message.to_string());
                }
                // The record was overwritten before we read it: go on with the next.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of the module's `events` time stamps
/// (`ktime_get_ns`) and of tracefs's `mono` trace clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This thread's id (the module's records call it `tid`; `getpid` is the process's).
pub fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Runs this thread on CPU `cpu` only (the flight recorder keeps a ring per CPU).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET and sched_setaffinity get a
    // valid set of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_scan_is_the_ioctl_of_linux_fs_h() {
        let size = std::mem::size_of::<PmScanArg>() as libc::c_ulong;
        assert_eq!(size, 96);
        assert_eq!(
            PAGEMAP_SCAN,
            (3 << 30) | (size << 16) | ((b'f' as libc::c_ulong) << 8) | 16
        );
    }

    /// The pages touched, and only those, come back as present runs, merged where adjacent.
    #[test]
    fn pagemap_scan_finds_the_touched_pages() {
        let map = Mapping::anonymous_4k(8).unwrap();
        for page in [1, 2, 5] {
            map.write(page, 0, 7);
        }
        let pm = Pagemap::of(std::process::id()).unwrap();
        let (start, end) = (map.addr(0) as u64, map.addr(0) as u64 + 8 * 4096);
        let runs = pm.scan_present(start, end).unwrap();
        let a = |p: u64| start + p * 4096;
        assert_eq!(runs, [(a(1), a(3), false), (a(5), a(6), false)]);
    }
}
