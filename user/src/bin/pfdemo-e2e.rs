//! End-to-end tests of rust_pagefault_demo, run as root inside the VM with the module loaded.
//!
//! Each case checks one line of the device contract against the module's debugfs counters
//! and the kernel's own `/proc/self/pagemap`. Output is TAP-like (`ok N - name`), closed by a
//! `N passed, N failed` line; the exit status is non-zero on any failure. Cases run one after
//! another in this process, so the module's global counters move only because of them.

use pfdemo::parse::{self, Stats};
use pfdemo::sys::{self, page_size, read_frames, read_stats, Device, Kmsg, Mapping, Pagemap};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Bad inputs tried (each refused or handled as the README's table says), for the
/// reliability figures.
static BAD_INPUTS: AtomicUsize = AtomicUsize::new(0);

fn tried(n: usize) {
    BAD_INPUTS.fetch_add(n, Ordering::Relaxed);
}

/// The counter `name`; a stats file without it fails the case (no silent 0).
fn stat(s: &Stats, name: &str) -> Result<u64, String> {
    s.value(name).map_err(|e| e.to_string())
}

/// Checks the counter deltas since `before` (name, expected delta).
fn deltas(before: &Stats, expect: &[(&str, i64)]) -> Check {
    let now = stats()?;
    for (name, want) in expect {
        let got = now.change(before, name).map_err(|e| e.to_string())?;
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
    Ok(stat(&stats()?, "prefault")?.max(1) as usize)
}

/// Which of `touches` (in order) fault when a mapping of `pages` pages, none mapped yet, is
/// touched: a fault maps the page and up to `prefault - 1` after it, within the mapping. Also
/// returns the pages present afterwards.
fn fault_pattern(
    touches: impl IntoIterator<Item = usize>,
    pages: usize,
) -> Result<(Vec<bool>, Vec<bool>), String> {
    let k = prefault()?;
    let mut present = vec![false; pages];
    let mut faulted = Vec::new();
    for p in touches {
        faulted.push(!present[p]);
        if !present[p] {
            present[p..(p + k).min(pages)]
                .iter_mut()
                .for_each(|x| *x = true);
        }
    }
    Ok((faulted, present))
}

/// How many times our handler runs for `touches` (see [`fault_pattern`]).
fn expected_faults(touches: impl IntoIterator<Item = usize>, pages: usize) -> Result<i64, String> {
    let (faulted, _) = fault_pattern(touches, pages)?;
    Ok(faulted.iter().filter(|f| **f).count() as i64)
}

/// Pages in one frame: 512 with `huge`, else 1.
fn unit() -> Result<usize, String> {
    Ok(if stat(&stats()?, "huge")? == 1 {
        512
    } else {
        1
    })
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

/// Runs `cmd` and returns its exit code (None: killed by a signal), stdout and stderr.
fn output(cmd: &str, args: &[&str]) -> Result<(Option<i32>, String, String), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `pfdemo ARGS`, which must exit 0; its stdout.
fn pfdemo(args: &[&str]) -> Result<String, String> {
    let (code, out, err) = output("/bin/pfdemo", args)?;
    ensure!(
        code == Some(0),
        "pfdemo {args:?} exited with {code:?}: {err}"
    );
    Ok(out)
}

/// The kernel log lines that `act` caused.
fn kernel_log_of<T>(act: impl FnOnce() -> T) -> Result<(T, Vec<String>), String> {
    let mut kmsg = io("open /dev/kmsg", Kmsg::from_now())?;
    let result = act();
    Ok((result, io("read /dev/kmsg", kmsg.read_new())?))
}

fn reload(params: &[&str]) -> Check {
    // Not loaded is fine: the load below is what must work.
    let _ = sys::unload_module();
    let mut args = base_params();
    args.extend(params.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let loaded = sys::load_module(&module_path(), &args);
    ensure!(
        loaded.is_ok(),
        "loading with {args:?} failed: errno {loaded:?}"
    );
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
    let n = allocs(0..20)?;
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
            ("frames_allocated", n),
            ("frames_freed", 0),
            ("frames_live", n),
            ("instances", 1),
        ],
    )?;
    // A second descriptor of the same open file: closing the first is not the last close.
    // SAFETY: duplicating a descriptor we own; the copy is closed below.
    let second = unsafe { libc::dup(dev.fd()) };
    ensure!(second >= 0, "dup failed");
    drop(dev);
    let after_first = deltas(
        &before,
        &[("frames_freed", 0), ("frames_live", n), ("instances", 1)],
    );
    // SAFETY: closing the duplicate we made; nothing else uses it.
    unsafe { libc::close(second) };
    after_first.map_err(|e| format!("after closing one of two descriptors: {e}"))?;
    deltas(
        &before,
        &[
            ("frames_allocated", n),
            ("frames_freed", n),
            ("frames_live", 0),
            ("instances", 0),
        ],
    )
    .map_err(|e| format!("after the last close: {e}"))?;
    let s = stats()?;
    ensure!(
        stat(&s, "frames_allocated")? - stat(&s, "frames_freed")? == stat(&s, "frames_live")?,
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
    let (u, k) = (unit()?, prefault()?);
    // The child touches a page that the parent never touched and that no fault of the parent
    // mapped (beyond its prefault window), in a frame of its own (beyond the first 2 MiB with
    // huge frames).
    let child_page = u + 2 * k + 40;
    let pages = child_page + 8;
    let dev = io("open", Device::open())?;
    let id = io("fdinfo", dev.fdinfo())?.instance;
    let map = io("mmap", dev.map(pages, 0, true))?;
    for i in 0..8 {
        map.write(i, 0, 100 + i as u64);
    }
    let mut pm = io("pagemap", Pagemap::open())?;
    let parent_pfns: Vec<_> = (0..8)
        .map(|i| pagemap_pfn(&mut pm, map.addr(i)))
        .collect::<Result<_, _>>()?;
    ensure!(
        frame_pfn(id, child_page as u64)?.is_none(),
        "pgoff {child_page} has a frame before the child touched it"
    );
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
        if pm.entry(map.addr(child_page)).map_or(true, |e| e.present) {
            return 13;
        }
        map.write(child_page, 0, 0xc41d_0001);
        // Tell the parent which frame the child got, through the frame itself.
        match pm.entry(map.addr(child_page)).ok().and_then(|e| e.pfn) {
            Some(pfn) => map.write(child_page, 8, pfn),
            None => return 14,
        }
        0
    })?;
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (11: data, 12: pfn differs, 13: page present before its touch, 14: not present after)"
    );
    ensure!(
        map.read(3, 0) == 0xc41d,
        "parent does not see the child's write"
    );
    let allocated = allocs(child_page..(child_page + k).min(pages))?;
    deltas(&before, &[("frames_allocated", allocated), ("faults", 1)])
        .map_err(|e| format!("after the child's touch: {e}"))?;
    // The parent's own page table has no entry for that page: its access faults, and our
    // handler maps the frame the child's fault allocated, without allocating again.
    ensure!(
        pm_pfn_absent(&mut pm, &map, child_page)?,
        "pgoff {child_page} present in the parent before it touched it"
    );
    ensure!(
        map.read(child_page, 0) == 0xc41d_0001,
        "parent does not see the value the child wrote to pgoff {child_page}"
    );
    let child_pfn = map.read(child_page, 8);
    let parent_pfn = pagemap_pfn(&mut pm, map.addr(child_page))?;
    let listed = frame_pfn(id, child_page as u64)?;
    ensure!(
        parent_pfn == Some(child_pfn) && listed == Some(child_pfn),
        "pgoff {child_page}: child pfn {child_pfn:#x}, parent pagemap {parent_pfn:x?}, frames {listed:x?}"
    );
    deltas(&before, &[("frames_allocated", allocated), ("faults", 2)])
        .map_err(|e| format!("after the parent's access: {e}"))
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

/// mmap(2) with a raw length and byte offset; the errno if it fails (a mapping that works is
/// unmapped at once).
fn mmap_errno(fd: i32, len: usize, offset: u64, prot: i32, flags: i32) -> Option<i32> {
    // SAFETY: asking for a new mapping at an address of the kernel's choice.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return std::io::Error::last_os_error().raw_os_error();
    }
    // SAFETY: unmapping the mapping just made.
    unsafe { libc::munmap(p, len) };
    None
}

