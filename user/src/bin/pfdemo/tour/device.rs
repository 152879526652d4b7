//! The tour's walk on the device: `mmap` gives addresses with nothing behind them (step 1),
//! then each touch, steps 2 to 8, from the store to the frame our handler maps, with the
//! page-table walk around the store (`tour/mmu.rs`). With `huge`, the mapping is 2 MiB
//! aligned and every touch is a PMD-level fault that maps a whole 2 MiB frame.

use super::mmu::Samplers;
use super::record::Tour;
use super::{delta_of, pfn_text, Walked};
use crate::picture::picture_every;
use pfdemo::parse::FrameRow;
use pfdemo::sys::{self, page_size, Device, Mapping, Pagemap};
use pfdemo::{io, Res};

/// The page to touch and what the walk knows.
struct Walk<'a> {
    t: &'a mut Tour,
    pm: &'a mut Pagemap,
    samplers: &'a Samplers,
    dev: &'a Device,
    map: &'a Mapping,
    instance: u64,
    /// Pages one fault maps (the module's `prefault`).
    k: usize,
    /// Pages in one frame: 512 with `huge`, else 1.
    unit: usize,
}

impl Walk<'_> {
    /// Every `stride`-th page is touched, so that every touch is a first touch: one fault
    /// maps `k` pages, or with `huge` a whole 2 MiB frame.
    fn stride(&self) -> usize {
        self.k.max(self.unit)
    }
}

/// The `frames` row of (instance, pgoff), if the module lists one.
fn frame_row(instance: u64, pgoff: usize) -> Res<Option<FrameRow>> {
    Ok(io("frames", sys::read_frames())?
        .into_iter()
        .find(|r| r.instance == instance && r.pgoff == pgoff as u64))
}

/// Steps 1 to 8 on `pages` touches of the device.
pub fn walk(t: &mut Tour, pm: &mut Pagemap, samplers: &Samplers, pages: usize) -> Res<Walked> {
    let dev = io("open device", Device::open())?;
    let instance = io("fdinfo", dev.fdinfo())?.instance;
    let settings = io("stats", sys::read_stats())?;
    // One fault maps `prefault` pages: touch every prefault-th page, so every touch is a first
    // touch. With huge frames, the first touch of a 2 MiB frame allocates all its 512 pages.
    let k = settings.get("prefault").max(1) as usize;
    let unit = if settings.get("huge") == 1 { 512 } else { 1 };

    t.say("The device: our Rust fault handler does the work.\n");
    let before = io("stats", sys::read_stats())?;
    // 2 MiB aligned: with huge frames a touch can be a PMD-level fault; without, the first
    // touch lands where no page table is yet, so the fault allocates one (step 4 shows it).
    let map = io(
        "mmap 2 MiB aligned",
        dev.map_aligned(pages * k.max(unit), 0, true, 512 * page_size()),
    )?;
    let absent = (0..map.pages()).all(|i| pm.entry(map.addr(i)).is_ok_and(|e| !e.present));
    let after = io("stats", sys::read_stats())?;
    let allocated = delta_of(&after, &before, "frames_allocated")?;
    let rows = io("frames", sys::read_frames())?
        .iter()
        .filter(|r| r.instance == instance)
        .count();
    t.step(
        "device",
        1,
        "mmap returns a virtual address; nothing is behind it yet",
        absent && allocated == 0 && rows == 0,
        format!(
            "va {:#x}, {} pages; pagemap: not present; frames allocated: {allocated}, frames rows of instance {instance}: {rows}; map {}",
            map.addr(0),
            map.pages(),
            picture_every(pm, &map, None, unit)?
        ),
    );

    let mut walk = Walk {
        t,
        pm,
        samplers,
        dev: &dev,
        map: &map,
        instance,
        k,
        unit,
    };
    let (mut minflt, mut handled) = (0, 0);
    for n in 0..pages {
        let (faults, calls) = walk.touch(n)?;
        minflt += faults;
        handled += calls;
    }
    Ok(Walked {
        dev,
        map,
        minflt,
        handled,
    })
}

