//! The test harness of `pfdemo-e2e` and `pfdemo-stress`, which run as root in the VM: checks
//! and their TAP output, the `RPD-RELIABILITY` line, code run in forked children, module
//! reloads, and a memory cgroup of the tests' own.
//!
//! The output is what `scripts/test.sh` reads: `ok N - name`, or `not ok N - name` and a
//! `# why` line, for every check; one `RPD-RELIABILITY: mode=... key=value ...` line with a
//! program's figures; and a closing `PREFIX: N passed, N failed` line. The exit status is
//! non-zero on any failure.

use crate::sys;
use crate::Res;
use std::fmt::Display;
use std::io;
use std::process::Command;

/// The outcome of a test case or a step of one: a failure says why in one line.
pub type Check = Res;

/// A named test case.
pub type Case = (&'static str, fn() -> Check);

/// Fails the enclosing function (which returns a [`Res`]) with the formatted message unless
/// `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The TAP line(s) of check number `n`: `ok N - name`, or `not ok N - name` and `# why`.
pub fn tap_line(n: u32, name: &str, result: &Check) -> String {
    match result {
        Ok(()) => format!("ok {n} - {name}"),
        Err(why) => format!("not ok {n} - {name}\n# {why}"),
    }
}

/// The TAP report of one program: numbers its checks and prints each as it is made, then the
/// closing line prefixed with the program's name (`e2e`, `stress`).
pub struct Tap {
    prefix: &'static str,
    n: u32,
    failed: u32,
}

impl Tap {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            n: 0,
            failed: 0,
        }
    }

    /// The TAP header and plan, for a program that knows its checks up front.
    pub fn plan(&self, checks: usize) {
        println!("TAP version 13\n1..{checks}");
    }

    /// Records and prints one check's result.
    pub fn result(&mut self, name: &str, result: Check) {
        self.n += 1;
        if result.is_err() {
            self.failed += 1;
        }
        println!("{}", tap_line(self.n, name, &result));
    }

    /// One check: passes when `ok`, else fails with `why()`.
    pub fn check(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
        self.result(name, if ok { Ok(()) } else { Err(why()) });
    }

    /// Runs `cases` one after another, in this process, in their order.
    pub fn run(&mut self, cases: &[Case]) {
        for (name, case) in cases {
            self.result(name, case());
        }
    }

    pub fn count(&self) -> u32 {
        self.n
    }

    pub fn passed(&self) -> u32 {
        self.n - self.failed
    }

    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Prints `PREFIX: N passed, N failed` and exits, non-zero if any check failed.
    pub fn finish(self) -> ! {
        println!(
            "{}: {} passed, {} failed",
            self.prefix,
            self.passed(),
            self.failed
        );
        std::process::exit(if self.failed == 0 { 0 } else { 1 })
    }
}

/// The reliability figures of a run, `RPD-RELIABILITY: mode=MODE key=value ...`, which
/// `scripts/reliability_table.awk` turns into the README's table.
pub fn reliability_line(mode: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut line = format!("RPD-RELIABILITY: mode={mode}");
    for (key, value) in fields {
        line.push_str(&format!(" {key}={value}"));
    }
    line
}

/// Prints [`reliability_line`].
pub fn reliability(mode: &str, fields: &[(&str, &dyn Display)]) {
    println!("{}", reliability_line(mode, fields));
}

// ---------------------------------------------------------------------------------------
// Children

/// How a forked child ended: its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit(pub i32);

impl Exit {
    /// `Ok(exit code)`, or `Err(signal)` for a child killed by a signal.
    pub fn result(self) -> Result<i32, i32> {
        if libc::WIFSIGNALED(self.0) {
            Err(libc::WTERMSIG(self.0))
        } else {
            Ok(libc::WEXITSTATUS(self.0))
        }
    }

    /// Exited, with status 0.
    pub fn success(self) -> bool {
        libc::WIFEXITED(self.0) && libc::WEXITSTATUS(self.0) == 0
    }
}

