//! Fault loops like will-it-scale's `page_fault1` and `page_fault3`: each task maps a region
//! of `--loop-mib`, writes one byte in every page, unmaps it, and again, for `--loop-ms`;
//! what counts is the pages touched (one fault each) per second per task, 1 to N tasks,
//! as threads of one process (one mm: its mmap lock and per-VMA locks are shared) and as
//! separate processes (nothing shared but the allocator).
//!
//! - `pf1-anon`: private anonymous memory (`MADV_NOHUGEPAGE`): every fault allocates and
//!   zeroes a frame, every `munmap` frees them: `page_fault1`.
//! - `pf1-device`: the device, a fresh instance every iteration (open, mmap, touch, munmap,
//!   close), so that, as for `pf1-anon`, every fault allocates and every close frees: frames
//!   outlive `munmap` (they belong to the instance), so remapping one instance would not.
//! - `pf3-file`: a shared mapping of a file of the task's own in /tmp (ramfs here: the VM
//!   kernel has no shmem), kept between iterations: after the first, a fault maps a page the
//!   page cache holds, allocating nothing: `page_fault3`.
//! - `pf3-device`: the same with one instance of the device kept open: after the first
//!   iteration a fault finds its frame in the frame table and only maps it.
//!
//! With threads, the device loops also run with `map_pages=0`: without the hook the core
//! retries every fault under the mmap lock, which the threads share, as they share it with
//! their own `mmap` and `munmap` calls.

use super::interval::paired;
use super::report::{spread_pct, LoopRow};
use super::{Args, Bench, Mode};
use pfdemo::harness::{fork, Child};
use pfdemo::sys::{page_size, Device, Mapping};
use pfdemo::{io, parse, Res};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Pf1Anon,
    Pf1Device,
    Pf3File,
    Pf3Device,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pf1Anon => "pf1-anon",
            Kind::Pf1Device => "pf1-device",
            Kind::Pf3File => "pf3-file",
            Kind::Pf3Device => "pf3-device",
        }
    }

    /// The kernel's own loop that a device loop is compared with.
    fn kernel_counterpart(self) -> Option<Kind> {
        match self {
            Kind::Pf1Device => Some(Kind::Pf1Anon),
            Kind::Pf3Device => Some(Kind::Pf3File),
            _ => None,
        }
    }

    fn is_device(self) -> bool {
        matches!(self, Kind::Pf1Device | Kind::Pf3Device)
    }
}

/// The most tasks one loop runs.
const MAX_TASKS: usize = 64;

/// The start and stop flags and every task's count of pages touched, in memory shared with
/// forked children (an anonymous `MAP_SHARED` page).
struct Control {
    map: Mapping,
}

impl Control {
    const READY: usize = 0;
    const GO: usize = 1;
    const STOP: usize = 2;
    const COUNTS: usize = 8;
    /// Each task's thread id, for its CPU time (`/proc/<pid>/task/<tid>/stat`).
    const TIDS: usize = Self::COUNTS + MAX_TASKS;

    fn new() -> Res<Control> {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let map = io(
            "mmap control page",
            Mapping::new(None, 1, 0, rw, libc::MAP_SHARED),
        )?;
        Ok(Control { map })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * 8 <= self.map.len());
        // SAFETY: the word lies inside the mapping (checked), which is 8-byte aligned (page
        // aligned), zero-filled at creation and only ever accessed atomically, by this
        // process and its forked children.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().cast::<u64>().add(i)) }
    }

    fn count(&self, slot: usize) -> &AtomicU64 {
        self.word(Self::COUNTS + slot)
    }

    fn tid(&self, slot: usize) -> &AtomicU64 {
        self.word(Self::TIDS + slot)
    }

    fn touched(&self, tasks: usize) -> u64 {
        (0..tasks).map(|t| self.count(t).load(Relaxed)).sum()
    }
}