fn bad_mmaps_are_refused() -> Check {
    let dev = io("open", Device::open())?;
    let size = io("fdinfo", dev.fdinfo())?.size_pages as usize;
    let before = stats()?;
    let ps = page_size();
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let fd = dev.fd();
    let shared = libc::MAP_SHARED;
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
            mmap_errno(fd, ps, u64::MAX & !(ps as u64 - 1), rw, shared),
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
    for f in ["stats", "frames", "latency"] {
        use std::io::Write;
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{}/{f}", sys::DEBUGFS))
            .and_then(|mut file| file.write(b"0\n"));
        let errno = w.as_ref().err().and_then(|e| e.raw_os_error());
        ensure!(
            errno == Some(libc::EINVAL),
            "writing debugfs {f}: {w:?}, expected EINVAL"
        );
    }
    Ok(())
}

fn latency_histogram_counts_every_fault() -> Check {
    let before = stats()?;
    let total: u64 = io("latency", sys::read_latency())?
        .iter()
        .map(|(_, c)| c)
        .sum();
    let after = stats()?;
    // Every call of the handler, 4 KiB (`faults`) and PMD-level (`huge_faults`), is timed.
    let calls =
        |s: &Stats| -> Result<u64, String> { Ok(stat(s, "faults")? + stat(s, "huge_faults")?) };
    let (calls0, calls1) = (calls(&before)?, calls(&after)?);
    ensure!(
        calls0 == calls1 && total == calls1,
        "histogram holds {total} faults, stats says faults + huge_faults = {calls1} ({calls0} before)"
    );
    ensure!(total > 0, "no fault was counted at all");
    Ok(())
}

