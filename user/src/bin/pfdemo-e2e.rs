//! End-to-end tests of rust_pagefault_demo, run as root inside the VM with the module loaded.
//!
//! Each case checks one line of the device contract against the module's debugfs counters
//! and the kernel's own `/proc/self/pagemap`. Output is TAP-like (`ok N - name`), closed by a
//! `N passed, N failed` line; the exit status is non-zero on any failure. Cases run one after
//! another in this process, so the module's global counters move only because of them.

use pfdemo::parse::Stats;
use pfdemo::sys::{self, page_size, read_frames, read_stats, Device, Mapping, Pagemap};
use std::process::Command;
use std::sync::{Arc, Barrier};

type Check = Result<(), String>;

/// A named test case.
type Case = (&'static str, fn() -> Check);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn stats() -> Result<Stats, String> {
    io("read stats", read_stats())
}

/// Checks the counter deltas since `before` (name, expected delta).
fn deltas(before: &Stats, expect: &[(&str, i64)]) -> Check {
    let now = stats()?;
    for (name, want) in expect {
        let got = now.delta(before, name);
        if got != *want {
            let moved: Vec<String> = now
                .0
                .keys()
                .filter(|k| now.delta(before, k) != 0)
                .map(|k| format!("{k} {:+}", now.delta(before, k)))
                .collect();
            return Err(format!(
                "{name} moved by {got}, expected {want} (moved: {})",
                moved.join(", ")
            ));
        }
    }
    Ok(())
}

/// The PFN that `frames` lists for (instance, pgoff).
fn frame_pfn(instance: u64, pgoff: u64) -> Result<Option<u64>, String> {
    Ok(io("read frames", read_frames())?
        .into_iter()
        .find(|r| r.instance == instance && r.pgoff == pgoff)
        .map(|r| r.pfn))
}

fn pagemap_pfn(pm: &mut Pagemap, va: usize) -> Result<Option<u64>, String> {
    Ok(io("read pagemap", pm.entry(va))?.pfn)
}

/// Pages each fault maps (the module's `prefault` setting).
fn prefault() -> Result<usize, String> {
    Ok(stats()?.get("prefault").max(1) as usize)
}

/// How many times our handler runs when a mapping of `pages` pages, none mapped yet, is
/// touched at `touches` in order: a fault maps the page and up to `prefault - 1` after it,
/// within the mapping.
fn expected_faults(touches: impl IntoIterator<Item = usize>, pages: usize) -> Result<i64, String> {
    let k = prefault()?;
    let mut present = vec![false; pages];
    let mut faults = 0;
    for p in touches {
        if !present[p] {
            faults += 1;
            present[p..(p + k).min(pages)]
                .iter_mut()
                .for_each(|x| *x = true);
        }
    }
    Ok(faults)
}

/// Pages in one frame: 512 with `huge`, else 1.
fn unit() -> Result<usize, String> {
    Ok(if stats()?.get("huge") == 1 { 512 } else { 1 })
}

/// Pages allocated when the pages `touched` get their frames: every frame they fall in.
fn allocs(touched: impl IntoIterator<Item = usize>) -> Result<i64, String> {
    let u = unit()?;
    let frames: std::collections::BTreeSet<usize> = touched.into_iter().map(|p| p / u).collect();
    Ok((frames.len() * u) as i64)
}

/// Module parameters every load in these tests gets (RPD_PARAMS, e.g. "prefault=16").
fn base_params() -> Vec<String> {
    std::env::var("RPD_PARAMS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn module_path() -> String {
    std::env::var("RPD_MODULE").unwrap_or_else(|_| "/lib/modules/rust_pagefault_demo.ko".into())
}

fn run(cmd: &str, args: &[&str]) -> Result<bool, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    Ok(out.status.success())
}

