//! `pfdemo` run in a pseudo-terminal, as a person at a terminal would run it: the slave side is
//! its controlling terminal, the test holds the master, types into it, and reads back the
//! bytes the program drew, which a terminal emulator (the `vt100` crate) turns into the
//! screen a person would see.

use crate::expect::*;
use pfdemo::harness::{Child, Exit};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What leaves the alternate screen (xterm's private mode 1049, as crossterm writes it).
pub const LEAVE_ALTERNATE: &[u8] = b"\x1b[?1049l";

/// A program on a pseudo-terminal.
pub struct PtyRun {
    /// Until it is reaped.
    child: Option<Child>,
    master: File,
    /// The test's own handle on the terminal: its settings (termios) are the slave's.
    slave: File,
    /// Every byte the program wrote, from its start.
    pub out: Vec<u8>,
    /// The terminal's settings before the program started.
    pub initial: libc::termios,
    rows: u16,
    cols: u16,
}

impl PtyRun {
    /// Starts `/bin/pfdemo ARGS` with `TERM=term` on a new terminal of `cols` x `rows`, in a
    /// session of its own whose controlling terminal it is.
    ///
    /// By fork and exec of our own: std's `Command` with a `pre_exec` hook (for `setsid`)
    /// reports the child's errors over a Unix socket pair, and the VM kernel has no
    /// networking (`socketpair` is ENOSYS there).
    pub fn start(args: &[&str], term: &str, cols: u16, rows: u16) -> Result<Self, String> {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: two ints for the descriptors, no name buffer, default settings, a valid size.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        ensure!(
            r == 0,
            "openpty: {} (is devpts mounted on /dev/pts?)",
            std::io::Error::last_os_error()
        );
        // SAFETY: openpty returned two open descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let initial = termios(&slave)?;
        // Everything the child needs, made before the fork: after it, it only makes calls.
        let cstr = |s: &str| CString::new(s).map_err(|_| format!("a NUL in {s:?}"));
        let program = cstr("/bin/pfdemo")?;
        let argv: Vec<CString> = std::iter::once("pfdemo")
            .chain(args.iter().copied())
            .map(cstr)
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = std::env::vars()
            .filter(|(k, _)| !["TERM", "COLUMNS", "LINES"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .chain(std::iter::once(format!("TERM={term}")))
            .map(|kv| cstr(&kv))
            .collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let (argv_p, env_p) = (ptrs(&argv), ptrs(&env));
        let (m, s) = (master.as_raw_fd(), slave.as_raw_fd());
        let body = || {
            // SAFETY: plain system calls on descriptors this process owns, and an exec of
            // NUL-terminated strings and arrays made before the fork.
            unsafe {
                if libc::setsid() < 0 || libc::ioctl(s, libc::TIOCSCTTY, 0) < 0 {
                    return 126;
                }
                for fd in 0..3 {
                    libc::dup2(s, fd);
                }
                libc::close(m);
                libc::close(s);
                libc::execve(program.as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
            }
            127
        };
        // SAFETY: this process is single-threaded (the cases run one after another on the
        // main thread), and the child only makes system calls.
        let child = io("fork pfdemo on a pty", unsafe {
            pfdemo::harness::fork(body)
        })?;
        Ok(PtyRun {
            child: Some(child),
            master: File::from(master),
            slave: File::from(slave),
            out: Vec::new(),
            initial,
            rows,
            cols,
        })
    }

    /// How the program ended, if it has, without reaping it (`WNOWAIT`: [`Child::wait`]
    /// does that).
    fn ended(&mut self) -> Result<Option<Exit>, String> {
        let Some(child) = &self.child else {
            return Err("the program was already waited for".into());
        };
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: our own child, and a siginfo_t to fill.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                child.pid() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        ensure!(r == 0, "waitid: {}", std::io::Error::last_os_error());
        // SAFETY: waitid filled `info`; si_pid is 0 while the child runs.
        if unsafe { info.si_pid() } == 0 {
            return Ok(None);
        }
        let child = self.child.take().expect("checked above");
        Ok(Some(io("wait", child.wait())?))
    }

    /// Reads what the program writes for `limit` at most, and returns once it is quiet for
    /// 20 ms (or when the limit is reached).
    pub fn pump(&mut self, limit: Duration) -> Check {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 16384];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let wait = left.min(Duration::from_millis(20)).as_millis() as i32;
            let mut pfd = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, wait) };
            if n <= 0 {
                return Ok(());
            }
            match self.master.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read the pty: {e}")),
            }
            if left.is_zero() {
                return Ok(());
            }
        }
    }

    /// The screen as a terminal shows it after the first `bytes` of the output.
    fn parse(&self, bytes: &[u8]) -> vt100::Parser {
        let mut p = vt100::Parser::new(self.rows, self.cols, 0);
        p.process(bytes);
        p
    }

    /// The screen now.
    pub fn screen(&self) -> vt100::Parser {
        self.parse(&self.out)
    }

    /// The rows of the screen now.
    pub fn lines(&self) -> Vec<String> {
        rows(&self.screen())
    }

    /// The last frame the program drew on the alternate screen: the screen right before it
    /// left it (leaving shows the main screen again).
    pub fn last_frame(&self) -> Result<Vec<String>, String> {
        let at = self
            .out
            .windows(LEAVE_ALTERNATE.len())
            .rposition(|w| w == LEAVE_ALTERNATE)
            .ok_or("the program never left the alternate screen")?;
        Ok(rows(&self.parse(&self.out[..at])))
    }

    /// Reads until `done` holds for the screen, for `limit` at most.
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<Vec<String>, String> {
        let end = Instant::now() + limit;
        loop {
            self.pump(Duration::from_millis(50))?;
            let lines = self.lines();
            if done(&lines) {
                return Ok(lines);
            }
            if let Some(status) = self.ended()? {
                self.pump(Duration::from_millis(100))?;
                return Err(format!(
                    "pfdemo ended ({:?}) before {what}; the screen:\n{}",
                    status.result(),
                    self.lines().join("\n")
                ));
            }
            ensure!(
                Instant::now() < end,
                "no {what} within {limit:?}; the screen:\n{}",
                lines.join("\n")
            );
        }
    }

    /// Types `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Check {
        io("write the pty", self.master.write_all(bytes))
    }

    /// Waits for the program to end, for `limit` at most, reading its output meanwhile.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<Exit>, String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.ended()? {
                self.pump(Duration::from_millis(100))?;
                return Ok(Some(status));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            self.pump(Duration::from_millis(5))?;
        }
    }

    /// The terminal's settings now.
    pub fn termios(&self) -> Result<libc::termios, String> {
        termios(&self.slave)
    }
}

fn termios(fd: &impl AsRawFd) -> Result<libc::termios, String> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid terminal descriptor and a termios to fill.
    let r = unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) };
    ensure!(r == 0, "tcgetattr: {}", std::io::Error::last_os_error());
    Ok(t)
}

impl Drop for PtyRun {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(child.pid(), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

fn rows(p: &vt100::Parser) -> Vec<String> {
    let (_, cols) = p.screen().size();
    p.screen().rows(0, cols).collect()
}

/// The settings that raw mode changes and that the program must give back: line editing,
/// echo and signals (`c_lflag`), input and output processing.
pub fn cooked_part(t: &libc::termios) -> (libc::tcflag_t, libc::tcflag_t, libc::tcflag_t) {
    (t.c_lflag, t.c_iflag, t.c_oflag)
}
