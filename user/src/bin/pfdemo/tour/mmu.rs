//! The MMU's view in the tour: the page tables of the touched address, walked by the module's
//! `RPD_IOC_WALK` right before the store and right after it, and what the steps show of them
//! on either side (our handler's, the kernel's): the address split into its indices and the
//! tables the MMU reads (step 3), where the walk stops and which page-table pages the fault
//! must allocate (step 4), the entry the handler wrote (step 7), and the bits set once the
//! store went through (step 8). The CPU's own record of the store's fault comes from
//! tracefs (`exceptions:page_fault_user`, traced for this process only, in an instance of its
//! own): step 5 shows its hardware error code.

use super::record::{CpuFault, Tour};
use pfdemo::parse::PagemapEntry;
use pfdemo::sys::{page_size, Pagemap, StatSampler};
use pfdemo::tracefs::{self, Kind, Session};
use pfdemo::walk::{bits, walk, End, Walk};
use pfdemo::{io, Res};
use std::collections::BTreeSet;

/// The `/proc/self` files sampled right around a store.
pub struct Samplers {
    stat: StatSampler,
    status: StatSampler,
    /// This process's CPU fault records, or why tracefs cannot give them.
    cpu: Result<Session, String>,
}

/// One store, seen around it: the walks of the pages its fault may map (the touched page
/// first, then its neighbours up to the module's `prefault`), and the process's minor faults
/// and page-table kB (`VmPTE`) right before and right after.
pub struct Touch {
    pub before: Vec<Walk>,
    pub after: Vec<Walk>,
    pub minflt: (u64, u64),
    pub vm_pte_kb: (u64, u64),
    /// The CPU's records of faults at the touched page during the store (tracefs), or why
    /// there are none to show.
    pub cpu_faults: Result<Vec<CpuFault>, String>,
}

impl Samplers {
    pub fn open() -> Res<Self> {
        Ok(Self {
            stat: io("open /proc/self/stat", StatSampler::open())?,
            status: io("open /proc/self/status", StatSampler::status())?,
            cpu: Session::new(&tracefs::Options {
                pids: vec![std::process::id()],
                follow_forks: false,
                buffer_kb: 1024,
            })
            .and_then(|mut s| s.start().map(|()| s)),
        })
    }

    /// The CPU's records of faults on the page of `va` since the buffer was cleared.
    fn cpu_faults(&self, va: usize) -> Result<Vec<CpuFault>, String> {
        let session = self.cpu.as_ref().map_err(String::clone)?;
        let page = (va & !(page_size() - 1)) as u64;
        Ok(session
            .read()?
            .events
            .into_iter()
            .filter_map(|e| match e.kind {
                Kind::PageFaultUser {
                    address,
                    ip,
                    error_code,
                } if address & !(page_size() as u64 - 1) == page => Some(CpuFault {
                    address,
                    ip,
                    error_code: error_code.0,
                    error: error_code.decoded(),
                }),
                _ => None,
            })
            .collect())
    }

    /// Walks the `pages` pages from `va`, runs `store`, walks them again. The counters are
    /// sampled into buffers that are already written, right around the store, so nothing but
    /// the store's fault moves them; the walks allocate nothing either.
    pub fn touch(&self, fd: i32, va: usize, pages: usize, store: impl FnOnce()) -> Res<Touch> {
        let walk_all = || -> Res<Vec<Walk>> {
            (0..pages)
                .map(|p| io("walk", walk(fd, va + p * page_size())))
                .collect()
        };
        let before = walk_all()?;
        if let Ok(session) = &self.cpu {
            session.clear()?;
        }
        let (mut s0, mut s1) = ([0u8; 1024], [0u8; 1024]);
        let (mut p0, mut p1) = ([0u8; 4096], [0u8; 4096]);
        let n0 = io("stat", self.stat.sample(&mut s0))?;
        let m0 = io("status", self.status.sample(&mut p0))?;
        store();
        let n1 = io("stat", self.stat.sample(&mut s1))?;
        let m1 = io("status", self.status.sample(&mut p1))?;
        let after = walk_all()?;
        let minflt = |b: &[u8]| io("stat", StatSampler::faults(b)).map(|(minor, _)| minor);
        let vm_pte = |b: &[u8]| io("status", StatSampler::vm_pte_kb(b));
        Ok(Touch {
            before,
            after,
            minflt: (minflt(&s0[..n0])?, minflt(&s1[..n1])?),
            vm_pte_kb: (vm_pte(&p0[..m0])?, vm_pte(&p1[..m1])?),
            cpu_faults: self.cpu_faults(va),
        })
    }
}