fn reload(params: &[&str]) -> Check {
    run("rmmod", &["rust_pagefault_demo"])?;
    let mut args = vec![module_path()];
    args.extend(base_params());
    args.extend(params.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ensure!(run("insmod", &args)?, "insmod {params:?} failed");
    Ok(())
}

/// Runs `f` in a forked child and returns how it ended: Ok(exit code) or Err(signal).
fn in_child(f: impl FnOnce() -> i32) -> Result<Result<i32, i32>, String> {
    // SAFETY: the child only runs `f` and exits; the test process has no other threads now.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork failed");
    if pid == 0 {
        // Rust's runtime catches SIGBUS (to detect stack overflows), resets it and lets the
        // access fault a second time; restore the default so one access is one fault.
        // SAFETY: setting a signal disposition in the single-threaded child.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
        let code = f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        Ok(Err(libc::WTERMSIG(status)))
    } else {
        Ok(Ok(libc::WEXITSTATUS(status)))
    }
}

fn errno_of(r: std::io::Result<Mapping>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

// ---------------------------------------------------------------------------------------
// The cases.

fn device_node() -> Check {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let m = io("stat device", std::fs::metadata(sys::DEVICE))?;
    ensure!(m.file_type().is_char_device(), "not a character device");
    ensure!(
        m.permissions().mode() & 0o777 == 0o600,
        "mode {:o}, expected 600",
        m.permissions().mode() & 0o777
    );
    for f in ["stats", "frames", "latency"] {
        let m = io(f, std::fs::metadata(format!("{}/{f}", sys::DEBUGFS)))?;
        ensure!(
            m.permissions().mode() & 0o777 == 0o400,
            "debugfs {f} mode {:o}",
            m.permissions().mode() & 0o777
        );
    }
    Ok(())
}

fn mmap_allocates_nothing() -> Check {
    let dev = io("open", Device::open())?;
    let before = stats()?;
    let map = io("mmap", dev.map(64, 0, true))?;
    let mut pm = io("pagemap", Pagemap::open())?;
    for i in 0..map.pages() {
        ensure!(
            !io("pagemap", pm.entry(map.addr(i)))?.present,
            "page {i} present before any touch"
        );
    }
    deltas(
        &before,
        &[("faults", 0), ("frames_allocated", 0), ("frames_live", 0)],
    )?;
    ensure!(
        io("fdinfo", dev.fdinfo())?.frames == 0,
        "fdinfo counts frames before any touch"
    );
    Ok(())
}

fn first_touch_faults_once_and_pfn_matches() -> Check {
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(1, 0, true))?;
    let before = stats()?;
    map.write(0, 0, 0xfeed);
    deltas(
        &before,
        &[
            ("faults", 1),
            ("write_faults", 1),
            ("read_faults", 0),
            ("frames_allocated", allocs([0])?),
            ("frames_live", allocs([0])?),
        ],
    )?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let pm_pfn =
        pagemap_pfn(&mut pm, map.addr(0))?.ok_or("pagemap: page not present after touch")?;
    let fr_pfn = frame_pfn(id, 0)?.ok_or("frames: no row for the touched page")?;
    ensure!(
        pm_pfn == fr_pfn,
        "frames says pfn {fr_pfn:#x}, pagemap says {pm_pfn:#x}"
    );
    // The second access is a plain memory access: no fault.
    let before = stats()?;
    ensure!(map.read(0, 0) == 0xfeed, "value did not read back");
    deltas(&before, &[("faults", 0)])
}

fn every_touched_page_matches_pagemap() -> Check {
    const N: usize = 256;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(N, 0, true))?;
    let before = stats()?;
    for i in (0..N).step_by(2) {
        map.write(i, 8, i as u64);
    }
    for i in (1..N).step_by(2) {
        let _ = map.read(i, 0);
    }
    let faults = expected_faults((0..N).step_by(2).chain((1..N).step_by(2)), N)?;
    if prefault()? == 1 {
        deltas(
            &before,
            &[
                ("write_faults", N as i64 / 2),
                ("read_faults", N as i64 / 2),
            ],
        )?;
    }
    deltas(
        &before,
        &[("faults", faults), ("frames_allocated", allocs(0..N)?)],
    )?;
    let frames = io("frames", read_frames())?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let mut seen = std::collections::HashSet::new();
    for i in 0..N {
        let fr = frames
            .iter()
            .find(|r| r.instance == id && r.pgoff == i as u64)
            .ok_or(format!("frames: pgoff {i} missing"))?;
        let pm_pfn =
            pagemap_pfn(&mut pm, map.addr(i))?.ok_or(format!("pagemap: page {i} not present"))?;
        ensure!(
            fr.pfn == pm_pfn,
            "pgoff {i}: frames {:#x} != pagemap {pm_pfn:#x}",
            fr.pfn
        );
        ensure!(seen.insert(pm_pfn), "pfn {pm_pfn:#x} used twice");
    }
    ensure!(
        io("fdinfo", dev.fdinfo())?.frames as i64 == allocs(0..N)?,
        "fdinfo frame count"
    );
    Ok(())
}

