//! The terminal side of `pfdemo watch`: raw mode and the alternate screen for the time of
//! the watch, a frame every interval, the keys, and the terminal given back as it was on every
//! way out (`q`, Ctrl-C, `--frames`, an error, a panic, SIGTERM or SIGHUP).

use super::source::Source;
use super::view::{self, Glyphs};
use pfdemo::Res;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM, SIGHUP or SIGINT: the loop ends and the terminal is restored, where the
/// default action would leave it raw and on the alternate screen.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
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
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: `stop` only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, stop as *const () as libc::sighandler_t) };
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
            // At most 100 ms at a time, so that a signal is seen soon.
            if pfdemo::io(
                "poll keys",
                event::poll(left.min(Duration::from_millis(100))),
            )? {
                match pfdemo::io("read keys", event::read())? {
                    Event::Key(k) if k.kind == KeyEventKind::Press => {
                        let ctrl_c = k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL);
                        if k.code == KeyCode::Char('q') || ctrl_c {
                            return Ok(());
                        }
                    }
                    // Redraw at the new size at once.
                    Event::Resize(..) => break,
                    _ => {}
                }
            }
        }
        snapshot = source.sample()?;
    }
}
