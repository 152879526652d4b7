//! Chapter `uffd`: the eight steps again, with step 6 in user space. Anonymous memory
//! registered with userfaultfd for missing faults: the kernel hands each first touch to a
//! handler thread of this program, which resolves it with `UFFDIO_COPY` (a write) or
//! `UFFDIO_ZEROPAGE` (a read).

use super::{zero_page_pfn, Book};
use crate::tour::pfn_text;
use pfdemo::parse::{kpageflag_names, KPF_ANON};
use pfdemo::sys::{self, page_size, Device, Mapping, Pagemap, StatSampler};
use pfdemo::uffd::{Handler, Resolution, Uffd};
use pfdemo::walk;
use pfdemo::{io, Res};

const SIDE: &str = "uffd";
const PAGES: usize = 4;
/// What the handler's copies hold.
const FILL: u8 = 0xab;

/// This thread's minor and major fault counts right before and right after `access`. Major
/// too: a fault that waited for user space is retried, and when the retry is taken under the
/// mmap lock (the per-VMA lock was contended) the kernel counts it as major
/// (`FAULT_FLAG_TRIED`); seen as a touch with no minor fault at all.
fn faults_around(sampler: &StatSampler, access: impl FnOnce()) -> Res<((u64, u64), (u64, u64))> {
    let (mut b0, mut b1) = ([0u8; 1024], [0u8; 1024]);
    let n0 = io("stat", sampler.sample(&mut b0))?;
    access();
    let n1 = io("stat", sampler.sample(&mut b1))?;
    Ok((
        io("stat", StatSampler::faults(&b0[..n0]))?,
        io("stat", StatSampler::faults(&b1[..n1]))?,
    ))
}