/// One task's loop, until the control page says stop.
fn task(kind: Kind, pages: usize, ctl: &Control, slot: usize) -> Res {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let file = if kind == Kind::Pf3File {
        // SAFETY: getpid has no preconditions.
        let path = format!("/tmp/pfdemo-pf3-{}-{slot}", unsafe { libc::getpid() });
        let f = io(
            "create the pf3 file in /tmp",
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path),
        )?;
        io("size the pf3 file", f.set_len((pages * page_size()) as u64))?;
        // Open and unlinked: gone with the task, whatever happens.
        io("unlink the pf3 file", std::fs::remove_file(&path))?;
        Some(f)
    } else {
        None
    };
    let kept = if kind == Kind::Pf3Device {
        Some(io("open", Device::open())?)
    } else {
        None
    };
    let tid = pfdemo::sys::gettid();
    ctl.tid(slot).store(tid as u64, Relaxed);
    ctl.word(Control::READY).fetch_add(1, Relaxed);
    while ctl.word(Control::GO).load(Relaxed) == 0 {
        std::hint::spin_loop();
    }
    let mut touched = 0u64;
    while ctl.word(Control::STOP).load(Relaxed) == 0 {
        let fresh;
        let map = match kind {
            Kind::Pf1Anon => {
                let map = io(
                    "mmap anon",
                    Mapping::new(None, pages, 0, rw, libc::MAP_PRIVATE),
                )?;
                io("madvise", map.madvise(libc::MADV_NOHUGEPAGE))?;
                map
            }
            Kind::Pf1Device => {
                fresh = io("open", Device::open())?;
                io("mmap", fresh.map(pages, 0, true))?
            }
            Kind::Pf3File => {
                let fd = std::os::fd::AsRawFd::as_raw_fd(file.as_ref().expect("opened above"));
                io(
                    "mmap file",
                    Mapping::new(Some(fd), pages, 0, rw, libc::MAP_SHARED),
                )?
            }
            Kind::Pf3Device => io(
                "mmap",
                kept.as_ref().expect("opened above").map(pages, 0, true),
            )?,
        };
        for p in 0..pages {
            map.write(p, 0, 1);
            touched += 1;
            ctl.count(slot).store(touched, Relaxed);
        }
        // munmap, then (pf1-device) the close that frees the instance's frames.
    }
    Ok(())
}

/// The user and system CPU time so far, in ns, of every task: task `slot` is the thread whose
/// id it stored in the control page, of process `pids[slot]` (`/proc/<pid>/task/<tid>/stat`:
/// that thread's own time, in clock ticks).
fn tasks_cpu_ns(ctl: &Control, pids: &[libc::pid_t]) -> Res<(u64, u64)> {
    // SAFETY: sysconf has no preconditions.
    let tick_ns = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    pids.iter()
        .enumerate()
        .try_fold((0, 0), |(u, s), (slot, pid)| {
            let path = format!("/proc/{pid}/task/{}/stat", ctl.tid(slot).load(Relaxed));
            let text = io("read a loop task's stat", std::fs::read_to_string(&path))?;
            let (_, utime, stime) = parse::parse_stat_usage(&text).map_err(|e| e.to_string())?;
            Ok((u + utime * tick_ns, s + stime * tick_ns))
        })
}

/// What one run of a loop measured: pages touched per second per task, and CPU time (user,
/// system) per page touched, over the same window.
struct Window {
    per_task: f64,
    user_ns: f64,
    sys_ns: f64,
}

/// Starts the tasks (all ready), lets them run `ms`, and reads the pages they touched and
/// the CPU time they took between the start and the end of that window (`cpu`: user and
/// system ns of all tasks so far, sampled by the kernel's ticks: 4 ms here, so a 1 s
/// window is good to about 1%).
fn window(ctl: &Control, tasks: usize, ms: u64, cpu: &dyn Fn() -> Res<(u64, u64)>) -> Res<Window> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.word(Control::READY).load(Relaxed) < tasks as u64 {
        if Instant::now() > deadline {
            ctl.word(Control::STOP).store(1, Relaxed);
            return Err("the loop's tasks did not get ready within 30 s".into());
        }
        std::thread::yield_now();
    }
    let c0 = cpu()?;
    let t0 = Instant::now();
    ctl.word(Control::GO).store(1, Relaxed);
    std::thread::sleep(Duration::from_millis(ms));
    let touched = ctl.touched(tasks);
    let secs = t0.elapsed().as_secs_f64();
    let c1 = cpu();
    ctl.word(Control::STOP).store(1, Relaxed);
    let c1 = c1?;
    let pages = touched.max(1) as f64;
    Ok(Window {
        per_task: touched as f64 / secs / tasks as f64,
        user_ns: (c1.0 - c0.0) as f64 / pages,
        sys_ns: (c1.1 - c0.1) as f64 / pages,
    })
}

