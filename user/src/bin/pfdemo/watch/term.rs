//! The terminal side of `pfdemo watch`: raw mode and the alternate screen for the time of
//! the watch, a frame every interval, the keys, and the terminal given back as it was on every
//! way out (`q`, Ctrl-C, `--frames`, an error, a panic, SIGTERM or SIGHUP).
//!
//! Keys are read from stdin with poll(2), and a resize is a SIGWINCH: crossterm's event
//! reader registers its signal pipe through a Unix socket pair, and the VM kernel has no
//! networking (socketpair is ENOSYS there). Raw mode is only termios, so crossterm does that.

use super::source::Source;
use super::view::{self, Glyphs};
use pfdemo::Res;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM, SIGHUP or SIGINT: the loop ends and the terminal is restored, where the
/// default action would leave it raw and on the alternate screen.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGWINCH: the terminal changed its size, draw again at once.
static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGWINCH {
        RESIZED.store(true, Ordering::Relaxed);
    } else {
        STOP.store(true, Ordering::Relaxed);
    }
}

/// What a key read from the terminal asks for.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Quit,
    Other,
    None,
}

/// Waits up to `timeout` for keys on stdin: `q` or Ctrl-C (a 0x03 byte: raw mode turns off
/// the terminal's own signal for it) quit.
fn read_key(timeout: Duration) -> Res<Key> {
    let mut pfd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::Interrupted => Ok(Key::None),
            _ => Err(format!("poll stdin: {e}")),
        };
    }
    if n == 0 {
        return Ok(Key::None);
    }
    if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 && pfd.revents & libc::POLLIN == 0 {
        return Err("the terminal went away (hang-up on stdin)".into());
    }
    let mut buf = [0u8; 64];
    // SAFETY: reading into a local buffer of that size.
    let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => Ok(Key::None),
            _ => Err(format!("read stdin: {e}")),
        };
    }
    Ok(classify(&buf[..n as usize]))
}

/// The keys of one read: any `q` or Ctrl-C among them quits.
fn classify(bytes: &[u8]) -> Key {
    match bytes {
        [] => Key::None,
        _ if bytes.iter().any(|b| *b == b'q' || *b == 0x03) => Key::Quit,
        _ => Key::Other,
    }
}

/// Puts the terminal back: out of raw mode, off the alternate screen, the cursor shown.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = std::io::stdout().flush();
}

/// Restores the terminal when dropped: on return and on unwinding alike.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// The terminal's size; (0, 0) on a serial console nobody told its size to, where `stty rows R
/// cols C` (or LINES and COLUMNS) gives it.
fn viewport() -> (Viewport, Option<String>) {
    match terminal::size() {
        Ok((w, h)) if w > 0 && h > 0 => (Viewport::Fullscreen, None),
        _ => {
            let env = |name: &str, default: u16| {
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(default)
            };
            let (w, h) = (env("COLUMNS", 80), env("LINES", 24));
            (
                Viewport::Fixed(Rect::new(0, 0, w, h)),
                Some(format!(
                    "(size unknown, drawn at {w}x{h}: stty rows R cols C)"
                )),
            )
        }
    }
}

/// Draws a frame every `interval` until `q` or Ctrl-C (or `frames` frames), then restores the
/// terminal.
pub fn run(source: &mut Source, glyphs: &Glyphs, interval: Duration, frames: Option<u64>) -> Res {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(
            "stdin or stdout is not a terminal. Fix: run it in a terminal, or use --once for one frame as plain text"
                .into(),
        );
    }
    // The first frame's data before the screen changes: an error then prints as usual.
    let mut snapshot = source.sample()?;
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGWINCH] {
        // SAFETY: `on_signal` only stores to atomics, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    pfdemo::io("raw mode", terminal::enable_raw_mode())?;
    let _restore = Restore;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    pfdemo::io(
        "alternate screen",
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        ),
    )?;
    let (viewport, note) = viewport();
    let mut term = pfdemo::io(
        "terminal",
        Terminal::with_options(
            CrosstermBackend::new(std::io::stdout()),
            TerminalOptions { viewport },
        ),
    )?;
    pfdemo::io("clear", term.clear())?;
    let mut drawn = 0;
    loop {
        snapshot.status_note = note.clone();
        pfdemo::io("draw", term.draw(|f| view::draw(f, &snapshot, glyphs)))?;
        drawn += 1;
        if frames == Some(drawn) {
            return Ok(());
        }
        let next = Instant::now() + interval;
        loop {
            if STOP.load(Ordering::Relaxed) {
                return Ok(());
            }
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if RESIZED.swap(false, Ordering::Relaxed) {
                break;
            }
            // At most 100 ms at a time, so that a signal is seen soon.
            if read_key(left.min(Duration::from_millis(100)))? == Key::Quit {
                return Ok(());
            }
        }
        snapshot = source.sample()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_and_ctrl_c_quit_other_keys_do_not() {
        assert_eq!(classify(b"q"), Key::Quit);
        assert_eq!(classify(b"\x03"), Key::Quit);
        assert_eq!(classify(b"x\x1b[Aq"), Key::Quit);
        assert_eq!(classify(b"\x1b[A"), Key::Other);
        assert_eq!(classify(b"Q"), Key::Other);
        assert_eq!(classify(b""), Key::None);
    }
}
