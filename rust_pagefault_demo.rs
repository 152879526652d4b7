// SPDX-License-Identifier: GPL-2.0

//! Demand paging, made visible.
//!
//! When a program calls `malloc`, it gets a virtual address and nothing else: no physical
//! memory stands behind it yet. The first time the program touches that address, the MMU
//! walks the process's page table, finds no entry, and raises a page fault. The kernel's fault
//! handler allocates a physical frame, writes the page-table entry, and the faulting
//! instruction runs again, this time successfully.
//!
//! This module performs that same story with its own fault handler, written in Rust, so each
//! step can be watched. A program uses it like this (error handling left out):
//!
//! ```c
//! int fd = open("/dev/rust_pagefault_demo", O_RDWR);        // a new instance
//! char *p = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE,
//!                MAP_SHARED, fd, 0);                          // addresses, no frames
//! p[0] = 1;                        // MMU miss, page fault, our handler maps a zeroed frame
//! p[4096] = 2;                     // the next page: its own fault, its own frame
//! munmap(p, 16 * 4096);            // the frames stay with the instance...
//! close(fd);                       // ...until the last close frees them
//! ```
//!
//! and can check each step in debugfs (`/sys/kernel/debug/rust_pagefault_demo/`: `stats`,
//! `frames`, `latency`, and `events/`, a record of every handler call) and in its own
//! `/proc/self/pagemap`.
//!
//! # Reading order
//!
//! The files follow the story:
//!
//! 1. [`instance`]: `open` makes an *instance*, `mmap` checks the request and installs the
//!    fault handler; nothing is allocated. The last `close` frees the frames.
//! 2. [`instance::fault`] (`instance/fault.rs`): the handler. A touch of an unmapped page
//!    comes here; it finds or allocates the page's frame and maps it with `vm_insert_page`,
//!    which fills the page-table entry; the core retries the access.
//! 3. [`frame_table`]: which frame backs each page offset of an instance, on top of
//!    [`once_array`], a lock-free array of write-once slots (the first frame stored wins).
//! 4. [`budget`]: all instances together hold at most `max_total_pages` frames, exactly.
//! 5. [`stats`]: the counters and the latency histogram, sharded per CPU ([`shard`]).
//! 6. [`limits`]: the module parameters, checked once at load.
//! 7. [`walk`]: the MMU's view. An ioctl walks the caller's page tables for one address, level
//!    by level, so a program can see the empty entry before its first touch and the entry our
//!    handler wrote after it.
//! 8. [`recorder`]: the flight recorder, a lock-free ring per CPU with one record per handler
//!    call (who, where, which path, the frame, the time of each part), read from `events/`.
//! 9. [`vm`] (`vm.rs`, `vm/`): the shim, the only place with raw bindings: the
//!    `vm_operations_struct`, frames, page insertion, the page-table entry format and walk.
//!
//! This file registers the device and the debugfs files.
//!
//! # Limits
//!
//! An instance is `max_pages` pages long (a mapping beyond that fails with `EINVAL`), and all
//! instances together hold at most `max_total_pages` frames (a fault past that gets
//! `SIGBUS`). Frames live as long as the instance: they survive `munmap` and are freed at the
//! last `close`.
//!
//! # Where `unsafe` is
//!
//! The kernel crate has no abstraction for `vm_operations_struct` yet: the raw bindings this
//! needs live in [`vm`], each behind a safe interface. Outside it, `unsafe` appears only where
//! the proof rests on this module's own invariants, each with its `// SAFETY:` comment: the
//! frame table's lock-free array ([`once_array`]), which lends its frames out for as long as
//! it is borrowed because it never removes one while it lives; `mmap`, which gives
//! [`vm::install`] a handler that outlives the mapping; the instance list, set up once at
//! load (the kernel's `global_lock!` pattern); and the walk's reply ([`walk`]), declared
//! plain bytes (`AsBytes`, `FromBytes`) because its layout has no padding.
//!
//! # Locks and context
//!
//! Two locks, never held together: the instance list's mutex ([`instance`]), taken by `open`,
//! `release` and the `frames` file, never on the fault path; and a huge instance's
//! `pmd_lock`, taken on its fault path from looking at a PMD entry to filling it (see
//! [`instance::fault`]). The fault path runs under the core's mmap or VMA read lock; a 4 KiB
//! instance's takes no lock of the module's.

use kernel::{
    fmt,
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*, //
};

mod budget;
mod frame_table;
mod instance;
mod limits;
mod once_array;
mod recorder;
mod shard;
mod stats;
mod vm;
mod walk;

use budget::BUDGET;
use instance::Instance;
use limits::{
    limits,
    Limits,
    Switches,
    LIMITS, //
};
use recorder::RECORDER;
use stats::STATS;
use vm::debugfs::{
    self,
    Show, //
};