fn fresh_frames_are_zero() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(128, 0, true))?;
    for i in 0..map.pages() {
        ensure!(map.page_is_zero(i), "page {i} is not zero-filled");
    }
    Ok(())
}

fn data_persists_across_remap() -> Check {
    const N: usize = 32;
    let dev = io("open", Device::open())?;
    {
        let map = io("mmap", dev.map(N, 0, true))?;
        for i in 0..N {
            map.write(i, 0, 0xabc0 + i as u64);
        }
    }
    let before = stats()?;
    let map = io("mmap again", dev.map(N, 0, true))?;
    for i in 0..N {
        ensure!(
            map.read(i, 0) == 0xabc0 + i as u64,
            "page {i} lost its data"
        );
    }
    let faults = expected_faults(0..N, N)?;
    deltas(
        &before,
        &[
            ("faults", faults),
            ("frames_allocated", 0),
            ("frames_freed", 0),
        ],
    )?;
    // A mapping at an offset sees the same frames shifted.
    let off = io("mmap at offset", dev.map(4, 8, true))?;
    ensure!(
        off.read(0, 0) == 0xabc8,
        "offset mapping does not show pgoff 8"
    );
    Ok(())
}

fn instances_never_share_frames() -> Check {
    let (a, b) = (io("open a", Device::open())?, io("open b", Device::open())?);
    let (ia, ib) = (
        io("fdinfo", a.fdinfo())?.instance,
        io("fdinfo", b.fdinfo())?.instance,
    );
    ensure!(ia != ib, "two opens got the same instance id {ia}");
    let (ma, mb) = (
        io("mmap a", a.map(8, 0, true))?,
        io("mmap b", b.map(8, 0, true))?,
    );
    for i in 0..8 {
        ma.write(i, 0, 1);
        mb.write(i, 0, 2);
    }
    let mut pm = io("pagemap", Pagemap::open())?;
    for i in 0..8 {
        let (pa, pb) = (
            pagemap_pfn(&mut pm, ma.addr(i))?,
            pagemap_pfn(&mut pm, mb.addr(i))?,
        );
        ensure!(
            pa.is_some() && pa != pb,
            "pgoff {i}: both instances map pfn {pa:?}"
        );
        ensure!(
            ma.read(i, 0) == 1 && mb.read(i, 0) == 2,
            "instances see each other's data"
        );
    }
    Ok(())
}

fn frames_freed_at_last_close() -> Check {
    let before = stats()?;
    {
        let dev = io("open", Device::open())?;
        let map = io("mmap", dev.map(20, 0, true))?;
        for i in 0..20 {
            map.write(i, 0, 7);
        }
        drop(map);
        // Frames survive munmap while the file is open.
        deltas(
            &before,
            &[
                ("frames_allocated", allocs(0..20)?),
                ("frames_freed", 0),
                ("frames_live", allocs(0..20)?),
                ("instances", 1),
            ],
        )?;
    }
    deltas(
        &before,
        &[
            ("frames_allocated", allocs(0..20)?),
            ("frames_freed", allocs(0..20)?),
            ("frames_live", 0),
            ("instances", 0),
        ],
    )?;
    let s = stats()?;
    ensure!(
        s.get("frames_allocated") - s.get("frames_freed") == s.get("frames_live"),
        "allocated - freed != live"
    );
    Ok(())
}

fn private_mapping_copies_on_write() -> Check {
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let shared = io("mmap shared", dev.map(4, 0, true))?;
    for i in 0..4 {
        shared.write(i, 0, 0xaaaa);
    }
    let private = io("mmap private", dev.map(4, 0, false))?;
    let before = stats()?;
    ensure!(
        private.read(0, 0) == 0xaaaa,
        "private mapping does not show the instance data"
    );
    private.write(1, 0, 0xbbbb);
    ensure!(
        private.read(1, 0) == 0xbbbb,
        "private write not visible to the writer"
    );
    ensure!(
        shared.read(1, 0) == 0xaaaa,
        "private write reached the instance frame"
    );
    // Our handler maps the instance frames read-only (no new frame); the write's copy is the
    // kernel's own work (do_wp_page), after our fault if page 1 was not mapped yet.
    let faults = expected_faults([0, 1], 4)?;
    deltas(&before, &[("frames_allocated", 0), ("faults", faults)])?;
    let mut pm = io("pagemap", Pagemap::open())?;
    let inst = frame_pfn(id, 1)?.ok_or("frames: pgoff 1 missing")?;
    let copy = pagemap_pfn(&mut pm, private.addr(1))?.ok_or("private page not present")?;
    ensure!(copy != inst, "private write did not get its own copy");
    let read_only = pagemap_pfn(&mut pm, private.addr(0))?;
    ensure!(
        read_only == frame_pfn(id, 0)?,
        "private read does not map the instance frame"
    );
    // Writes through the shared mapping after the copy are not seen by the private copy.
    shared.write(1, 0, 0xcccc);
    ensure!(
        private.read(1, 0) == 0xbbbb,
        "private copy changed under the writer"
    );
    Ok(())
}