/// A forked child process, to be waited for.
#[must_use = "a child that is not waited for stays a zombie"]
pub struct Child(libc::pid_t);

impl Child {
    /// The child's process id (to read its `/proc/<pid>` files while it runs).
    pub fn pid(&self) -> libc::pid_t {
        self.0
    }

    /// Waits for the child to end.
    pub fn wait(self) -> io::Result<Exit> {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child, into a local.
            if unsafe { libc::waitpid(self.0, &mut status, 0) } >= 0 {
                return Ok(Exit(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Child {
    /// Waits at most `limit` for the child to end; a child still running then is killed
    /// (SIGKILL) and reaped, and the answer is `None`. This is what keeps a test bounded when
    /// the module under test makes its child spin (a fault retried forever, say).
    pub fn wait_within(self, limit: std::time::Duration) -> io::Result<Option<Exit>> {
        let deadline = std::time::Instant::now() + limit;
        let mut status = 0;
        loop {
            // SAFETY: polling our own child, into a local.
            let pid = unsafe { libc::waitpid(self.0, &mut status, libc::WNOHANG) };
            if pid == self.0 {
                return Ok(Some(Exit(status)));
            }
            if pid < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::last_os_error());
            }
            if std::time::Instant::now() >= deadline {
                // SAFETY: signalling our own child, which has not been reaped yet.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
                self.wait()?;
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Forks; the child runs `f` and exits with the code it returns, without running the
/// parent's destructors or atexit handlers.
///
/// # Safety
///
/// If the process has other threads, `f` may only do what is async-signal-safe (no memory
/// allocation, no locks another thread may have held at the fork).
pub unsafe fn fork(f: impl FnOnce() -> i32) -> io::Result<Child> {
    // SAFETY: the child runs only `f`, within the caller's contract, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Ok(Child(pid))
}

/// The threads of this process, from `/proc/self/status`.
fn thread_count() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads line"))
}

/// Runs `f` in a forked child of this (single-threaded) process and returns how it ended:
/// `Ok(exit code)` or `Err(signal)`. In the child SIGBUS has its default action, so that one
/// bad access is one signal: Rust's runtime catches SIGBUS (to detect stack overflows),
/// resets it and lets the access fault a second time.
pub fn in_child(f: impl FnOnce() -> i32) -> Res<Result<i32, i32>> {
    in_child_within(std::time::Duration::from_secs(120), f)
}

/// [`in_child`], bounded: a child still running after `limit` is killed, and that is an
/// error saying so (a test of a fault that must end, with a signal or not, fails instead of
/// hanging).
pub fn in_child_within(
    limit: std::time::Duration,
    f: impl FnOnce() -> i32,
) -> Res<Result<i32, i32>> {
    let child = spawn_child(f)?;
    match crate::io("wait", child.wait_within(limit))? {
        Some(exit) => Ok(exit.result()),
        None => Err(format!(
            "the child was still running after {limit:?}: killed"
        )),
    }
}

/// The start of [`in_child`]: forks a child of this (single-threaded) process that runs
/// `f`, SIGBUS at its default action, and returns it, for a parent that acts on the child
/// (or on what it waits for) while it runs, then waits for it itself.
pub fn spawn_child(f: impl FnOnce() -> i32) -> Res<Child> {
    // A thread that was just joined can still be counted for a moment: its exit wakes the
    // joiner before the kernel takes it out of the thread group.
    let mut threads = crate::io("/proc/self/status", thread_count())?;
    for _ in 0..100 {
        if threads == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        threads = crate::io("/proc/self/status", thread_count())?;
    }
    crate::ensure!(
        threads == 1,
        "in_child needs a single-threaded process; this one has {threads} threads"
    );
    let child = || {
        // SAFETY: setting a signal disposition in the single-threaded child.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
        f()
    };
    // SAFETY: the process has no other thread (checked above), so the child may do anything.
    crate::io("fork", unsafe { fork(child) })
}

// ---------------------------------------------------------------------------------------
// The module

/// The module file the tests load: `RPD_MODULE`, else the guest's copy.
pub fn module_path() -> String {
    std::env::var("RPD_MODULE").unwrap_or_else(|_| sys::MODULE_PATH.into())
}

/// Module parameters every load in the tests gets (`RPD_PARAMS`, e.g. "prefault=16").
pub fn base_params() -> Vec<String> {
    std::env::var("RPD_PARAMS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The base parameters with `extra` added, each replacing a base parameter of the same name
/// (the module refuses a parameter given twice, with `EEXIST`).
pub fn params_with(extra: &[&str]) -> Vec<String> {
    let name = |p: &str| p.split('=').next().unwrap_or("").to_string();
    let mut params: Vec<String> = base_params()
        .into_iter()
        .filter(|p| !extra.iter().any(|e| name(e) == name(p)))
        .collect();
    params.extend(extra.iter().map(|s| s.to_string()));
    params
}

/// Loads the module afresh with the base parameters and `extra` (unloading it first if it is
/// loaded; not loaded is fine, the load is what must work).
pub fn reload(extra: &[&str]) -> Check {
    let params = params_with(extra);
    let args: Vec<&str> = params.iter().map(String::as_str).collect();
    let loaded = sys::reload_module(&module_path(), &args);
    ensure!(
        loaded.is_ok(),
        "loading with {args:?} failed: errno {loaded:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A memory cgroup

const CGROUP: &str = "/sys/fs/cgroup";

/// A memory cgroup below the root of cgroup2, for charging the frames a test faults in.
#[derive(Debug)]
pub struct Memcg {
    path: String,
}

impl Memcg {
    /// The group `name`, made if it is not there yet: cgroup2 is mounted if it is not, and the
    /// memory controller enabled for the root's children.
    pub fn create(name: &str) -> Res<Self> {
        let mounted =
            std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains(" cgroup2 "));
        if !mounted {
            let ok = Command::new("mount")
                .args(["-t", "cgroup2", "none", CGROUP])
                .status()
                .is_ok_and(|s| s.success());
            ensure!(ok, "mounting cgroup2 failed");
        }
        std::fs::write(format!("{CGROUP}/cgroup.subtree_control"), "+memory")
            .map_err(|e| format!("enabling the memory controller: {e}"))?;
        let path = format!("{CGROUP}/{name}");
        match std::fs::create_dir(&path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(format!("{path}: {e}")),
            _ => Ok(Self { path }),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The group's path below the root of cgroup2 (`/name`), as the kernel's log names it.
    pub fn name(&self) -> &str {
        &self.path[CGROUP.len()..]
    }

    /// Moves this process into the group.
    pub fn join(&self) -> Res {
        std::fs::write(
            format!("{}/cgroup.procs", self.path),
            std::process::id().to_string(),
        )
        .map_err(|e| format!("joining {}: {e}", self.path))
    }

    /// The group's file `name` (`memory.current`, `memory.stat`, ...).
    pub fn read(&self, name: &str) -> io::Result<String> {
        std::fs::read_to_string(format!("{}/{name}", self.path))
    }

    /// `memory.current`: the bytes charged to the group now.
    pub fn current(&self) -> Res<u64> {
        let text = crate::io("memory.current", self.read("memory.current"))?;
        text.trim()
            .parse()
            .map_err(|e| format!("{}/memory.current: {text:?}: {e}", self.path))
    }

    /// Field `name` of the group's `memory.stat`, in bytes. The kernel flushes those
    /// statistics every 2 s: a caller that needs the latest changes waits for a flush first
    /// ([`Memcg::settled_stat`]).
    pub fn stat(&self, name: &str) -> Res<u64> {
        self.field("memory.stat", name)
    }

    /// Event `name` of the group's `memory.events` (`max`, `oom`, `oom_kill`, ...): how many
    /// times it happened in this group and below since the group was made.
    pub fn event(&self, name: &str) -> Res<u64> {
        self.field("memory.events", name)
    }

    /// The number on the `name value` line of the group's flat-keyed file `file`.
    fn field(&self, file: &str, name: &str) -> Res<u64> {
        let text = crate::io(file, self.read(file))?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .ok_or_else(|| format!("{}/{file} has no field {name}", self.path))
    }

    /// [`Memcg::stat`] after the kernel's periodic flush has caught up with the last changes.
    pub fn settled_stat(&self, name: &str) -> Res<u64> {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        self.stat(name)
    }

    /// The group's kernel memory outside slab, kernel stacks, page tables, per-CPU data and
    /// vmalloc, in bytes, once settled: pages the kernel allocated for it directly, which is
    /// where the module's frames (and its large directories) are charged. Unlike
    /// `memory.current` it does not move with the dentries and inodes that `/proc` keeps of
    /// exited processes, or with this process's own heap.
    pub fn direct_kernel_pages(&self) -> Res<u64> {
        let kernel = self.settled_stat("kernel")?;
        let mut other = 0;
        for name in [
            "slab",
            "kernel_stack",
            "pagetables",
            "sec_pagetables",
            "percpu",
            "vmalloc",
        ] {
            other += self.stat(name)?;
        }
        Ok(kernel.saturating_sub(other))
    }

    /// Writes the group's file `name` (`memory.max`, ...).
    pub fn write(&self, name: &str, value: &str) -> Res {
        std::fs::write(format!("{}/{name}", self.path), value)
            .map_err(|e| format!("writing {value:?} to {}/{name}: {e}", self.path))
    }

    /// Removes the group (best effort: a group that still has processes stays).
    pub fn remove(self) {
        let _ = std::fs::remove_dir(&self.path);
    }

    /// Moves this process back to the root group, then removes the group.
    pub fn leave_and_remove(self) {
        let _ = std::fs::write(
            format!("{CGROUP}/cgroup.procs"),
            std::process::id().to_string(),
        );
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_lines() {
        assert_eq!(tap_line(3, "a case", &Ok(())), "ok 3 - a case");
        assert_eq!(
            tap_line(4, "another", &Err("it broke".into())),
            "not ok 4 - another\n# it broke"
        );
    }

    #[test]
    fn tap_counts() {
        let mut tap = Tap::new("test");
        tap.check("passes", true, || unreachable!());
        tap.check("fails", false, || "why".into());
        tap.result("passes too", Ok(()));
        assert_eq!((tap.count(), tap.passed(), tap.failed()), (3, 2, 1));
    }

    #[test]
    fn reliability_lines() {
        assert_eq!(
            reliability_line("e2e", &[("params", &"default"), ("cases", &30)]),
            "RPD-RELIABILITY: mode=e2e params=default cases=30"
        );
        assert_eq!(reliability_line("x", &[]), "RPD-RELIABILITY: mode=x");
    }

    #[test]
    fn exit_statuses() {
        // The wait status encodings of Linux: code << 8 for an exit, the signal number for a
        // kill.
        assert_eq!(Exit(0).result(), Ok(0));
        assert!(Exit(0).success());
        assert_eq!(Exit(13 << 8).result(), Ok(13));
        assert!(!Exit(13 << 8).success());
        assert_eq!(Exit(libc::SIGBUS).result(), Err(libc::SIGBUS));
        assert!(!Exit(libc::SIGBUS).success());
    }

    #[test]
    fn a_child_runs_and_reports() {
        // cargo test runs tests on threads of its own: only fork's async-signal-safe use.
        // SAFETY: the child returns a constant, which is async-signal-safe.
        let child = unsafe { fork(|| 7) }.unwrap();
        assert_eq!(child.wait().unwrap().result(), Ok(7));
    }
}
