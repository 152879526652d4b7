//! `pfdemo trace`: every fault of a run on one line, the CPU's record (tracefs's
//! `exceptions:page_fault_user`, with the hardware error code decoded), the buddy
//! allocator's (`kmem:mm_page_alloc`) and our handler's (the module's flight recorder),
//! joined per fault by the library's `trace` module; then a summary per handler path.
//!
//! Without a command, pfdemo maps the device and touches `--pages` pages itself, as
//! `pfdemo touch` does. With `-- CMD ARGS...`, it runs the command (and traces the
//! processes it forks): the command is forked, held until tracing is set up for its PID,
//! then exec'd, so its first fault is already traced. While it runs, the device mappings
//! of the traced processes are sampled from `/proc/<pid>/maps` every few milliseconds, so
//! that a fault in one with no handler call is seen as such (a mapping made and gone
//! between two samples is known only through the handler's records).

use pfdemo::harness::{fork, Child};
use pfdemo::sys::{self, Device};
use pfdemo::trace::{self, DeviceRange, Timeline, Tracer};
use pfdemo::tracefs::Options;
use pfdemo::{io, Res};
use std::collections::BTreeSet;
use std::ffi::CString;

#[derive(clap::Args)]
pub struct Args {
    /// Pages to touch (without a command).
    #[arg(long, default_value_t = 16)]
    pub pages: usize,
    #[command(flatten)]
    pub access: crate::touch::Access,
    /// The trace buffer of each CPU, in KiB.
    #[arg(long, default_value_t = 8192)]
    pub buffer_kb: u64,
    /// Print JSON: `{"rows": [...], "summary": [...], ...}` (the library's `Timeline`).
    #[arg(long)]
    pub json: bool,
    /// A command to run and trace, with its children, instead of touching pages.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: &Args) -> Res {
    let (timeline, status) = if args.command.is_empty() {
        (touch_pages(args)?, None)
    } else {
        let (timeline, status) = run_command(args)?;
        (timeline, Some(status))
    };
    if args.json {
        let text = serde_json::to_string_pretty(&timeline).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print(&timeline);
    }
    // As `time` and `strace` do: the command's own status, 128 + N for a signal (the
    // timeline is printed and the tracing instance removed by now).
    if let Some(status) = status.filter(|s| !s.success()) {
        let code = status.result().unwrap_or_else(|signal| 128 + signal);
        std::process::exit(code);
    }
    Ok(())
}

/// Maps the device and touches `args.pages` pages, traced.
fn touch_pages(args: &Args) -> Res<Timeline> {
    let dev = io("open device", Device::open())?;
    let map = io("mmap", dev.map(args.pages, 0, !args.access.private))?;
    let me = std::process::id();
    let mut tracer = Tracer::new(&Options {
        pids: vec![me],
        follow_forks: false,
        buffer_kb: args.buffer_kb,
    })?;
    tracer.start()?;
    for i in 0..args.pages {
        trace::touch(&map, i, !args.access.read);
    }
    let mut timeline = tracer.finish(&[me], &[DeviceRange::of(&map)])?;
    trace::add_pagemap(&mut timeline.rows)?;
    Ok(timeline)
}

/// Runs `args.command` traced, with the processes it forks.
fn run_command(args: &Args) -> Res<(Timeline, pfdemo::harness::Exit)> {
    let argv: Vec<CString> = args
        .command
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(|_| format!("{a:?}: a NUL in an argument")))
        .collect::<Res<_>>()?;
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut tracer = Tracer::new(&Options {
        pids: Vec::new(),
        follow_forks: true,
        buffer_kb: args.buffer_kb,
    })?;
    let (gate_r, gate_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: pfdemo has no other thread here; the child only reads, execs, writes and
    // exits (async-signal-safe), with buffers made before the fork.
    let child = io("fork", unsafe {
        fork(|| {
            libc::close(gate_w);
            libc::close(err_r);
            let mut go = [0u8; 1];
            if libc::read(gate_r, go.as_mut_ptr().cast(), 1) != 1 {
                return 126;
            }
            libc::execvp(ptrs[0], ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err_w, (&errno as *const i32).cast(), 4);
            127
        })
    })?;
    // SAFETY: closing our copies of the child's ends.
    unsafe {
        libc::close(gate_r);
        libc::close(err_w);
    }
    let pid = child.pid() as u32;
    // The command is held at the gate: trace it from its first instruction on.
    let released = tracer
        .session()
        .add_pid(pid)
        .and_then(|()| tracer.start())
        .map(|()| {
            // SAFETY: one byte from a local to our end of the gate.
            unsafe { libc::write(gate_w, [1u8].as_ptr().cast(), 1) };
        });
    // SAFETY: our end of the gate, no longer needed (an unreleased child reads EOF, exits).
    unsafe { libc::close(gate_w) };
    let mut errno = [0u8; 4];
    // SAFETY: reading into a local; the write end closes at the child's exec.
    let n = unsafe { libc::read(err_r, errno.as_mut_ptr().cast(), 4) };
    // SAFETY: our end, no longer needed.
    unsafe { libc::close(err_r) };
    let (ranges, status) = wait_sampling(child, &tracer)?;
    released?;
    if n == 4 {
        return Err(format!(
            "cannot run {:?}: {}",
            args.command[0],
            std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))
        ));
    }
    let timeline = tracer.finish(&[pid], &ranges)?;
    if !status.success() {
        eprintln!(
            "pfdemo: {:?} ended with {:?} (exit code, or Err(signal)); pfdemo exits with it",
            args.command,
            status.result()
        );
    }
    Ok((timeline, status))
}