fn fork_children_share_frames() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(8, 0, true))?;
    for i in 0..8 {
        map.write(i, 0, 100 + i as u64);
    }
    let mut pm = io("pagemap", Pagemap::open())?;
    let parent_pfns: Vec<_> = (0..8)
        .map(|i| pagemap_pfn(&mut pm, map.addr(i)))
        .collect::<Result<_, _>>()?;
    let before = stats()?;
    let status = in_child(|| {
        let Ok(mut pm) = Pagemap::open() else {
            return 10;
        };
        for (i, parent_pfn) in parent_pfns.iter().enumerate() {
            if map.read(i, 0) != 100 + i as u64 {
                return 11;
            }
            if pm.entry(map.addr(i)).ok().and_then(|e| e.pfn) != *parent_pfn {
                return 12;
            }
        }
        map.write(3, 0, 0xc41d);
        0
    })?;
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (11: data, 12: pfn differs)"
    );
    ensure!(
        map.read(3, 0) == 0xc41d,
        "parent does not see the child's write"
    );
    deltas(&before, &[("frames_allocated", 0)])
}

fn concurrent_first_touch_allocates_once() -> Check {
    const ROUNDS: usize = 64;
    let threads = 4;
    let dev = io("open", Device::open())?;
    let map = Arc::new(io("mmap", dev.map(ROUNDS, 0, true))?);
    let before = stats()?;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (map, barrier) = (map.clone(), barrier.clone());
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    barrier.wait();
                    map.write(i, 8 * t, t as u64 + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")?;
    }
    deltas(
        &before,
        &[
            ("frames_allocated", allocs(0..ROUNDS)?),
            ("frames_live", allocs(0..ROUNDS)?),
        ],
    )?;
    for i in 0..ROUNDS {
        for t in 0..threads {
            ensure!(
                map.read(i, 8 * t) == t as u64 + 1,
                "page {i}: thread {t}'s write was lost"
            );
        }
    }
    Ok(())
}

fn bad_mmaps_are_refused() -> Check {
    let dev = io("open", Device::open())?;
    let before = stats()?;
    let size = 65536; // the default max_pages
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let fd = Some(dev.fd());
    let cases: [(&str, Option<i32>, Option<i32>); 6] = [
        (
            "huge offset",
            errno_of(Mapping::new(fd, 1, 1 << 50, rw, libc::MAP_SHARED)),
            Some(libc::EINVAL),
        ),
        (
            "past the end",
            errno_of(Mapping::new(fd, size + 1, 0, rw, libc::MAP_SHARED)),
            Some(libc::EINVAL),
        ),
        (
            "offset past the end",
            errno_of(Mapping::new(fd, 2, size - 1, rw, libc::MAP_SHARED)),
            Some(libc::EINVAL),
        ),
        (
            "zero length",
            errno_of(Mapping::new(fd, 0, 0, rw, libc::MAP_SHARED)),
            Some(libc::EINVAL),
        ),
        (
            "PROT_EXEC",
            errno_of(Mapping::new(
                fd,
                1,
                0,
                rw | libc::PROT_EXEC,
                libc::MAP_SHARED,
            )),
            Some(libc::EPERM),
        ),
        (
            "exactly the size",
            errno_of(Mapping::new(fd, size, 0, rw, libc::MAP_SHARED)),
            None,
        ),
    ];
    for (what, got, want) in cases {
        ensure!(got == want, "{what}: errno {got:?}, expected {want:?}");
    }
    deltas(&before, &[("mmap_refused", 4), ("frames_allocated", 0)])
}