pub fn run(b: &mut Book) -> Res {
    let mut pm = io("open pagemap", Pagemap::open())?;
    let zero = zero_page_pfn(&mut pm)?;
    // Any open file of the device answers the page-table walk for our own addresses.
    let dev = io("open device", Device::open())?;
    let map = io("mmap anonymous", Mapping::anonymous_4k(PAGES))?;
    let uffd = Uffd::open().map_err(|e| {
        format!(
            "userfaultfd: {e}{}",
            if e.raw_os_error() == Some(libc::ENOSYS) {
                " (the kernel lacks CONFIG_USERFAULTFD)"
            } else {
                ""
            }
        )
    })?;
    io("UFFDIO_REGISTER", uffd.register_missing(&map))?;
    let handler = Handler::start(uffd, FILL, true);
    // This thread's own fault counter: the handler thread's faults are not the touch's.
    let sampler = io("open /proc/thread-self/stat", StatSampler::open_thread())?;
    let absent = (0..PAGES).all(|i| pm.entry(map.addr(i)).is_ok_and(|e| !e.present));
    b.step(
        SIDE,
        1,
        "mmap, then UFFDIO_REGISTER (missing faults): addresses, nothing behind them, a handler thread waiting",
        absent,
        format!(
            "va {:#x}, {PAGES} pages registered with a userfaultfd; pagemap: not present; writes get UFFDIO_COPY of a page of {FILL:#x}, reads UFFDIO_ZEROPAGE",
            map.addr(0)
        ),
    );

    for i in 0..PAGES {
        let va = map.addr(i);
        let write = i % 2 == 0;
        let value = 0x0ffd_0000 + i as u64;
        let w0 = io("walk", walk::walk(dev.fd(), va))?;
        let entry0 = io("pagemap", pm.entry(va))?;
        let s0 = io("stats", sys::read_stats())?;
        let resolved0 = handler.resolved();
        let mut got = 0;
        let ((m0, j0), (m1, j1)) = faults_around(&sampler, || {
            if write {
                map.write(i, 0, value)
            } else {
                got = map.read(i, 0)
            }
        })?;
        let s1 = io("stats", sys::read_stats())?;
        let entry = io("pagemap", pm.entry(va))?;
        let log = handler.log();
        let event = log.iter().find(|(f, _)| f.address == va as u64).copied();
        b.say(&format!(
            "\n  {} page {i} (va {va:#x})",
            if write {
                format!("writing {value:#x} to")
            } else {
                "reading".into()
            }
        ));
        b.step(
            SIDE,
            2,
            "the program touches the address",
            true,
            if write {
                format!("store to {va:#x}")
            } else {
                format!("load from {va:#x}")
            },
        );
        b.step(
            SIDE,
            3,
            "the MMU tries to translate the address: the walk ends before a leaf",
            !w0.end().is_leaf(),
            format!(
                "walk right before: ends {:?} at level {}",
                w0.end(),
                w0.stop_level()
                    .map_or("?", |l| walk::LEVEL_NAMES[l as usize])
            ),
        );
        b.step(
            SIDE,
            4,
            "the page table has no entry for it",
            !entry0.present,
            format!(
                "pagemap right before the access: {}",
                if entry0.present {
                    "present"
                } else {
                    "not present"
                }
            ),
        );
        b.step(
            SIDE,
            5,
            "the CPU raises a page fault",
            (m1 - m0) + (j1 - j0) == 1,
            format!(
                "this thread's faults around the access: minor {m0} -> {m1}, major {j0} -> {j1}"
            ),
        );
        let want = if write {
            Resolution::Copy
        } else {
            Resolution::ZeroPage
        };
        b.step(
            SIDE,
            6,
            "the kernel hands the fault to user space: our handler thread, not a kernel handler",
            event.is_some_and(|(f, how)| f.write == write && how == want)
                && handler.resolved() == resolved0 + 1
                && s1.delta(&s0, "faults") == 0,
            format!(
                "the handler read a UFFD_EVENT_PAGEFAULT for {va:#x} ({}), answered with {}; our module's faults +{}",
                match event {
                    Some((f, _)) if f.write => "write",
                    Some(_) => "read",
                    None => "none seen",
                },
                match event {
                    Some((_, Resolution::Copy)) => "UFFDIO_COPY",
                    Some((_, Resolution::ZeroPage)) => "UFFDIO_ZEROPAGE",
                    None => "nothing",
                },
                s1.delta(&s0, "faults")
            ),
        );
        let flags = entry
            .pfn
            .map(sys::kpageflags)
            .transpose()
            .map_err(|e| format!("kpageflags: {e}"))?
            .unwrap_or(0);
        let filled = if write {
            (8..page_size())
                .step_by(8)
                .all(|o| map.read(i, o) == u64::from_ne_bytes([FILL; 8]))
        } else {
            map.page_is_zero(i)
        };
        b.step(
            SIDE,
            7,
            "the handler's answer fills the page-table entry",
            entry.present
                && filled
                && if write {
                    flags & KPF_ANON != 0 && entry.pfn != Some(zero)
                } else {
                    entry.pfn == Some(zero)
                },
            format!(
                "pagemap: pfn {} {}; kpageflags {:?}; the page holds {}",
                pfn_text(entry.pfn),
                if entry.pfn == Some(zero) {
                    "(the zero page)"
                } else {
                    "(a new frame with the handler's copy)"
                },
                kpageflag_names(flags),
                if write {
                    format!("{FILL:#x} bytes but the stored word: {filled}")
                } else {
                    format!("zeros: {filled}")
                }
            ),
        );
        let back = map.read(i, 0);
        b.step(
            SIDE,
            8,
            "the access runs again and succeeds",
            if write { back == value } else { got == 0 },
            if write {
                format!("reads back {back:#x}")
            } else {
                format!("the load returned {got:#x}")
            },
        );
    }
    let log = handler.log();
    let stopped = handler.stop();
    b.step(
        SIDE,
        9,
        "one user-space resolution per first touch, and the handler stopped cleanly",
        log.len() == PAGES && stopped.is_ok(),
        format!(
            "{} faults resolved ({} UFFDIO_COPY, {} UFFDIO_ZEROPAGE); handler: {}",
            log.len(),
            log.iter().filter(|(_, h)| *h == Resolution::Copy).count(),
            log.iter()
                .filter(|(_, h)| *h == Resolution::ZeroPage)
                .count(),
            stopped.map_or_else(|e| e.to_string(), |()| "stopped".into())
        ),
    );
    Ok(())
}
