//! Bad input, refused as the README's "What bad input gets" says: `mmap` arguments, growth by
//! `mremap`, `PROT_EXEC`, the file operations the device does not offer, offsets and flags.

use crate::expect::*;

pub const CASES: &[Case] = &[
    (
        "bad mmaps are refused (EINVAL, EPERM, ENOMEM, EOVERFLOW)",
        bad_mmaps_are_refused,
    ),
    (
        "mremap growth and mprotect(PROT_EXEC) are refused",
        mremap_growth_and_mprotect_exec_refused,
    ),
    (
        "read, write, ioctl and debugfs writes are refused",
        file_operations_we_do_not_offer,
    ),
    (
        "unaligned offset, MAP_SHARED_VALIDATE and mprotect on private maps",
        offsets_flags_and_mprotect,
    ),
];

fn bad_mmaps_are_refused() -> Check {
    let dev = io("open", Device::open())?;
    let size = io("fdinfo", dev.fdinfo())?.size_pages as usize;
    let before = stats()?;
    let ps = page_size();
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let fd = dev.fd();
    let shared = libc::MAP_SHARED;
    // mmap(2) with a raw length and byte offset; the errno if it fails.
    let mmap_errno =
        |fd, len, offset, prot, flags| errno_of(Mapping::raw(fd, len, offset, prot, flags));
    // (what, errno seen, errno expected, refused by our mmap and so counted in mmap_refused)
    let cases: [(&str, Option<i32>, Option<i32>, bool); 9] = [
        (
            "offset 1 << 62 bytes (far past the instance)",
            mmap_errno(fd, ps, 1 << 62, rw, shared),
            Some(libc::EINVAL),
            true,
        ),
        (
            "one page past the end",
            mmap_errno(fd, (size + 1) * ps, 0, rw, shared),
            Some(libc::EINVAL),
            true,
        ),
        (
            "offset past the end",
            mmap_errno(fd, 2 * ps, ((size - 1) * ps) as u64, rw, shared),
            Some(libc::EINVAL),
            true,
        ),
        (
            "huge length 1 << 44 (16 TiB)",
            mmap_errno(fd, 1 << 44, 0, rw, shared),
            Some(libc::EINVAL),
            true,
        ),
        (
            "huge length 1 << 47 (more than the address space)",
            mmap_errno(fd, 1 << 47, 0, rw, shared),
            Some(libc::ENOMEM),
            false,
        ),
        (
            "largest offset (offset + length wraps)",
            mmap_errno(fd, ps, !(ps as u64 - 1), rw, shared),
            Some(libc::EOVERFLOW),
            false,
        ),
        (
            "zero length",
            mmap_errno(fd, 0, 0, rw, shared),
            Some(libc::EINVAL),
            false,
        ),
        (
            "PROT_EXEC",
            mmap_errno(fd, ps, 0, rw | libc::PROT_EXEC, shared),
            Some(libc::EPERM),
            true,
        ),
        (
            "exactly the size",
            mmap_errno(fd, size * ps, 0, rw, shared),
            None,
            false,
        ),
    ];
    tried(cases.len() - 1);
    for (what, got, want, _) in cases {
        ensure!(got == want, "{what}: errno {got:?}, expected {want:?}");
    }
    let refused = cases.iter().filter(|c| c.3).count() as i64;
    deltas(
        &before,
        &[("mmap_refused", refused), ("frames_allocated", 0)],
    )
}

fn mremap_growth_and_mprotect_exec_refused() -> Check {
    tried(2);
    let dev = io("open", Device::open())?;
    let mut map = io("mmap", dev.map(4, 0, true))?;
    let grown = map.mremap(8 * page_size(), libc::MREMAP_MAYMOVE);
    ensure!(
        errno_of(grown.as_ref()) == Some(libc::EFAULT),
        "mremap growth: {grown:?} (expected EFAULT, as for VM_DONTEXPAND)"
    );
    let exec = map.mprotect(libc::PROT_READ | libc::PROT_EXEC);
    ensure!(
        errno_of(exec.as_ref()) == Some(libc::EACCES),
        "mprotect(PROT_EXEC): {exec:?} (expected EACCES)"
    );
    // Shrinking is fine.
    let shrunk = map.mremap(2 * page_size(), 0);
    ensure!(shrunk.is_ok(), "mremap shrink failed: {shrunk:?}");
    Ok(())
}

