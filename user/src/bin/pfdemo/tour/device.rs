//! The tour's walk on the device: `mmap` gives addresses with nothing behind them (step 1),
//! then each touch, steps 2 to 8, from the store to the frame our handler maps.

use super::record::Tour;
use super::{delta_of, minflt_around, pfn_text, Walked};
use crate::picture::picture;
use pfdemo::parse::FrameRow;
use pfdemo::sys::{self, page_size, Device, Mapping, Pagemap, StatSampler};
use pfdemo::{io, Res};

/// The page to touch and what the walk knows.
struct Walk<'a> {
    t: &'a mut Tour,
    pm: &'a mut Pagemap,
    sampler: &'a StatSampler,
    map: &'a Mapping,
    instance: u64,
    /// Pages one fault maps (the module's `prefault`): every `k`-th page is touched.
    k: usize,
    /// Pages in one frame: 512 with `huge`, else 1.
    unit: usize,
}

/// The `frames` row of (instance, pgoff), if the module lists one.
fn frame_row(instance: u64, pgoff: usize) -> Res<Option<FrameRow>> {
    Ok(io("frames", sys::read_frames())?
        .into_iter()
        .find(|r| r.instance == instance && r.pgoff == pgoff as u64))
}

/// Steps 1 to 8 on `pages` touches of the device.
pub fn walk(t: &mut Tour, pm: &mut Pagemap, sampler: &StatSampler, pages: usize) -> Res<Walked> {
    let dev = io("open device", Device::open())?;
    let instance = io("fdinfo", dev.fdinfo())?.instance;
    let settings = io("stats", sys::read_stats())?;
    // One fault maps `prefault` pages: touch every prefault-th page, so every touch is a first
    // touch. With huge frames, the first touch of a 2 MiB frame allocates all its 512 pages.
    let k = settings.get("prefault").max(1) as usize;
    let unit = if settings.get("huge") == 1 { 512 } else { 1 };

    t.say("The device: our Rust fault handler does the work.\n");
    let before = io("stats", sys::read_stats())?;
    let map = io("mmap", dev.map(pages * k, 0, true))?;
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
            picture(pm, &map, None)?
        ),
    );

    let mut walk = Walk {
        t,
        pm,
        sampler,
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
        _dev: Some(dev),
        _map: map,
        minflt,
        handled,
    })
}

impl Walk<'_> {
    /// Steps 2 to 8 for the `n`-th touch; returns the minor faults it took and our handler's
    /// calls.
    fn touch(&mut self, n: usize) -> Res<(u64, i64)> {
        let (instance, k, unit) = (self.instance, self.k, self.unit);
        let Walk {
            t,
            pm,
            sampler,
            map,
            ..
        } = self;
        let i = n * k;
        let va = map.addr(i);
        let value = 0x5eed_0000 + i as u64;
        let row_before = frame_row(instance, i)?;
        let s0 = io("stats", sys::read_stats())?;
        let entry0 = io("pagemap", pm.entry(va))?;
        let (minflt0, minflt1) = minflt_around(sampler, || map.write(i, 0, value))?;
        let s1 = io("stats", sys::read_stats())?;
        let row = frame_row(instance, i)?;
        let entry = io("pagemap", pm.entry(va))?;
        let faults = delta_of(&s1, &s0, "faults")?;
        let write_faults = delta_of(&s1, &s0, "write_faults")?;
        let allocated = delta_of(&s1, &s0, "frames_allocated")?;
        // A frame is new when no earlier touch fell in it (2 MiB frames hold several touches);
        // a new one comes with the prefault's frames after it, up to the end of the mapping.
        let new_frame = (0..n).all(|m| m * k / unit != i / unit);
        let want_allocated = if new_frame {
            unit.max(k.min(map.pages() - i)) as i64
        } else {
            0
        };
        t.say(&format!(
            "\n  touching page {i} (va {va:#x}): *va = {value:#x}"
        ));
        // Before the store the page has no frame, unless an earlier touch allocated the
        // 2 MiB frame it lies in (then it has one, but this process has not mapped it yet:
        // step 4 checks pagemap).
        t.step(
            "device",
            2,
            "the program writes to the address",
            row_before.is_none() == new_frame,
            if new_frame {
                format!(
                    "store to {va:#x}; before it, frames had no row for instance {instance} pgoff {i}"
                )
            } else {
                format!(
                    "store to {va:#x}; its 2 MiB frame was allocated by an earlier touch, so frames had a row for pgoff {i} already"
                )
            },
        );
        t.step(
            "device",
            3,
            "the MMU tries to translate the address",
            write_faults == 1 && delta_of(&s1, &s0, "read_faults")? == 0,
            format!(
                "page {i} of the range, page offset {i} in the file; the failed translation reached the module as a write fault (write_faults +{write_faults})"
            ),
        );
        t.no_entry_before("device", &entry0);
        t.step(
            "device",
            5,
            "the CPU raises a page fault",
            minflt1 - minflt0 == 1,
            format!("this process's minor faults, right around the store: {minflt0} -> {minflt1}"),
        );
        t.step(
            "device",
            6,
            "the kernel calls our handler (vm_operations.fault)",
            faults == 1,
            format!("module faults counter +{faults}"),
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
                picture(pm, map, Some(i))?
            ),
        );
        Ok((minflt1 - minflt0, faults))
    }
}