/// One run of `kind` with `tasks` threads or processes.
fn once(kind: Kind, tasks: usize, processes: bool, pages: usize, ms: u64) -> Res<Window> {
    let ctl = Control::new()?;
    if !processes {
        return std::thread::scope(|s| {
            let handles: Vec<_> = (0..tasks)
                .map(|slot| {
                    let ctl = &ctl;
                    s.spawn(move || {
                        let r = task(kind, pages, ctl, slot);
                        if r.is_err() {
                            // Let the others and the window end.
                            ctl.word(Control::READY)
                                .fetch_add(MAX_TASKS as u64, Relaxed);
                            ctl.word(Control::STOP).store(1, Relaxed);
                        }
                        r
                    })
                })
                .collect();
            // SAFETY: getpid has no preconditions.
            let pids = vec![unsafe { libc::getpid() }; tasks];
            let w = window(&ctl, tasks, ms, &|| tasks_cpu_ns(&ctl, &pids));
            for h in handles {
                h.join().map_err(|_| "a loop thread panicked")??;
            }
            w
        });
    }
    let mut children = Vec::new();
    for slot in 0..tasks {
        let ctl = &ctl;
        let body = move || match task(kind, pages, ctl, slot) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("bench: loop task {slot}: {e}");
                ctl.word(Control::READY)
                    .fetch_add(MAX_TASKS as u64, Relaxed);
                ctl.word(Control::STOP).store(1, Relaxed);
                1
            }
        };
        // SAFETY: the benchmark has no other thread here (the loops' threads and the
        // measurements' are joined), so the child may allocate.
        children.push(io("fork", unsafe { fork(body) })?);
    }
    let pids: Vec<libc::pid_t> = children.iter().map(Child::pid).collect();
    let w = window(&ctl, tasks, ms, &|| tasks_cpu_ns(&ctl, &pids));
    let mut failed = 0;
    for c in children {
        if !io("wait for a loop task", c.wait())?.success() {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of the loop's {tasks} processes failed (above)"
        ));
    }
    w
}

pub fn run(bench: &Bench, args: &Args, threads: &[usize]) -> Res<Vec<LoopRow>> {
    let pages = (args.loop_mib as usize) << 20 >> page_size().trailing_zeros();
    if threads.iter().any(|&t| t > MAX_TASKS) {
        return Err(format!("the loops run at most {MAX_TASKS} tasks"));
    }
    let kinds = [
        Kind::Pf1Anon,
        Kind::Pf1Device,
        Kind::Pf3File,
        Kind::Pf3Device,
    ];
    // (kind, module parameters, tasks, as processes)
    let mut configs: Vec<(Kind, &str, usize, bool)> = Vec::new();
    for processes in [false, true] {
        for &t in threads {
            configs.extend(kinds.iter().map(|&k| (k, "", t, processes)));
            if !processes {
                configs.push((Kind::Pf1Device, "map_pages=0", t, processes));
                configs.push((Kind::Pf3Device, "map_pages=0", t, processes));
            }
        }
    }
    let mut windows: Vec<Vec<Window>> = configs.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.loop_reps {
        for (i, &(kind, params, tasks, processes)) in configs.iter().enumerate() {
            if kind.is_device() {
                // Room for every task's region, whatever --mib is.
                let mut extra = vec![format!(
                    "max_total_pages={}",
                    (pages * tasks).max(bench.pages) + 1024
                )];
                extra.extend(params.split_whitespace().map(String::from));
                let params = bench.params(Mode::Device, &extra).expect("a device mode");
                super::reload(&bench.module, &params)?;
            }
            let w = once(kind, tasks, processes, pages, args.loop_ms)?;
            eprintln!(
                "bench: loop round {round} {:<10} {params:<11} {tasks} {}: {:>8.0} faults/s per task",
                kind.name(),
                if processes { "processes" } else { "threads" },
                w.per_task
            );
            windows[i].push(w);
        }
    }
    let rates = |i: usize| windows[i].iter().map(|w| w.per_task).collect::<Vec<f64>>();
    let rows = configs
        .iter()
        .enumerate()
        .map(|(i, &(kind, params, tasks, processes))| {
            let against_kernel = kind.kernel_counterpart().and_then(|k| {
                let j = configs.iter().position(|&(k2, p2, t2, pr2)| {
                    (k2, p2, t2, pr2) == (k, "", tasks, processes)
                })?;
                // `paired(a, b)` is a / b per round: here the device's rate over the kernel's.
                Some(paired(&rates(i), &rates(j), args.seed))
            });
            let ws = &windows[i];
            let med = |f: fn(&Window) -> f64| {
                super::interval::median(&ws.iter().map(f).collect::<Vec<f64>>())
            };
            LoopRow {
                name: kind.name().into(),
                params: params.into(),
                tasks,
                tasks_are: if processes { "processes" } else { "threads" }.into(),
                samples_faults_per_s_per_task: rates(i),
                faults_per_s_per_task: med(|w| w.per_task),
                spread_pct: spread_pct(&rates(i)),
                sys_ns_per_page: med(|w| w.sys_ns),
                user_ns_per_page: med(|w| w.user_ns),
                against_kernel,
            }
        })
        .collect();
    Ok(rows)
}