fn pipe() -> Res<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for the call to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}

/// Waits for the command to end, sampling the device mappings of the traced processes
/// meanwhile. Ctrl-C goes to the command (our process group's foreground), not to us: we
/// stay to report and to remove the tracing instance.
fn wait_sampling(child: Child, tracer: &Tracer) -> Res<(Vec<DeviceRange>, pfdemo::harness::Exit)> {
    // SAFETY: ignoring two signals in this single-threaded process, restored below.
    let old = unsafe {
        [
            libc::signal(libc::SIGINT, libc::SIG_IGN),
            libc::signal(libc::SIGQUIT, libc::SIG_IGN),
        ]
    };
    let mut ranges: BTreeSet<(u32, u64, u64)> = BTreeSet::new();
    let pid = child.pid();
    let status = loop {
        let mut status = 0;
        // SAFETY: polling our own child into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break Ok(pfdemo::harness::Exit(status));
        }
        if r < 0 {
            break Err(format!(
                "waiting for the command: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut pids = tracer.session().traced_pids().unwrap_or_default();
        pids.push(pid as u32);
        for p in pids {
            sample_maps(p, &mut ranges);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    // SAFETY: restoring the dispositions saved above.
    unsafe {
        libc::signal(libc::SIGINT, old[0]);
        libc::signal(libc::SIGQUIT, old[1]);
    }
    let ranges = ranges
        .into_iter()
        .map(|(pid, start, end)| DeviceRange { pid, start, end })
        .collect();
    Ok((ranges, status?))
}

/// Adds the device mappings of task `tid` (by its process) to `ranges`.
fn sample_maps(tid: u32, ranges: &mut BTreeSet<(u32, u64, u64)>) {
    let (Ok(maps), Ok(status)) = (
        std::fs::read_to_string(format!("/proc/{tid}/maps")),
        std::fs::read_to_string(format!("/proc/{tid}/status")),
    ) else {
        return;
    };
    let Some(tgid) = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:")?.trim().parse().ok())
    else {
        return;
    };
    if let Ok(lines) = pfdemo::parse::parse_maps(&maps) {
        for l in lines.into_iter().filter(|l| l.name == sys::DEVICE) {
            ranges.insert((tgid, l.start, l.end));
        }
    }
}

fn hex(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{v:#x}"))
}

/// The table, the unmatched records and the summary.
fn print(t: &Timeline) {
    println!(
        "{:>9} {:>6} {:>14} {:<28} {:>9} {:>5} {:<8} {:<8} {:>9} {:>3} {:>10} {:>10} {:>10} {:>10}",
        "t(us)",
        "tid",
        "address",
        "error code",
        "alloc pfn",
        "order",
        "path",
        "out",
        "pfn",
        "new",
        "reserve_ns",
        "alloc_ns",
        "map_ns",
        "total_ns"
    );
    for r in &t.rows {
        let alloc = r.alloc.as_ref();
        let head = format!(
            "{:>9} {:>6} {:>#14x} {:<28} {:>9} {:>5}",
            r.t_us,
            r.tid,
            r.address,
            format!("{:#x} {}", r.error_code.0, r.error),
            hex(alloc.map(|a| a.pfn)),
            alloc.map_or("-".into(), |a| a.order.to_string()),
        );
        match r.handler() {
            Some(h) => println!(
                "{head} {:<8} {:<8} {:>9} {:>3} {:>10} {:>10} {:>10} {:>10}{}",
                h.path,
                h.out,
                hex(h.pfn),
                u8::from(h.new),
                h.reserve_ns,
                h.alloc_ns,
                h.map_ns,
                h.total_ns,
                if r.calls.len() > 1 {
                    format!(
                        "  ({} handler calls: {})",
                        r.calls.len(),
                        r.calls
                            .iter()
                            .map(|c| c.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                }
            ),
            None => println!("{head} (no handler call)"),
        }
    }
    println!(
        "\n{} faults in device mappings; {} faults elsewhere; {} other allocations of the traced tasks",
        t.rows.len(),
        t.faults_elsewhere,
        t.other_allocs
    );
    println!(
        "unmatched: {} faults in a device mapping without a handler call, {} handler calls without a CPU fault, {} new frames without an mm_page_alloc; lost: recorder {} dropped + {} lost, tracefs {}",
        t.faults_without_handler,
        t.unmatched_calls.len(),
        t.calls_without_alloc.len(),
        t.recorder_dropped,
        t.recorder_lost,
        t.trace_lost
    );
    for c in &t.unmatched_calls {
        println!(
            "  handler call without a CPU fault: tid {} addr {:#x} path {} how {}{}",
            c.tid,
            c.addr,
            c.path,
            c.how,
            if c.how.contains('U') {
                ""
            } else {
                " (not a user-mode access: the kernel touched the page, e.g. in a system call or GUP)"
            }
        );
    }
    for c in &t.calls_without_alloc {
        println!(
            "  new frame without its mm_page_alloc: tid {} addr {:#x} pfn {}",
            c.tid,
            c.addr,
            hex(c.pfn)
        );
    }
    println!(
        "\n{:<9} {:>6} {:>9} {:>9} {:>9}",
        "path", "count", "p50 ns", "p90 ns", "p99 ns"
    );
    for s in &t.summary {
        println!(
            "{:<9} {:>6} {:>9} {:>9} {:>9}",
            s.path, s.count, s.p50_ns, s.p90_ns, s.p99_ns
        );
    }
}