module! {
    type: PagefaultDemo,
    name: "rust_pagefault_demo",
    authors: ["The rust_pagefault_demo developers"],
    description: "Demand paging made visible: a Rust mmap fault handler with debugfs evidence",
    license: "GPL",
    params: {
        max_pages: u64 {
            default: 65536,
            description: "Pages per instance (1..=16777216); a larger mmap fails with EINVAL",
        },
        max_total_pages: u64 {
            default: 0,
            description: "Live frames of all instances at most (0: a quarter of RAM)",
        },
        prefault: u32 {
            default: 1,
            description: "Pages mapped per fault (1..=512): the faulting page and those after it",
        },
        huge: bool {
            default: false,
            description: "Use 2 MiB frames, mapped with one PMD where a mapping is 2 MiB aligned",
        },
        map_pages: bool {
            default: true,
            description: "Offer map_pages, so faults under the VMA lock need no mmap lock (a switch)",
        },
        latency: u32 {
            default: 1,
            description: "Time every Nth handler call for the latency histogram (0: none)",
        },
        insert_pages: bool {
            default: false,
            description: "Map a single page with vm_insert_pages, not vm_insert_page (a switch)",
        },
        return_page: bool {
            default: false,
            description: "Return the page in vmf->page for the core to map, not vm_insert_page (a switch)",
        },
        alloc_blocks: bool {
            default: true,
            description: "Allocate a prefault batch's frames in blocks of up to 8 pages (a switch)",
        },
        events: bool {
            default: false,
            description: "Record every handler call in debugfs events/ from load on (events/enable switches it)",
        },
    },
}

/// The module: the device and its debugfs files.
///
/// Drop order: `drop` below runs first, then the fields in declaration order: the device is
/// unregistered before the debugfs tree goes. Nothing can use either by then: an open file of
/// the device or of debugfs pins the module (both tables name it as their owner), so unload
/// runs only when no instance and no reader is left.
#[pin_data(PinnedDrop)]
struct PagefaultDemo {
    #[pin]
    misc: MiscDeviceRegistration<Instance>,
    /// `stats`, `frames`, `latency`, and `events/`: a `cpu<k>` file per shard of the flight
    /// recorder, `heads`, and `enable`.
    _debugfs: debugfs::Dir,
}

#[pinned_drop]
impl PinnedDrop for PagefaultDemo {
    fn drop(self: Pin<&mut Self>) {
        let left = instance::drain_instances();
        if left != 0 {
            pr_err!("{left} instances left at unload\n");
        }
    }
}

impl kernel::InPlaceModule for PagefaultDemo {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let checked = Limits::new(
            module_parameters::max_pages.value(),
            module_parameters::max_total_pages.value(),
            module_parameters::prefault.value(),
            module_parameters::huge.value(),
            vm::ram_pages(),
        )
        .map(|limits| Limits {
            switches: Switches {
                map_pages: module_parameters::map_pages.value(),
                latency: module_parameters::latency.value(),
                insert_pages: module_parameters::insert_pages.value(),
                return_page: module_parameters::return_page.value(),
                alloc_blocks: module_parameters::alloc_blocks.value(),
            },
            ..limits
        });
        let setup = match checked {
            Ok(limits) => {
                LIMITS.populate(limits);
                BUDGET.set_cap(limits.max_total_pages);
                // SAFETY: called once, before the device and debugfs files that use it exist.
                unsafe { instance::init_instances() };
                pr_info!(
                    "max_pages={} max_total_pages={} prefault={} huge={} map_pages={} \
                     latency={} insert_pages={} return_page={} alloc_blocks={} events={}\n",
                    limits.max_pages,
                    limits.max_total_pages,
                    limits.prefault,
                    limits.huge,
                    limits.switches.map_pages,
                    limits.switches.latency,
                    limits.switches.insert_pages,
                    limits.switches.return_page,
                    limits.switches.alloc_blocks,
                    module_parameters::events.value()
                );
                RECORDER.switch_on(module_parameters::events.value());
                Ok(())
            }
            Err(why) => {
                pr_err!("invalid module parameters: {why}\n");
                Err(EINVAL)
            }
        };
        // The debugfs tree comes last, after everything that can fail: a file opened while
        // the module is still loading pins it, but a failed load frees the module whatever
        // its count, and that file's close would call into freed memory.
        try_pin_init!(Self {
            _: { setup? },
            misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rust_pagefault_demo",
            }),
            _debugfs: debugfs_files(),
        })
    }
}

/// Creates the module's debugfs tree (files that exist only at load, not per instance).
fn debugfs_files() -> debugfs::Dir {
    let dir = debugfs::Dir::new(c"rust_pagefault_demo");
    let files = dir.files();
    files.text(c"stats", &StatsFile);
    files.text(c"frames", &FramesFile);
    files.text(c"latency", &LatencyFile);
    let events = files.dir(c"events");
    for (k, name) in recorder::FILE_NAMES.iter().enumerate() {
        events.binary(name, RECORDER.ring(k));
    }
    events.text(c"heads", &HeadsFile);
    events.text_rw(c"enable", RECORDER.switch());
    dir
}

/// debugfs `stats`: the counters, the budget, the metadata and the settings.
struct StatsFile;

impl Show for StatsFile {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        STATS.write(
            f,
            &BUDGET,
            instance::metadata_bytes(),
            &limits(),
            RECORDER.on(),
        )
    }
}

/// debugfs `frames`: every live 4 KiB page of every instance.
struct FramesFile;

impl Show for FramesFile {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        instance::write_frames(f)
    }
}

/// debugfs `latency`: the handler's latency histogram.
struct LatencyFile;

impl Show for LatencyFile {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        STATS.write_latency(f)
    }
}

/// debugfs `events/heads`: each ring's next and oldest sequence number.
struct HeadsFile;

impl Show for HeadsFile {
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RECORDER.write_heads(f)
    }
}