fn rmmod_refused_while_open() -> Check {
    let dev = io("open", Device::open())?;
    // The open file holds a reference on the module: delete_module says EWOULDBLOCK (EAGAIN).
    tried(1);
    let busy = sys::unload_module();
    if busy.is_ok() {
        reload(&[])?;
    }
    ensure!(
        busy == Err(libc::EAGAIN),
        "rmmod with a file open: {busy:?}, expected Err(EAGAIN)"
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
    let ours = "rust_pagefault_demo: invalid module parameters:";
    let range = |p: &str, lo: u32, hi: u32| format!("{ours} {p} must be between {lo} and {hi}");
    let malformed =
        |v: &str, p: &str| format!("rust_pagefault_demo: `{v}' invalid for parameter `{p}'");
    // (parameters, the kernel log line it must cause): values out of range reach the module's
    // own check; malformed ones are refused by the kernel's parameter parser first.
    let cases = [
        ("max_pages=0", range("max_pages", 1, 16777216)),
        ("max_pages=16777217", range("max_pages", 1, 16777216)),
        (
            "max_total_pages=999999999999",
            format!("{ours} max_total_pages must not exceed the machine's RAM in pages"),
        ),
        ("prefault=0", range("prefault", 1, 512)),
        ("prefault=513", range("prefault", 1, 512)),
        (
            "huge=1 prefault=2",
            format!("{ours} prefault and huge cannot be combined"),
        ),
        (
            "huge=1 max_total_pages=511",
            format!("{ours} with huge, max_total_pages must hold one 2 MiB frame (512 pages)"),
        ),
        ("max_pages=abc", malformed("abc", "max_pages")),
        ("max_pages=-1", malformed("-1", "max_pages")),
        ("max_total_pages=1x", malformed("1x", "max_total_pages")),
        ("huge=maybe", malformed("maybe", "huge")),
    ];
    tried(cases.len());
    let mut problems = Vec::new();
    for (bad, line) in &cases {
        let words: Vec<&str> = bad.split_whitespace().collect();
        let (loaded, log) = kernel_log_of(|| sys::load_module(&module_path(), &words))?;
        if loaded.is_ok() {
            run("rmmod", &["rust_pagefault_demo"])?;
        }
        if loaded != Err(libc::EINVAL) {
            problems.push(format!(
                "{bad}: finit_module {loaded:?}, expected Err(EINVAL)"
            ));
        }
        if !log.iter().any(|l| l == line) {
            problems.push(format!(
                "{bad}: no {line:?} in the kernel log, which says {log:?}"
            ));
        }
    }
    let params = base_params();
    let mut args = vec![module_path()];
    args.extend(params.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ensure!(run("insmod", &args)?, "insmod with {params:?} failed");
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// An unknown parameter is not ours to refuse: the kernel loads the module and warns.
fn unknown_parameter_is_ignored_with_a_warning() -> Check {
    run("rmmod", &["rust_pagefault_demo"])?;
    tried(1);
    let mut params = base_params();
    params.push("no_such_knob=1".into());
    let words: Vec<&str> = params.iter().map(String::as_str).collect();
    let (loaded, log) = kernel_log_of(|| sys::load_module(&module_path(), &words))?;
    if loaded.is_err() {
        reload(&[])?;
    }
    ensure!(
        loaded.is_ok(),
        "insmod with an unknown parameter: {loaded:?}"
    );
    let warning = "rust_pagefault_demo: unknown parameter 'no_such_knob' ignored";
    ensure!(
        log.iter().any(|l| l == warning),
        "no {warning:?} in the kernel log: {log:?}"
    );
    Ok(())
}

fn sigbus_at_the_cap() -> Check {
    // A cap smaller than the instance: the cap, not the size, stops growth. Sizes are in
    // frames of `u` pages (512 with huge frames), touched one page per frame.
    let u = unit()?;
    let (size, cap) = (64 * u, 16 * u);
    tried(3);
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
            stat(&s, "frames_live")? == cap as u64,
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
            stat(&s, "frames_live")? == 0
                && stat(&s, "frames_allocated")? == stat(&s, "frames_freed")?,
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
    tried(3);
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

/// The stats file carries every counter the contract names, and the settings the tests
/// derive their expectations from.
fn stats_lists_every_contract_counter() -> Check {
    let s = stats()?;
    let mut names = Stats::REQUIRED.to_vec();
    names.extend([
        "huge_faults",
        "mmap_refused",
        "max_total_pages",
        "prefault",
        "huge",
    ]);
    let missing = s.missing(&names);
    ensure!(missing.is_empty(), "stats lacks {missing:?}");
    Ok(())
}

/// `max_total_pages` defaults to a quarter of RAM (MemTotal, in 4 KiB pages), unless
/// RPD_PARAMS sets it.
fn max_total_pages_defaults_to_a_quarter_of_ram() -> Check {
    let set = base_params()
        .iter()
        .find_map(|p| p.strip_prefix("max_total_pages=")?.parse::<u64>().ok());
    let meminfo = io("meminfo", std::fs::read_to_string("/proc/meminfo"))?;
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no MemTotal in /proc/meminfo")?;
    let want = match set {
        Some(n) if n > 0 => n,
        _ => (mem_kb / 4 / 4).max(1),
    };
    let got = stat(&stats()?, "max_total_pages")?;
    ensure!(
        got == want,
        "max_total_pages {got}, expected {want} (MemTotal {mem_kb} kB, RPD_PARAMS sets {set:?})"
    );
    Ok(())
}

/// The tools say in one line what is missing, and how to fix it.
fn tools_explain_what_is_missing() -> Check {
    let (code, _, err) = output("/bin/pfdemo", &["stats"])?;
    ensure!(code == Some(0), "pfdemo stats failed as root: {err}");
    // Not root: a child drops to nobody and asks for the stats.
    refused_in_child(
        "as nobody",
        || {
            // SAFETY: dropping privileges in the child only.
            unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 }
        },
        &["not root", "run as root"],
    )?;
    // No debugfs: a child in a mount namespace of its own unmounts it.
    refused_in_child(
        "without debugfs",
        || {
            // SAFETY: the child alone moves to a new mount namespace, where nothing
            // propagates back, and unmounts debugfs there.
            unsafe {
                libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) == 0
                    && libc::umount2(c"/sys/kernel/debug".as_ptr(), libc::MNT_DETACH) == 0
            }
        },
        &["debugfs is not mounted", "mount -t debugfs"],
    )?;
    ensure!(
        std::fs::metadata(sys::DEBUGFS).is_ok(),
        "debugfs went away outside the child's namespace"
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
    tried(1);
    ensure!(run("rmmod", &["rust_pagefault_demo"])?, "rmmod failed");
    let out = output("/bin/pfdemo", &["stats"]);
    reload(&[])?;
    let (code, _, err) = out?;
    ensure!(
        code == Some(2)
            && err.lines().count() == 1
            && err.contains("not loaded")
            && err.contains("insmod"),
        "without the module: status {code:?}, {err:?} (expected exit 2 and one line)"
    );
    Ok(())
}

/// A bad environment the tools must explain: in a forked child, after `setup` (false if it
/// could not do its part), `pfdemo stats` must exit 2 with one line holding all of `words`.
fn refused_in_child(what: &str, setup: impl FnOnce() -> bool, words: &[&str]) -> Check {
    tried(1);
    let status = in_child(|| if setup() { one_line_exit_2(words) } else { 20 })?;
    ensure!(
        status == Ok(0),
        "{what}: {status:?} (20: setup, 21: message, 22: exit status)"
    );
    Ok(())
}

/// In a forked child: `pfdemo stats` must exit 2 with one line on stderr holding every one of
/// `words`. Returns the child's exit code: 0 if so, 21 for the message, 22 for the status.
fn one_line_exit_2(words: &[&str]) -> i32 {
    match Command::new("/bin/pfdemo").arg("stats").output() {
        Ok(o) if o.status.code() == Some(2) => {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.lines().count() == 1 && words.iter().all(|w| err.contains(w)) {
                0
            } else {
                eprintln!("pfdemo stats said {err:?}");
                21
            }
        }
        _ => 22,
    }
}

/// `pfdemo touch ... --hold` in the background, up to its "holding" line; killed on drop.
struct Held {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Held {
    fn start(args: &[&str]) -> Result<Self, String> {
        let mut child = io(
            "spawn pfdemo touch --hold",
            Command::new("/bin/pfdemo")
                .arg("touch")
                .args(args)
                .arg("--hold")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn(),
        )?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut held = Held {
            child,
            lines: Vec::new(),
        };
        for line in std::io::BufReader::new(stdout).lines() {
            let line = io("read pfdemo touch", line)?;
            let done = line.starts_with("holding the mapping");
            held.lines.push(line);
            if done {
                return Ok(held);
            }
        }
        Err(format!(
            "pfdemo touch {args:?} ended before holding: {:?}",
            held.lines
        ))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `pfdemo touch` printed: its instance, its per-page rows (page, pagemap PFN, frames PFN,
/// faults column), the map lines and the module totals (faults, frames allocated).
struct Touched {
    instance: u64,
    rows: Vec<(usize, Option<u64>, Option<u64>, String)>,
    pictures: Vec<String>,
    totals: (i64, i64),
}

fn parse_touch(lines: &[String]) -> Result<Touched, String> {
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let instance = lines
        .iter()
        .find_map(|l| l.strip_prefix("instance ")?.split(',').next()?.parse().ok())
        .ok_or(format!("no instance line in {lines:?}"))?;
    let mut rows = Vec::new();
    for l in lines {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let (Some(page), Some(va)) = (cols.first(), cols.get(1)) else {
            continue;
        };
        let (Ok(page), true) = (page.parse::<usize>(), va.starts_with("0x")) else {
            continue;
        };
        ensure!(
            cols.len() >= 5 && cols[2] == page.to_string(),
            "bad row {l:?}"
        );
        rows.push((
            page,
            hex(cols[3]),
            hex(cols[4]),
            cols.get(5).unwrap_or(&"").to_string(),
        ));
    }
    let pictures = lines
        .iter()
        .filter(|l| l.starts_with('['))
        .cloned()
        .collect();
    let totals = lines
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix("module: faults +")?;
            let (faults, rest) = rest.split_once(", frames allocated +")?;
            let (allocated, _) = rest.split_once(',')?;
            Some((faults.parse().ok()?, allocated.parse().ok()?))
        })
        .ok_or(format!("no module totals in {lines:?}"))?;
    Ok(Touched {
        instance,
        rows,
        pictures,
        totals,
    })
}

/// `pfdemo touch --pages 16 --stride 2 --map`, held: every row's PFNs against `frames` and
/// pagemap, the per-page fault column and the picture; then `pfdemo frames --instance`
/// and `pfdemo verify` on the held process.
fn pfdemo_touch_frames_and_verify() -> Check {
    let held = Held::start(&["--pages", "16", "--stride", "2", "--map"])?;
    let t = parse_touch(&held.lines)?;
    let targets: Vec<usize> = (0..16).step_by(2).collect();
    let (faulted, present) = fault_pattern(targets.iter().copied(), 16)?;
    let frames: std::collections::BTreeMap<u64, u64> = io("frames", read_frames())?
        .into_iter()
        .filter(|r| r.instance == t.instance)
        .map(|r| (r.pgoff, r.pfn))
        .collect();
    ensure!(
        t.rows.len() == targets.len(),
        "{} rows for {} touched pages",
        t.rows.len(),
        targets.len()
    );
    for ((row, &page), &fault) in t.rows.iter().zip(&targets).zip(&faulted) {
        let (p, pm_pfn, fr_pfn, faults) = row;
        let listed = frames.get(&(page as u64)).copied();
        ensure!(
            *p == page && pm_pfn.is_some() && pm_pfn == fr_pfn && *fr_pfn == listed,
            "page {page}: row {row:?}, frames file {listed:x?}"
        );
        let want = if fault { "+1" } else { "+0" };
        ensure!(
            faults == want,
            "page {page}: faults column {faults:?}, expected {want}"
        );
    }
    let want_totals = (
        expected_faults(targets.iter().copied(), 16)?,
        allocs(
            present
                .iter()
                .enumerate()
                .filter(|(_, p)| **p)
                .map(|(i, _)| i),
        )?,
    );
    ensure!(
        t.totals == want_totals,
        "module totals (faults, allocated) {:?}, expected {want_totals:?}",
        t.totals
    );
    ensure!(
        t.pictures.len() == targets.len(),
        "{} map lines for {} touches",
        t.pictures.len(),
        targets.len()
    );
    for (pic, &page) in t.pictures.iter().zip(&targets) {
        let cells: Vec<char> = pic.chars().skip(1).take(16).collect();
        ensure!(
            cells.len() == 16
                && cells[page] == '*'
                && cells.iter().filter(|c| **c == '*').count() == 1
                && pic.ends_with(&format!("] touched page {page}")),
            "map line {pic:?} for page {page}"
        );
    }
    // pfdemo frames --instance: exactly that instance's rows, as the frames file has them.
    let id = t.instance.to_string();
    let out = pfdemo(&["frames", "--instance", &id])?;
    let mut listed = std::collections::BTreeMap::new();
    for l in out.lines().skip(1) {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() == 2 && cols[1] == "frame(s)" {
            ensure!(
                cols[0] == frames.len().to_string(),
                "pfdemo frames counts {}, the file has {}",
                cols[0],
                frames.len()
            );
            continue;
        }
        let num = |s: &str| -> Option<u64> {
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        };
        let v: Vec<Option<u64>> = cols.iter().map(|c| num(c)).collect();
        let [Some(inst), Some(pgoff), Some(pfn), Some(phys)] = v[..] else {
            return Err(format!("pfdemo frames: bad row {l:?}"));
        };
        ensure!(
            inst == t.instance && phys == pfn * page_size() as u64,
            "pfdemo frames --instance {id}: row {l:?}"
        );
        listed.insert(pgoff, pfn);
    }
    ensure!(
        listed == frames && out.lines().last() == Some(&format!("{} frame(s)", frames.len())),
        "pfdemo frames --instance {id} lists {listed:x?}, the frames file {frames:x?}"
    );
    // pfdemo verify, for the held process and for every process: all pages agree.
    let pages = present.iter().filter(|p| **p).count();
    let line = format!(
        "pid {}: {pages} mapped device pages checked, 0 mismatches",
        held.pid()
    );
    let pid = held.pid().to_string();
    for args in [&["verify", "--pid", &pid][..], &["verify"][..]] {
        let out = pfdemo(args)?;
        ensure!(
            out.lines().any(|l| l == line),
            "pfdemo {args:?} said {out:?}, expected a line {line:?}"
        );
    }
    drop(held);
    let left = io("frames", read_frames())?
        .iter()
        .filter(|r| r.instance == t.instance)
        .count();
    ensure!(left == 0, "{left} frames left after pfdemo touch ended");
    Ok(())
}

/// `pfdemo touch --private` and `--threads 2` work, and their rows say what happened.
fn pfdemo_touch_private_and_threads() -> Check {
    let out = pfdemo(&["touch", "--pages", "8", "--private"])?;
    let lines: Vec<String> = out.lines().map(String::from).collect();
    let t = parse_touch(&lines)?;
    ensure!(t.rows.len() == 8, "--private: {} rows", t.rows.len());
    for (page, pm_pfn, fr_pfn, _) in &t.rows {
        // The write made a private copy: not the instance's frame.
        ensure!(
            pm_pfn.is_some() && fr_pfn.is_some() && pm_pfn != fr_pfn,
            "--private page {page}: pagemap {pm_pfn:x?}, frames {fr_pfn:x?}"
        );
    }
    let out = pfdemo(&["touch", "--pages", "16", "--threads", "2"])?;
    let lines: Vec<String> = out.lines().map(String::from).collect();
    let t = parse_touch(&lines)?;
    ensure!(t.rows.len() == 16, "--threads 2: {} rows", t.rows.len());
    let mut column = 0;
    for (page, pm_pfn, fr_pfn, faults) in &t.rows {
        ensure!(
            pm_pfn.is_some() && pm_pfn == fr_pfn,
            "--threads 2 page {page}: pagemap {pm_pfn:x?}, frames {fr_pfn:x?}"
        );
        column += match faults.as_str() {
            "+0" => 0,
            "+1" => 1,
            other => return Err(format!("--threads 2 page {page}: faults column {other:?}")),
        };
    }
    // Each thread touches its own pages, so with one page per fault the column adds up to the
    // module's count. (With prefault, a thread's fault may map its neighbour's pages.)
    if prefault()? == 1 {
        ensure!(
            column == t.totals.0,
            "--threads 2: faults column sums to {column}, the module counted {}",
            t.totals.0
        );
    }
    ensure!(column >= 1, "--threads 2: no page faulted");
    Ok(())
}

/// `pfdemo stats` prints every counter with the value the stats file has, and the latency
/// histogram's total.
fn pfdemo_stats_shows_the_counters() -> Check {
    let before = stats()?;
    let out = pfdemo(&["stats"])?;
    let after = stats()?;
    for name in Stats::REQUIRED {
        let want = stat(&before, name)?;
        let shown = out.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse::<u64>().ok())?
        });
        ensure!(
            shown == Some(want) && stat(&after, name)? == want,
            "pfdemo stats shows {name} {shown:?}, the file {want} (then {})",
            stat(&after, name)?
        );
    }
    let calls = stat(&before, "faults")? + stat(&before, "huge_faults")?;
    let header = format!("fault handler latency ({calls} faults):");
    ensure!(
        out.lines().any(|l| l == header),
        "no line {header:?} in {out:?}"
    );
    Ok(())
}

/// No output of the module carries a kernel pointer: debugfs files, fdinfo and its kernel log
/// lines (checked with frames live, so `frames` has rows).
fn no_kernel_pointers_in_any_output() -> Check {
    let dev = io("open", Device::open())?;
    let map = io("mmap", dev.map(8, 0, true))?;
    (0..8).for_each(|p| map.write(p, 0, 1));
    let mut texts = Vec::new();
    for f in ["stats", "frames", "latency"] {
        texts.push((
            f.to_string(),
            io(f, std::fs::read_to_string(format!("{}/{f}", sys::DEBUGFS)))?,
        ));
    }
    texts.push((
        "fdinfo".into(),
        io(
            "fdinfo",
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", dev.fd())),
        )?,
    ));
    let log = io(
        "read /dev/kmsg",
        Kmsg::from_start().and_then(|mut k| k.read_new()),
    )?;
    let ours: Vec<String> = log
        .into_iter()
        .filter(|l| l.contains("rust_pagefault_demo"))
        .collect();
    ensure!(!ours.is_empty(), "no kernel log line of the module");
    texts.push(("kernel log".into(), ours.join("\n")));
    for (what, text) in &texts {
        let found = parse::kernel_pointers(text);
        ensure!(found.is_empty(), "{what} shows kernel pointers {found:x?}");
    }
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
        (
            "stats lists every counter of the contract",
            stats_lists_every_contract_counter,
        ),
        (
            "max_total_pages defaults to a quarter of RAM",
            max_total_pages_defaults_to_a_quarter_of_ram,
        ),
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
            "frames survive munmap and a non-last close, freed at the last close",
            frames_freed_at_last_close,
        ),
        (
            "MAP_PRIVATE copies on write",
            private_mapping_copies_on_write,
        ),
        (
            "fork: a child's first touch is the parent's frame, allocated once",
            fork_children_share_frames,
        ),
        (
            "concurrent first touch allocates exactly one frame",
            concurrent_first_touch_allocates_once,
        ),
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
            "the tools explain a missing module, root or debugfs in one line",
            tools_explain_what_is_missing,
        ),
        (
            "pfdemo touch --map rows, frames --instance and verify agree with debugfs",
            pfdemo_touch_frames_and_verify,
        ),
        (
            "pfdemo touch --private and --threads 2",
            pfdemo_touch_private_and_threads,
        ),
        (
            "pfdemo stats shows the counters and the histogram",
            pfdemo_stats_shows_the_counters,
        ),
        (
            "no kernel pointer in debugfs, fdinfo or the module's log",
            no_kernel_pointers_in_any_output,
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
            "invalid module parameters are refused with EINVAL and a log line",
            invalid_parameters_refused,
        ),
        (
            "an unknown module parameter is ignored with a warning",
            unknown_parameter_is_ignored_with_a_warning,
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
    let params = base_params().join(",");
    println!(
        "RPD-RELIABILITY: mode=e2e params={} cases={} passed={passed} failed={failed} bad_inputs={}",
        if params.is_empty() { "default" } else { &params },
        cases.len(),
        BAD_INPUTS.load(Ordering::Relaxed)
    );
    println!("e2e: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
