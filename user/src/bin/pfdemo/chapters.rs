//! The tour's chapters, past "one touch, one fault": `malloc` for real, the zero page,
//! copy-on-write, where a frame comes from, and a fault handler in user space. Each runs on its
//! own (`pfdemo tour CHAPTER`) or all in a row (`pfdemo tour all`), every step checked against
//! the kernel's own records through the tour's recorder (`tour/record.rs`).
//!
//! This file picks the chapters and keeps their verdict; `chapters/*.rs` are the chapters, and
//! the helpers two or more of them need (a child process that reports back, the zero page's
//! PFN, the PFN of a frame from pagemap) are here.

mod cow;
mod malloc;
mod origin;
mod uffd;
mod zero_page;

use crate::tour::record::Tour;
use pfdemo::sys::{Mapping, Pagemap};
use pfdemo::{io, Res};

/// A chapter of the tour (`all`: every one, in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Chapter {
    /// What the C library's malloc, calloc and free call: the heap (brk) or a fresh mmap.
    Malloc,
    /// A read of fresh anonymous memory maps the shared zero page; the write faults again.
    ZeroPage,
    /// A private mapping of the device, and fork: frames shared until someone writes.
    Cow,
    /// Where a frame comes from: zone, node, order, page flags, the memory cgroup's charge.
    Origin,
    /// The first touch handled in user space by userfaultfd.
    Uffd,
    /// Every chapter, in order.
    All,
}

impl Chapter {
    fn name(self) -> &'static str {
        match self {
            Chapter::Malloc => "malloc",
            Chapter::ZeroPage => "zero-page",
            Chapter::Cow => "cow",
            Chapter::Origin => "origin",
            Chapter::Uffd => "uffd",
            Chapter::All => "all",
        }
    }
}

/// The recorder of a chapter run: the tour's own, plus the verdict under a marker of its own
/// (`chapters: all N checks passed`), so a test counting the tour's `tour: all N checks
/// passed` lines counts the eight steps' runs alone.
pub struct Book {
    tour: Tour,
    json: bool,
    total: usize,
    failed: Vec<String>,
}

impl Book {
    fn new(json: bool) -> Self {
        Self {
            tour: Tour::new(json, None),
            json,
            total: 0,
            failed: Vec::new(),
        }
    }

    /// A step of chapter `side`, with the evidence checked for it.
    pub fn step(
        &mut self,
        side: &'static str,
        n: u32,
        title: &'static str,
        ok: bool,
        evidence: String,
    ) {
        self.total += 1;
        if !ok {
            self.failed.push(format!("{side} step {n}: {evidence}"));
        }
        self.tour.step(side, n, title, ok, evidence);
    }

    pub fn say(&self, text: &str) {
        self.tour.say(text);
    }

    fn finish(self, check: bool) -> Res {
        let (json, total, failed) = (self.json, self.total, self.failed);
        // The tour's recorder prints the JSON; the verdict is ours.
        self.tour.finish(false)?;
        if check {
            if let Some(first) = failed.first() {
                return Err(format!(
                    "chapters: {} of {total} checks failed (first: {first})",
                    failed.len()
                ));
            }
            if !json {
                println!("chapters: all {total} checks passed");
            }
        }
        Ok(())
    }
}

/// Runs `chapter` (or all of them) with the tour's `--check` and `--json`.
pub fn run(chapter: Chapter, check: bool, json: bool) -> Res {
    let mut book = Book::new(json);
    let all = [
        Chapter::Malloc,
        Chapter::ZeroPage,
        Chapter::Cow,
        Chapter::Origin,
        Chapter::Uffd,
    ];
    let list: Vec<Chapter> = if chapter == Chapter::All {
        all.to_vec()
    } else {
        vec![chapter]
    };
    for c in list {
        book.say(&format!("\n== chapter {} ==\n", c.name()));
        match c {
            Chapter::Malloc => malloc::run(&mut book)?,
            Chapter::ZeroPage => zero_page::run(&mut book)?,
            Chapter::Cow => cow::run(&mut book)?,
            Chapter::Origin => origin::run(&mut book)?,
            Chapter::Uffd => uffd::run(&mut book)?,
            Chapter::All => {}
        }
    }
    book.finish(check)
}

/// The PFN pagemap gives for the page at `va`, if it is present.
fn pfn_at(pm: &mut Pagemap, va: usize) -> Res<Option<u64>> {
    Ok(io("pagemap", pm.entry(va))?.pfn)
}

/// The kernel's zero page, as pagemap shows it: the frame a read of fresh anonymous memory
/// maps.
fn zero_page_pfn(pm: &mut Pagemap) -> Res<u64> {
    let probe = io("mmap anonymous", Mapping::anonymous_4k(1))?;
    probe.read(0, 0);
    pfn_at(pm, probe.addr(0))?.ok_or_else(|| "pagemap: the zero page's PFN is hidden".to_string())
}

/// Runs `work` in a forked child (the harness's fork) and returns what `parent_side` makes of
/// the numbers the child reports. The child then waits on a second pipe that the parent closes
/// only when `parent_side` has returned: so the child is alive, its mappings intact, while the
/// parent looks at its own. Bounded: a child that reports nothing within 10 s is given up.
fn in_child<T>(
    work: impl FnOnce() -> Vec<u64>,
    parent_side: impl FnOnce(&[u64]) -> Res<T>,
) -> Res<T> {
    let (mut report, mut hold) = ([0i32; 2], [0i32; 2]);
    for fds in [&mut report, &mut hold] {
        // SAFETY: a valid array of two descriptors for pipe(2) to fill.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
    }
    let in_the_child = || {
        let bytes: Vec<u8> = work().iter().flat_map(|w| w.to_le_bytes()).collect();
        // SAFETY: writing our own buffer to our pipe, then waiting for the parent to close
        // the hold pipe (EOF), reading into a byte of ours.
        unsafe {
            libc::write(report[1], bytes.as_ptr().cast(), bytes.len());
            libc::close(report[1]);
            libc::close(hold[1]);
            let mut b = 0u8;
            libc::read(hold[0], (&mut b as *mut u8).cast(), 1);
        }
        0
    };
    // SAFETY: the program is single-threaded here (the chapters that fork run before the
    // uffd chapter starts its handler thread, and no other starts one), so the child may run
    // any Rust code.
    let child = unsafe { pfdemo::harness::fork(in_the_child) };
    // SAFETY: closing the child's ends in the parent.
    unsafe {
        libc::close(report[1]);
        libc::close(hold[0]);
    }
    let child = child.map_err(|e| format!("fork: {e}"));
    let mut bytes = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut timed_out = false;
    while child.is_ok() {
        let mut pfd = libc::pollfd {
            fd: report[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) } <= 0 {
            timed_out = true;
            break;
        }
        // SAFETY: reading into our own buffer from our pipe.
        let n = unsafe { libc::read(report[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n as usize]);
    }
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let result = if timed_out {
        Err("the child reported nothing within 10 s".to_string())
    } else {
        parent_side(&words)
    };
    // SAFETY: closing our ends of the pipes, which lets the child exit.
    unsafe {
        libc::close(report[0]);
        libc::close(hold[1]);
    }
    if !timed_out {
        io("wait", child?.wait())?;
    }
    result
}