fn file_operations_we_do_not_offer() -> Check {
    tried(6);
    let dev = io("open", Device::open())?;
    let mut buf = [0u8; 16];
    let errno = || std::io::Error::last_os_error().raw_os_error();
    // SAFETY: reading into and writing from our own buffer.
    let r = unsafe { libc::read(dev.fd(), buf.as_mut_ptr().cast(), buf.len()) };
    ensure!(
        r < 0 && errno() == Some(libc::EINVAL),
        "read: {r}, errno {:?}",
        errno()
    );
    // SAFETY: as above.
    let r = unsafe { libc::write(dev.fd(), buf.as_ptr().cast(), buf.len()) };
    ensure!(
        r < 0 && errno() == Some(libc::EINVAL),
        "write: {r}, errno {:?}",
        errno()
    );
    // SAFETY: an ioctl number no driver knows, with no argument.
    let r = unsafe { libc::ioctl(dev.fd(), 0x1234_5678, 0) };
    ensure!(
        r < 0 && errno() == Some(libc::ENOTTY),
        "ioctl: {r}, errno {:?}",
        errno()
    );
    // Root may open the 0400 files for writing (it overrides the mode); the write itself is
    // refused, as the files have no write operation.
    for f in sys::DEBUGFS_FILES {
        use std::io::Write;
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(sys::debugfs_path(f))
            .and_then(|mut file| file.write(b"0\n"));
        let errno = w.as_ref().err().and_then(|e| e.raw_os_error());
        ensure!(
            errno == Some(libc::EINVAL),
            "writing debugfs {f}: {w:?}, expected EINVAL"
        );
    }
    Ok(())
}

/// The rest of the bad-input matrix: an unaligned offset, MAP_SHARED_VALIDATE (the
/// "private and shared" flag combination, which checks the flags), and mprotect upgrading a
/// private read-only mapping to writable (allowed; writes are private copies).
fn offsets_flags_and_mprotect() -> Check {
    tried(3);
    let dev = io("open", Device::open())?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let fd = dev.fd();
    let unaligned = Mapping::raw(fd, 4096, 100, rw, libc::MAP_SHARED);
    ensure!(
        errno_of(unaligned) == Some(libc::EINVAL),
        "an unaligned offset was not refused with EINVAL"
    );
    let validated = Mapping::new(Some(fd), 2, 0, rw, libc::MAP_SHARED_VALIDATE);
    ensure!(
        validated.is_ok(),
        "MAP_SHARED_VALIDATE refused: {:?}",
        validated.err()
    );
    // MAP_SYNC is for DAX files; MAP_SHARED_VALIDATE must refuse it for us.
    let sync = Mapping::new(
        Some(fd),
        2,
        0,
        rw,
        libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
    );
    ensure!(
        errno_of(sync) == Some(libc::EOPNOTSUPP),
        "MAP_SHARED_VALIDATE | MAP_SYNC was not refused with EOPNOTSUPP"
    );
    let shared = io("mmap shared", dev.map(2, 0, true))?;
    shared.write(0, 0, 0x1111);
    let ro = io(
        "mmap private read-only",
        Mapping::new(Some(fd), 2, 0, libc::PROT_READ, libc::MAP_PRIVATE),
    )?;
    ensure!(
        ro.read(0, 0) == 0x1111,
        "read-only private mapping does not show the data"
    );
    ensure!(
        ro.mprotect(rw).is_ok(),
        "mprotect(PROT_WRITE) on a private mapping failed"
    );
    ro.write(0, 0, 0x2222);
    ensure!(
        ro.read(0, 0) == 0x2222 && shared.read(0, 0) == 0x1111,
        "a write after mprotect reached the instance frame"
    );
    Ok(())
}
