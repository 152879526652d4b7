//! The tour's walk on anonymous memory, what malloc gets for large blocks: the same touches,
//! handled by the kernel's own fault handler (steps 1, 4, 5 and 8 there), with the same
//! page-table walk around each store (steps 3, 4, 7, 8; `tour/mmu.rs`). The walk ioctl works
//! for any address of the caller: the device is opened only to have a file to ask.

use super::mmu::Samplers;
use super::record::Tour;
use super::{delta_of, pfn_text, Walked};
use crate::picture::picture;
use pfdemo::sys::{self, Device, Mapping, Pagemap};
use pfdemo::{io, Res};

/// The anonymous side's steps on `pages` touches.
pub fn walk(t: &mut Tour, pm: &mut Pagemap, samplers: &Samplers, pages: usize) -> Res<Walked> {
    t.say("\nThe same walk on anonymous memory (what malloc gets): the kernel's own handler.\n");
    let dev = io("open device (for its walk ioctl)", Device::open())?;
    let anon = io(
        "mmap anonymous",
        Mapping::new(
            None,
            pages,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        ),
    )?;
    // One 4 KiB page per fault, as on the device (no transparent huge pages).
    let _ = anon.madvise(libc::MADV_NOHUGEPAGE);
    let absent = (0..pages).all(|i| pm.entry(anon.addr(i)).is_ok_and(|e| !e.present));
    t.step(
        "anon",
        1,
        "mmap(MAP_ANONYMOUS), as malloc does for large blocks",
        absent,
        format!(
            "va {:#x}; pagemap: not present; map {}",
            anon.addr(0),
            picture(pm, &anon, None)?
        ),
    );
    let (mut minflt, mut handled) = (0, 0);
    for i in 0..pages {
        let value = 0xa0_0000 + i as u64;
        let s0 = io("stats", sys::read_stats())?;
        let entry0 = io("pagemap", pm.entry(anon.addr(i)))?;
        let touch = samplers.touch(dev.fd(), anon.addr(i), 1, || anon.write(i, 0, value))?;
        let (minflt0, minflt1) = touch.minflt;
        let s1 = io("stats", sys::read_stats())?;
        let entry = io("pagemap", pm.entry(anon.addr(i)))?;
        let ours = delta_of(&s1, &s0, "faults")? + delta_of(&s1, &s0, "huge_faults")?;
        minflt += minflt1 - minflt0;
        handled += ours;
        t.say(&format!(
            "\n  touching page {i} (va {:#x}): *va = {value:#x}",
            anon.addr(i)
        ));
        touch.show_before(t, "anon", &entry0);
        touch.show_cpu_fault(
            t,
            "anon",
            "the CPU faults; the kernel's anonymous-memory handler runs",
            minflt1 - minflt0 == 1 && ours == 0,
            format!("minor faults {minflt0} -> {minflt1}; our module's counter +{ours}"),
        );
        touch.show_entry(t, "anon", "the entry the kernel's handler wrote", pm, false)?;
        t.step(
            "anon",
            8,
            "a fresh frame is mapped and the store succeeds",
            entry.present && entry.pfn.is_some() && anon.read(i, 0) == value,
            format!(
                "pagemap: present, pfn {}; map {}",
                pfn_text(entry.pfn),
                picture(pm, &anon, Some(i))?
            ),
        );
        touch.show_used(t, "anon");
    }
    Ok(Walked {
        dev,
        map: anon,
        minflt,
        handled,
    })
}