fn mremap_growth_and_mprotect_exec_refused() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(4, 0, true))?;
    // SAFETY: growing our own mapping in place or moving it; failure leaves it unchanged.
    let r = unsafe {
        libc::mremap(
            map.as_ptr().cast(),
            map.len(),
            8 * page_size(),
            libc::MREMAP_MAYMOVE,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error();
    ensure!(
        r == libc::MAP_FAILED && errno == Some(libc::EFAULT),
        "mremap growth: {r:?}, errno {errno:?} (expected EFAULT, as for VM_DONTEXPAND)"
    );
    // SAFETY: changing the protection of our own mapping.
    let r = unsafe {
        libc::mprotect(
            map.as_ptr().cast(),
            map.len(),
            libc::PROT_READ | libc::PROT_EXEC,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error();
    ensure!(
        r != 0 && errno == Some(libc::EACCES),
        "mprotect(PROT_EXEC): {r}, errno {errno:?} (expected EACCES)"
    );
    // Shrinking is fine.
    // SAFETY: as above; shrinking in place.
    let r = unsafe { libc::mremap(map.as_ptr().cast(), map.len(), 2 * page_size(), 0) };
    ensure!(r != libc::MAP_FAILED, "mremap shrink failed");
    Ok(())
}

fn file_operations_we_do_not_offer() -> Check {
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
    for f in ["stats", "frames", "latency"] {
        let w = std::fs::write(format!("{}/{f}", sys::DEBUGFS), "0\n");
        ensure!(w.is_err(), "writing debugfs {f} succeeded");
    }
    Ok(())
}

fn latency_histogram_counts_every_fault() -> Check {
    let total: u64 = io("latency", sys::read_latency())?
        .iter()
        .map(|(_, c)| c)
        .sum();
    let faults = stats()?.get("faults");
    ensure!(
        total == faults,
        "histogram holds {total} faults, stats says {faults}"
    );
    Ok(())
}

fn rmmod_refused_while_open() -> Check {
    let dev = io("open", Device::open())?;
    ensure!(
        !run("rmmod", &["rust_pagefault_demo"])?,
        "rmmod succeeded with a file open"
    );
    drop(dev);
    ensure!(
        run("rmmod", &["rust_pagefault_demo"])?,
        "rmmod failed after the last close"
    );
    ensure!(
        std::fs::metadata(sys::DEVICE).is_err(),
        "device node left after rmmod"
    );
    reload(&[])?;
    Ok(())
}

fn invalid_parameters_refused() -> Check {
    run("rmmod", &["rust_pagefault_demo"])?;
    let m = module_path();
    // (An unknown parameter is not ours to refuse: the kernel ignores it with a warning.)
    for bad in [
        "max_pages=0",
        "max_pages=16777217",
        "max_total_pages=999999999999",
        "max_pages=abc",
        "max_pages=-1",
        "max_total_pages=1x",
        "prefault=0",
        "prefault=513",
        "huge=1 prefault=2",
        "huge=maybe",
    ] {
        let ok = run("insmod", &[&m, bad])?;
        if ok {
            run("rmmod", &["rust_pagefault_demo"])?;
        }
        ensure!(!ok, "insmod accepted {bad}");
    }
    let params = base_params();
    let mut args = vec![m.as_str()];
    args.extend(params.iter().map(String::as_str));
    ensure!(run("insmod", &args)?, "insmod with {params:?} failed");
    Ok(())
}

fn sigbus_at_the_cap() -> Check {
    // A cap smaller than the instance: the cap, not the size, stops growth. Sizes are in
    // frames of `u` pages (512 with huge frames), touched one page per frame.
    let u = unit()?;
    let (size, cap) = (64 * u, 16 * u);
    reload(&[
        &format!("max_pages={size}"),
        &format!("max_total_pages={cap}"),
    ])?;
    let result = (|| -> Check {
        let dev = io("open", Device::open())?;
        let map = io("mmap", dev.map(size, 0, true))?;
        for i in 0..16 {
            map.write(i * u, 0, i as u64);
        }
        let before = stats()?;
        let status = in_child(|| {
            map.write(16 * u, 0, 1);
            0
        })?;
        ensure!(
            status == Err(libc::SIGBUS),
            "touch past the cap ended with {status:?}, expected SIGBUS"
        );
        deltas(
            &before,
            &[("sigbus", 1), ("frames_allocated", 0), ("frames_live", 0)],
        )?;
        let s = stats()?;
        ensure!(
            s.get("frames_live") == cap as u64,
            "frames_live {} at the cap {cap}",
            s.get("frames_live")
        );
        // Pages below the cap are intact, and a second instance is capped too.
        for i in 0..16 {
            ensure!(map.read(i * u, 0) == i as u64, "frame {i} changed");
        }
        let other = io("open", Device::open())?;
        let om = io("mmap", other.map(1, 0, true))?;
        let status = in_child(|| {
            om.write(0, 0, 1);
            0
        })?;
        ensure!(
            status == Err(libc::SIGBUS),
            "second instance got a frame past the cap"
        );
        drop((om, other, map, dev));
        let s = stats()?;
        ensure!(
            s.get("frames_live") == 0 && s.get("frames_allocated") == s.get("frames_freed"),
            "frames leaked: {:?}",
            s.0
        );
        // A mapping past max_pages is refused at mmap time.
        let dev = io("open", Device::open())?;
        ensure!(
            errno_of(dev.map(size + 1, 0, true)) == Some(libc::EINVAL),
            "mmap past max_pages={size} not refused"
        );
        Ok(())
    })();
    reload(&[])?;
    result
}

/// A 2 MiB-aligned mapping: with `huge`, one PMD-level fault maps all 512 pages of a shared
/// mapping's frame, while a private mapping falls back to 4 KiB faults (copy on write needs
/// them); without `huge`, every page is its own 4 KiB fault.
fn aligned_mapping_uses_pmd_when_huge() -> Check {
    const TWO_MIB: usize = 2 << 20;
    let huge = unit()? == 512;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap aligned", dev.map_aligned(1024, 0, true, TWO_MIB))?;
    let before = stats()?;
    map.write(3, 0, 0x4242);
    let mut pm = io("pagemap", Pagemap::open())?;
    if huge {
        deltas(
            &before,
            &[("huge_faults", 1), ("faults", 0), ("frames_allocated", 512)],
        )?;
        let frames = io("frames", read_frames())?;
        for i in 0..512 {
            let pm_pfn =
                pagemap_pfn(&mut pm, map.addr(i))?.ok_or(format!("page {i} not present"))?;
            let row = frames
                .iter()
                .find(|r| r.instance == id && r.pgoff == i as u64);
            ensure!(
                row.map(|r| r.pfn) == Some(pm_pfn),
                "page {i}: pagemap {pm_pfn:#x}, frames {row:?}"
            );
        }
        ensure!(
            pm_pfn_absent(&mut pm, &map, 512)?,
            "the second 2 MiB was mapped too"
        );
    } else {
        let k = prefault()?;
        deltas(
            &before,
            &[
                ("huge_faults", 0),
                ("faults", 1),
                ("frames_allocated", allocs(3..3 + k)?),
            ],
        )?;
        ensure!(
            pm_pfn_absent(&mut pm, &map, 3 + k)?,
            "more than the prefault window was mapped"
        );
    }
    // A private mapping of the same frames: reads see the data, writes are private copies.
    let private = io(
        "mmap private aligned",
        dev.map_aligned(512, 0, false, TWO_MIB),
    )?;
    let before = stats()?;
    ensure!(
        private.read(3, 0) == 0x4242,
        "private mapping does not show the data"
    );
    private.write(3, 0, 0x5151);
    ensure!(
        map.read(3, 0) == 0x4242,
        "private write reached the instance frame"
    );
    let fallbacks = if huge { 1 } else { 0 };
    deltas(
        &before,
        &[("huge_fallbacks", fallbacks), ("frames_allocated", 0)],
    )
}

/// Where one PMD cannot map a whole frame inside the mapping, every mode takes 4 KiB faults:
/// a 2 MiB-aligned mapping shorter than 2 MiB, and an aligned one whose file offset is not a
/// multiple of 2 MiB.
fn pmd_only_where_a_whole_frame_fits() -> Check {
    const TWO_MIB: usize = 2 << 20;
    let dev = io("open", Device::open())?;
    let short = io("mmap short", dev.map_aligned(256, 0, true, TWO_MIB))?;
    let before = stats()?;
    short.write(0, 0, 1);
    short.write(255, 0, 2);
    let faults = expected_faults([0, 255], 256)?;
    deltas(&before, &[("huge_faults", 0), ("faults", faults)])?;
    let skewed = io("mmap at pgoff 3", dev.map_aligned(1024, 3, true, TWO_MIB))?;
    let before = stats()?;
    skewed.write(0, 0, 3);
    deltas(&before, &[("huge_faults", 0), ("faults", 1)])?;
    ensure!(
        short.read(3, 0) == 3,
        "pgoff 3 is not shared between the two mappings"
    );
    Ok(())
}

/// Frames are charged to the memory cgroup of the task that faults them in, as anonymous
/// memory is (`GFP_KERNEL_ACCOUNT`): a child in a cgroup of its own sees `memory.current`
/// grow by at least the frames it touched.
fn frames_charged_to_the_touchers_memcg() -> Check {
    const CG: &str = "/sys/fs/cgroup";
    if !std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains(" cgroup2 ")) {
        ensure!(
            run("mount", &["-t", "cgroup2", "none", CG])?,
            "mounting cgroup2 failed"
        );
    }
    io(
        "enable the memory controller",
        std::fs::write(format!("{CG}/cgroup.subtree_control"), "+memory"),
    )?;
    let group = format!("{CG}/rpd-e2e");
    let _ = std::fs::create_dir(&group);
    let pages = 256;
    let frames = allocs(0..pages)? as u64;
    let status = in_child(|| {
        let current = || -> u64 {
            std::fs::read_to_string(format!("{group}/memory.current"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        if std::fs::write(
            format!("{group}/cgroup.procs"),
            std::process::id().to_string(),
        )
        .is_err()
        {
            return 10;
        }
        let Ok(dev) = Device::open() else { return 11 };
        let Ok(map) = dev.map(pages, 0, true) else {
            return 12;
        };
        let before = current();
        for p in 0..pages {
            map.write(p, 0, 1);
        }
        let grown = current().saturating_sub(before);
        if grown < frames * page_size() as u64 {
            eprintln!("memory.current grew by {grown} bytes for {frames} frames");
            return 13;
        }
        0
    })?;
    let _ = std::fs::remove_dir(&group);
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (10: join cgroup, 11/12: open/mmap, 13: not charged)"
    );
    Ok(())
}

/// The rest of the bad-input matrix: an unaligned offset, MAP_SHARED_VALIDATE (the
/// "private and shared" flag combination, which checks the flags), and mprotect upgrading a
/// private read-only mapping to writable (allowed; writes are private copies).
fn offsets_flags_and_mprotect() -> Check {
    let dev = io("open", Device::open())?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let fd = dev.fd();
    // SAFETY: asking for new mappings at addresses of the kernel's choice.
    let unaligned =
        unsafe { libc::mmap(std::ptr::null_mut(), 4096, rw, libc::MAP_SHARED, fd, 100) };
    ensure!(
        unaligned == libc::MAP_FAILED
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL),
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
    // SAFETY: changing the protection of our own mapping.
    let r = unsafe { libc::mprotect(ro.as_ptr().cast(), ro.len(), rw) };
    ensure!(r == 0, "mprotect(PROT_WRITE) on a private mapping failed");
    ro.write(0, 0, 0x2222);
    ensure!(
        ro.read(0, 0) == 0x2222 && shared.read(0, 0) == 0x1111,
        "a write after mprotect reached the instance frame"
    );
    Ok(())
}

/// The tools say in one line what is missing, and how to fix it.
fn tools_explain_what_is_missing() -> Check {
    // Not root: a child drops to nobody and asks for the stats.
    let out = Command::new("/bin/pfdemo").arg("stats").output();
    let root_ok = out.as_ref().map(|o| o.status.success()).unwrap_or(false);
    ensure!(root_ok, "pfdemo stats failed as root");
    let status = in_child(|| {
        // SAFETY: dropping privileges in the child only.
        if unsafe { libc::setgid(65534) } != 0 || unsafe { libc::setuid(65534) } != 0 {
            return 20;
        }
        match Command::new("/bin/pfdemo").arg("stats").output() {
            Ok(o) if o.status.code() == Some(2) => {
                let err = String::from_utf8_lossy(&o.stderr);
                if err.contains("not root") && err.lines().count() == 1 {
                    0
                } else {
                    21
                }
            }
            _ => 22,
        }
    })?;
    ensure!(
        status == Ok(0),
        "as nobody: {status:?} (21: message, 22: exit status)"
    );
    // A reader that goes away early (`| head`) ends pfdemo quietly, without a panic. 4096
    // frames make `frames` print far more than a pipe holds, so the write must hit EPIPE.
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(4096, 0, true))?;
    (0..4096).for_each(|p| map.write(p, 0, 1));
    let script = "/bin/pfdemo frames 2>/tmp/pipe.err | head -n 1 >/dev/null; cat /tmp/pipe.err";
    let piped = io(
        "pfdemo frames | head",
        Command::new("sh").args(["-c", script]).output(),
    )?;
    drop((map, dev));
    let said = String::from_utf8_lossy(&piped.stdout);
    ensure!(
        !said.contains("panicked"),
        "pfdemo panicked on a closed pipe: {said}"
    );
    // No module: the device is missing.
    ensure!(run("rmmod", &["rust_pagefault_demo"])?, "rmmod failed");
    let out = Command::new("/bin/pfdemo").arg("stats").output();
    reload(&[])?;
    let out = io("pfdemo stats", out)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2) && err.contains("not loaded") && err.contains("insmod"),
        "without the module: status {:?}, {err:?}",
        out.status.code()
    );
    Ok(())
}

fn pm_pfn_absent(pm: &mut Pagemap, map: &Mapping, page: usize) -> Result<bool, String> {
    Ok(!io("pagemap", pm.entry(map.addr(page)))?.present)
}

fn main() {
    let page = page_size();
    if let Err(e) = sys::check_environment(true) {
        eprintln!("pfdemo-e2e: {e}");
        std::process::exit(2);
    }
    assert_eq!(page, 4096, "the tests assume 4 KiB pages");
    let cases: &[Case] = &[
        ("device node is 0600 and debugfs files 0400", device_node),
        ("mmap allocates nothing", mmap_allocates_nothing),
        (
            "first touch: one fault, one frame, PFN equals pagemap",
            first_touch_faults_once_and_pfn_matches,
        ),
        (
            "every touched page: frames PFN equals pagemap PFN",
            every_touched_page_matches_pagemap,
        ),
        ("fresh frames are zero-filled", fresh_frames_are_zero),
        (
            "data persists across munmap and mmap",
            data_persists_across_remap,
        ),
        (
            "separate instances never share frames",
            instances_never_share_frames,
        ),
        (
            "frames survive munmap and are freed at the last close",
            frames_freed_at_last_close,
        ),
        (
            "MAP_PRIVATE copies on write",
            private_mapping_copies_on_write,
        ),
        (
            "fork children share MAP_SHARED frames",
            fork_children_share_frames,
        ),
        (
            "concurrent first touch allocates exactly one frame",
            concurrent_first_touch_allocates_once,
        ),
        (
            "bad mmaps are refused (EINVAL, EPERM)",
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
            "latency histogram counts every fault",
            latency_histogram_counts_every_fault,
        ),
        (
            "2 MiB aligned mapping: one PMD fault with huge, 4 KiB faults without",
            aligned_mapping_uses_pmd_when_huge,
        ),
        (
            "PMD only where a whole frame fits in the mapping",
            pmd_only_where_a_whole_frame_fits,
        ),
        (
            "frames are charged to the toucher's memory cgroup",
            frames_charged_to_the_touchers_memcg,
        ),
        (
            "unaligned offset, MAP_SHARED_VALIDATE and mprotect on private maps",
            offsets_flags_and_mprotect,
        ),
        (
            "the tools explain a missing module or missing root in one line",
            tools_explain_what_is_missing,
        ),
        (
            "SIGBUS at max_total_pages, counts intact",
            sigbus_at_the_cap,
        ),
        (
            "rmmod refused while a file is open, clean after",
            rmmod_refused_while_open,
        ),
        (
            "invalid module parameters are refused",
            invalid_parameters_refused,
        ),
    ];
    println!(
        "TAP version 13\n1..{}\n# module parameters: {:?}",
        cases.len(),
        base_params()
    );
    let (mut passed, mut failed) = (0, 0);
    for (n, (name, case)) in cases.iter().enumerate() {
        match case() {
            Ok(()) => {
                passed += 1;
                println!("ok {} - {name}", n + 1);
            }
            Err(why) => {
                failed += 1;
                println!("not ok {} - {name}\n# {why}", n + 1);
            }
        }
    }
    println!("e2e: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