/// `PTE[359] = 0x80000000038070e7 (present writable ...)`: the last entry a walk read.
fn last_entry(w: &Walk) -> String {
    match w.last() {
        Some(l) => format!(
            "{}[{}] = {:#x} ({})",
            l.name(),
            l.index,
            l.entry,
            match pfdemo::walk::bit_names(l.entry, l.level).join(" ") {
                b if b.is_empty() => "empty".to_string(),
                b => b,
            }
        ),
        None => "no entry read".into(),
    }
}

impl Touch {
    /// Step 5 on either side: the process's minor faults right around the store moved by one
    /// (`counted`, said in `evidence`), and the CPU's record of it: one fault at the page, a
    /// user-mode write to a page with no translation (`not-present|write|user`). Without
    /// tracefs, the counters alone, and a line saying why.
    pub fn show_cpu_fault(
        &self,
        t: &mut Tour,
        side: &'static str,
        title: &'static str,
        counted: bool,
        evidence: String,
    ) {
        let (ok, cpu) = match &self.cpu_faults {
            Ok(faults) => (
                matches!(&faults[..], [f] if f.error == "not-present|write|user"),
                match &faults[..] {
                    [f] => format!(
                        "the CPU's record (tracefs exceptions:page_fault_user): address {:#x}, ip {:#x}, error code {:#x} = {}",
                        f.address, f.ip, f.error_code, f.error
                    ),
                    more => format!(
                        "tracefs: {} records of the CPU at this page, not one: {:?}",
                        more.len(),
                        more
                    ),
                },
            ),
            Err(why) => (true, format!("the CPU's error code is not shown: {why}")),
        };
        t.step(side, 5, title, counted && ok, format!("{evidence}; {cpu}"));
        t.attach_cpu_fault(&self.cpu_faults);
    }

    fn w0(&self) -> &Walk {
        &self.before[0]
    }

    fn w1(&self) -> &Walk {
        &self.after[0]
    }

    /// The page-table pages the store's fault allocated: tables the walks after it read that
    /// none of the walks before it did.
    fn new_tables(&self) -> BTreeSet<u64> {
        let tables = |walks: &[Walk]| -> BTreeSet<u64> {
            walks
                .iter()
                .flat_map(|w| w.levels().iter().map(|l| l.table_pfn))
                .collect()
        };
        let before = tables(&self.before);
        tables(&self.after)
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect()
    }

    /// Steps 3 and 4 of either side, before the store: the address's indices and the tables
    /// read, pagemap's empty entry (`entry`), and where the walk stops.
    pub fn show_before(&self, t: &mut Tour, side: &'static str, entry: &PagemapEntry) {
        self.show_indices(t, side);
        t.no_entry_before(side, entry);
        self.show_stop(t, side);
    }

    /// Step 3: the address split into its indices, and the tables the MMU reads with them.
    pub fn show_indices(&self, t: &mut Tour, side: &'static str) {
        let w = self.w0();
        let read: Vec<String> = w
            .levels()
            .iter()
            .map(|l| format!("{}[{}] in table {:#x}", l.name(), l.index, l.table_pfn))
            .collect();
        let sane = w.sane();
        t.walk_step(
            (side, 3),
            "the MMU reads one table per level, indexed by the address's bits",
            &[("before", *w)],
            sane.is_ok() && w.levels().first().is_some_and(|l| l.level == 0),
            format!(
                "{:#x} = {}; it reads {}{}",
                w.0.address,
                w.split_text(),
                read.join(", "),
                sane.err()
                    .map(|e| format!(" (not sane: {e})"))
                    .unwrap_or_default()
            ),
        );
    }