impl Walk<'_> {
    /// Steps 2 to 8 for the `n`-th touch; returns the minor faults it took and our handler's
    /// calls.
    fn touch(&mut self, n: usize) -> Res<(u64, i64)> {
        let (instance, k, unit, stride) = (self.instance, self.k, self.unit, self.stride());
        let Walk {
            t,
            pm,
            samplers,
            dev,
            map,
            ..
        } = self;
        let i = n * stride;
        let va = map.addr(i);
        let value = 0x5eed_0000 + i as u64;
        let row_before = frame_row(instance, i)?;
        let s0 = io("stats", sys::read_stats())?;
        let entry0 = io("pagemap", pm.entry(va))?;
        // The pages this fault maps: k from the touched one on (within the mapping); with
        // huge frames the PMD entry of the touched page is the whole story.
        let walked = if unit > 1 { 1 } else { k.min(map.pages() - i) };
        let touch = samplers.touch(dev.fd(), va, walked, || map.write(i, 0, value))?;
        let (minflt0, minflt1) = touch.minflt;
        let s1 = io("stats", sys::read_stats())?;
        let row = frame_row(instance, i)?;
        let entry = io("pagemap", pm.entry(va))?;
        let faults = delta_of(&s1, &s0, "faults")?;
        let huge_faults = delta_of(&s1, &s0, "huge_faults")?;
        let write_faults = delta_of(&s1, &s0, "write_faults")?;
        let allocated = delta_of(&s1, &s0, "frames_allocated")?;
        // Every touch is a first touch: its fault allocates the frame and, with prefault, the
        // frames after it up to the end of the mapping.
        let want_allocated = unit.max(walked) as i64;
        t.say(&format!(
            "\n  touching page {i} (va {va:#x}): *va = {value:#x}"
        ));
        t.step(
            "device",
            2,
            "the program writes to the address",
            row_before.is_none(),
            format!(
                "store to {va:#x}; before it, frames had no row for instance {instance} pgoff {i}"
            ),
        );
        // A PMD-level fault (huge) is counted as such, not as a read or write fault. The core
        // has been seen calling huge_fault twice for one minor fault (the first call redone,
        // as after VM_FAULT_RETRY; reported, not understood yet): with huge, at least one
        // call, and no 4 KiB fault.
        let one_call = if unit > 1 {
            huge_faults >= 1 && faults == 0
        } else {
            faults + huge_faults == 1
        };
        let (kind, moved) = if unit > 1 {
            ("PMD-level fault (huge_faults", huge_faults)
        } else {
            ("write fault (write_faults", write_faults)
        };
        t.step(
            "device",
            3,
            "the MMU tries to translate the address",
            one_call && moved >= 1 && delta_of(&s1, &s0, "read_faults")? == 0,
            format!(
                "page {i} of the range, page offset {i} in the file; the failed translation reached the module as a {kind} +{moved})"
            ),
        );
        touch.show_before(t, "device", &entry0);
        touch.show_cpu_fault(
            t,
            "device",
            "the CPU raises a page fault",
            minflt1 - minflt0 == 1,
            format!("this process's minor faults, right around the store: {minflt0} -> {minflt1}"),
        );
        t.step(
            "device",
            6,
            "the kernel calls our handler (vm_operations.fault)",
            one_call,
            if unit > 1 {
                format!("module huge_faults counter +{huge_faults} (vm_operations.huge_fault), faults +{faults}")
            } else {
                format!("module faults counter +{faults}")
            },
        );
        let rest_zero = (8..page_size()).step_by(8).all(|o| map.read(i, o) == 0);
        t.step(
            "device",
            7,
            "the handler allocates a zeroed frame and fills the page-table entry",
            allocated == want_allocated && row.is_some() && rest_zero,
            match row {
                Some(r) => format!(
                    "frames allocated +{allocated}: instance {instance} pgoff {i} -> pfn {:#x}; the rest of the page reads zero: {rest_zero}",
                    r.pfn
                ),
                None => format!("frames allocated +{allocated}, but no frames row for pgoff {i}"),
            },
        );
        touch.show_entry(t, "device", "the entry our handler wrote", pm, unit > 1)?;
        let readback = map.read(i, 0);
        t.step(
            "device",
            8,
            "the store runs again and succeeds",
            entry.present && row.is_some_and(|r| Some(r.pfn) == entry.pfn) && readback == value,
            format!(
                "pagemap: {}, pfn {} (frames says {}); reads back {readback:#x}; map {}",
                if entry.present {
                    "present"
                } else {
                    "not present"
                },
                pfn_text(entry.pfn),
                pfn_text(row.map(|r| r.pfn)),
                picture_every(pm, map, Some(i), unit)?
            ),
        );
        touch.show_used(t, "device");
        // Our handler handled this fault (however many calls it took).
        Ok((minflt1 - minflt0, i64::from(one_call)))
    }
}