    /// Step 4: where the walk stops, and the page-table pages the fault had to allocate
    /// (`VmPTE` grows by 4 kB for each).
    pub fn show_stop(&self, t: &mut Tour, side: &'static str) {
        let w = self.w0();
        let stop = w.last().map_or("?", |l| l.name());
        let new = self.new_tables().len() as u64;
        let (kb0, kb1) = self.vm_pte_kb;
        let grown = kb1 == kb0 + 4 * new;
        let how = match (stop, new) {
            ("PTE", _) => "the PTE table is there, its entry is empty".to_string(),
            (_, 0) => format!(
                "nothing below the {stop}: the fault maps a leaf right here, no table needed"
            ),
            _ => format!("no table below the {stop} yet: the fault allocates one too"),
        };
        t.walk_step(
            (side, 4),
            "the walk stops at an empty entry: no translation",
            &[("before", *w)],
            w.end() == End::Empty && grown,
            format!(
                "{}: {how}; page-table pages the fault allocated: {new} (VmPTE {kb0} -> {kb1} kB)",
                last_entry(w)
            ),
        );
    }

    /// Step 7: the entry the handler (`who`) wrote: the frame pagemap reports, present,
    /// writable, user, no-execute; a PMD leaf with the page-size bit when `huge`. With
    /// neighbours (the module's `prefault`), the same fault's entries for them too.
    pub fn show_entry(
        &self,
        t: &mut Tour,
        side: &'static str,
        who: &'static str,
        pm: &mut Pagemap,
        huge: bool,
    ) -> Res {
        let w = self.w1();
        let pagemap = pagemap_frame(pm, w)?;
        let mut want = bits::PRESENT | bits::WRITABLE | bits::USER | bits::NO_EXECUTE;
        if huge {
            want |= bits::HUGE;
        }
        let end = if huge { End::HugePmd } else { End::Leaf };
        let size = if huge {
            "a 2 MiB leaf (the page-size bit), "
        } else {
            ""
        };
        t.walk_step(
            (side, 7),
            who,
            &[("after", *w)],
            w.end() == end && w.leaf_has(want) && pagemap.is_some() && w.frame_pfn() == pagemap,
            format!(
                "{}: {size}frame {} (pagemap says {})",
                last_entry(w),
                super::pfn_text(w.frame_pfn()),
                super::pfn_text(pagemap)
            ),
        );
        if self.after.len() < 2 {
            return Ok(());
        }
        let mut agree = true;
        let mut frames = Vec::new();
        for (b, a) in self.before[1..].iter().zip(&self.after[1..]) {
            let pagemap = pagemap_frame(pm, a)?;
            agree &= b.end() == End::Empty && a.end() == End::Leaf && a.frame_pfn() == pagemap;
            frames.push(super::pfn_text(a.frame_pfn()));
        }
        t.walk_step((side, 7), "the same fault wrote the neighbours' entries (prefault)", &[], agree, format!(
                "the next {} pages: empty PTEs before the store, leaves after it, frames {} (pagemap's)",
                frames.len(),
                frames.join(" ")
            ));
        Ok(())
    }

    /// Step 8: the store went through the entry: accessed and dirty are set. Neighbours that
    /// one fault mapped but nothing wrote stay clean: dirty is the store's.
    pub fn show_used(&self, t: &mut Tour, side: &'static str) {
        let w = self.w1();
        let used = w.leaf_has(bits::ACCESSED | bits::DIRTY);
        let clean = self.after[1..]
            .iter()
            .all(|a| a.last().is_some_and(|l| l.entry & bits::DIRTY == 0));
        let neighbours = if self.after.len() > 1 {
            format!(
                "; the {} neighbours mapped by the same fault, not written: dirty clear: {clean}",
                self.after.len() - 1
            )
        } else {
            String::new()
        };
        t.walk_step(
            (side, 8),
            "after the store: the entry is accessed and dirty",
            &[("after", *w)],
            used && clean,
            format!("{}{neighbours}", last_entry(w)),
        );
    }
}

/// Pagemap's frame for the page a walk is of (None: not present).
fn pagemap_frame(pm: &mut Pagemap, w: &Walk) -> Res<Option<u64>> {
    let e = io("pagemap", pm.entry(w.0.address as usize))?;
    Ok(if e.present { e.pfn } else { None })
}
