//! The MMU's view from user space: the page-table walk that the module's `RPD_IOC_WALK` ioctl
//! answers for one address of the calling process, and its decoding.
//!
//! [`WalkReply`] is the twin of the module's `walk.rs` reply, field for field (the README
//! documents it). [`walk`] asks for one address; [`Walk`] reads the answer: the levels the MMU
//! goes through, the entry at each, where the walk ended, and the leaf's frame.

use serde::Serialize;
use std::fmt;
use std::io;
use std::os::fd::RawFd;

/// The reply version this crate speaks.
pub const WALK_VERSION: u32 = 1;

/// `_IOWR(0xE7, 1, struct WalkReply)`: direction read|write (3) in bits 30-31, the size in bits
/// 16-29, the type in bits 8-15, the number in bits 0-7.
pub const RPD_IOC_WALK: u32 =
    (3 << 30) | ((std::mem::size_of::<WalkReply>() as u32) << 16) | (0xE7 << 8) | 1;

/// `flags`: frame numbers are hidden (zero): the opener lacks `CAP_SYS_ADMIN`.
pub const WALK_PFNS_HIDDEN: u32 = 1 << 0;
/// `flags`: a VMA holds the address.
pub const WALK_IN_VMA: u32 = 1 << 1;
/// `flags`: that VMA is a mapping of the device.
pub const WALK_OUR_VMA: u32 = 1 << 2;
/// `flags`: the machine uses 5-level paging.
pub const WALK_FIVE_LEVEL: u32 = 1 << 3;

/// One level of a walk, as the module writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkLevel {
    /// The entry as read (its frame-number bits zero when hidden).
    pub entry: u64,
    /// The PFN of the table the entry was read from.
    pub table_pfn: u64,
    /// The PFN the entry points to: the next table or the frame (zero if not present or
    /// hidden).
    pub pfn: u64,
    /// 0 PGD, 1 P4D, 2 PUD, 3 PMD, 4 PTE.
    pub level: u16,
    /// The entry's index in its table: 9 bits of the address.
    pub index: u16,
    /// The lowest address bit of the index.
    pub shift: u32,
}

/// The reply of `RPD_IOC_WALK`: in `size`, `version`, `address`; out the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkReply {
    pub size: u32,
    pub version: u32,
    pub address: u64,
    pub paging_levels: u32,
    pub count: u32,
    pub end: u32,
    pub flags: u32,
    pub vma_start: u64,
    pub vma_end: u64,
    pub levels: [WalkLevel; 5],
}

impl WalkReply {
    /// A request for `address`.
    pub fn request(address: usize) -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            version: WALK_VERSION,
            address: address as u64,
            ..Self::default()
        }
    }
}

/// Sends `reply` with `cmd` to the device open at `fd`; the module fills it in. For tests of
/// bad requests: [`walk`] is the normal way.
pub fn walk_raw(fd: RawFd, cmd: u32, reply: &mut WalkReply) -> io::Result<()> {
    // SAFETY: `reply` is a valid, writable `WalkReply` for the whole call, of the size the
    // command encodes (for `RPD_IOC_WALK`); the kernel reads and writes only that much.
    let rc = unsafe { libc::ioctl(fd, cmd as _, reply as *mut WalkReply) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Walks the calling process's page tables for the page of `address`.
pub fn walk(fd: RawFd, address: usize) -> io::Result<Walk> {
    let page = address & !4095;
    let mut reply = WalkReply::request(page);
    walk_raw(fd, RPD_IOC_WALK, &mut reply)?;
    Ok(Walk(reply))
}

/// The names of the page-table levels, by level number.
pub const LEVEL_NAMES: [&str; 5] = ["PGD", "P4D", "PUD", "PMD", "PTE"];

/// Why a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// An empty entry: nothing below. The MMU raises a page fault.
    Empty,
    /// Not present but not empty: a swap or migration entry. The MMU raises a page fault.
    NotPresent,
    /// A present PTE: a 4 KiB page.
    Leaf,
    /// A present PMD with the page-size bit: a 2 MiB page.
    HugePmd,
    /// A present PUD with the page-size bit: a 1 GiB page.
    HugePud,
    /// A value this crate does not know.
    Unknown(u32),
}

impl End {
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Empty,
            2 => Self::NotPresent,
            3 => Self::Leaf,
            4 => Self::HugePmd,
            5 => Self::HugePud,
            n => Self::Unknown(n),
        }
    }

    /// Whether the MMU finds a translation (a leaf) here.
    pub fn is_leaf(self) -> bool {
        matches!(self, Self::Leaf | Self::HugePmd | Self::HugePud)
    }
}

/// The x86-64 entry bits the tools name, with the level they mean that at: `HUGE` is the
/// page-size bit of a PMD or PUD; at the PTE level bit 7 is the PAT bit instead.
pub mod bits {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const WRITE_THROUGH: u64 = 1 << 3;
    pub const CACHE_DISABLE: u64 = 1 << 4;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    pub const HUGE: u64 = 1 << 7;
    pub const GLOBAL: u64 = 1 << 8;
    /// The kernel's software bit `_PAGE_SPECIAL`: a mapping without a page reference.
    pub const SPECIAL: u64 = 1 << 9;
    /// The kernel's software bit `_PAGE_SOFT_DIRTY`.
    pub const SOFT_DIRTY: u64 = 1 << 11;
    pub const NO_EXECUTE: u64 = 1 << 63;
}

/// The named bits set in `entry` at level `level`, in bit order.
pub fn bit_names(entry: u64, level: u16) -> Vec<&'static str> {
    let table: [(u64, &str); 12] = [
        (bits::PRESENT, "present"),
        (bits::WRITABLE, "writable"),
        (bits::USER, "user"),
        (bits::WRITE_THROUGH, "write-through"),
        (bits::CACHE_DISABLE, "cache-disable"),
        (bits::ACCESSED, "accessed"),
        (bits::DIRTY, "dirty"),
        (bits::HUGE, if level == 4 { "pat" } else { "huge" }),
        (bits::GLOBAL, "global"),
        (bits::SPECIAL, "special"),
        (bits::SOFT_DIRTY, "soft-dirty"),
        (bits::NO_EXECUTE, "no-execute"),
    ];
    table
        .iter()
        .filter(|(bit, _)| entry & bit != 0)
        .map(|&(_, name)| name)
        .collect()
}

/// A walk's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk(pub WalkReply);

impl Walk {
    /// The levels read, top first.
    pub fn levels(&self) -> &[WalkLevel] {
        &self.0.levels[..(self.0.count as usize).min(5)]
    }

    pub fn end(&self) -> End {
        End::from_raw(self.0.end)
    }

    /// The last entry read: the leaf, or the entry where the walk stopped.
    pub fn last(&self) -> Option<&WalkLevel> {
        self.levels().last()
    }

    /// The frame the address translates to, when the walk ends at a leaf: for a huge leaf,
    /// the PFN of the 4 KiB page of the address inside it (what pagemap reports).
    pub fn frame_pfn(&self) -> Option<u64> {
        if !self.end().is_leaf() {
            return None;
        }
        let leaf = self.last()?;
        let inside = (self.0.address >> 12) & ((1u64 << (leaf.shift - 12)) - 1);
        Some(leaf.pfn + inside)
    }

    /// The level where the walk stopped.
    pub fn stop_level(&self) -> Option<u16> {
        self.last().map(|l| l.level)
    }

    pub fn pfns_hidden(&self) -> bool {
        self.0.flags & WALK_PFNS_HIDDEN != 0
    }

    pub fn in_our_vma(&self) -> bool {
        self.0.flags & WALK_OUR_VMA != 0
    }

    pub fn in_vma(&self) -> bool {
        self.0.flags & WALK_IN_VMA != 0
    }

    /// Whether the leaf entry has all of `bits`.
    pub fn leaf_has(&self, bits: u64) -> bool {
        self.end().is_leaf() && self.last().is_some_and(|l| l.entry & bits == bits)
    }
}

impl fmt::Display for Walk {
    /// A small table: one row per level read, then how the walk ended.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "walk of {:#x} ({}-level paging{}):",
            self.0.address,
            self.0.paging_levels,
            if self.pfns_hidden() {
                ", PFNs hidden: not CAP_SYS_ADMIN"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  {:<5} {:>5} {:<10} {:>18}  {:>10}  bits",
            "level", "index", "addr bits", "entry", "points to"
        )?;
        for l in self.levels() {
            let name = l.name();
            let bits = format!("{}..{}", l.shift, l.shift + 9);
            let to = if l.entry & bits::PRESENT != 0 {
                format!("{:#x}", l.pfn)
            } else {
                "-".to_string()
            };
            writeln!(
                f,
                "  {name:<5} {:>5} {bits:<10} {:#018x}  {to:>10}  {}",
                l.index,
                l.entry,
                bit_names(l.entry, l.level).join(" ")
            )?;
        }
        let stop = self
            .stop_level()
            .and_then(|l| LEVEL_NAMES.get(l as usize))
            .unwrap_or(&"?");
        let frame = self.frame_pfn().unwrap_or(0);
        let how = match self.end() {
            End::Empty => format!("empty {stop} entry: no translation, the MMU faults"),
            End::NotPresent => format!("{stop} entry not present: the MMU faults"),
            End::Leaf => format!("PTE leaf, 4 KiB frame {frame:#x}"),
            End::HugePmd => format!("PMD leaf (page size), 2 MiB frame, page {frame:#x}"),
            End::HugePud => format!("PUD leaf (page size), 1 GiB frame, page {frame:#x}"),
            End::Unknown(n) => format!("unknown reason {n}"),
        };
        write!(f, "  ends: {how}")
    }
}

/// One level of a walk as the tools print it in JSON: the raw numbers, and the level's name
/// and the entry's bits spelled out, so a reader (`scripts/walk_svg.py`) needs no decoding.
#[derive(Serialize)]
struct LevelView {
    name: &'static str,
    level: u16,
    index: u16,
    shift: u32,
    entry: u64,
    table_pfn: u64,
    pfn: u64,
    bits: Vec<&'static str>,
}

/// A walk as the tools print it in JSON (`pfdemo walk --json`, the tour's `--json`).
#[derive(Serialize)]
struct WalkView {
    address: u64,
    paging_levels: u32,
    end: End,
    pfns_hidden: bool,
    in_vma: bool,
    our_vma: bool,
    vma_start: u64,
    vma_end: u64,
    /// The frame of the address's 4 KiB page, when the walk ends at a leaf.
    frame_pfn: Option<u64>,
    levels: Vec<LevelView>,
}

impl Serialize for Walk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WalkView {
            address: self.0.address,
            paging_levels: self.0.paging_levels,
            end: self.end(),
            pfns_hidden: self.pfns_hidden(),
            in_vma: self.in_vma(),
            our_vma: self.in_our_vma(),
            vma_start: self.0.vma_start,
            vma_end: self.0.vma_end,
            frame_pfn: self.frame_pfn(),
            levels: self
                .levels()
                .iter()
                .map(|l| LevelView {
                    name: l.name(),
                    level: l.level,
                    index: l.index,
                    shift: l.shift,
                    entry: l.entry,
                    table_pfn: l.table_pfn,
                    pfn: l.pfn,
                    bits: bit_names(l.entry, l.level),
                })
                .collect(),
        }
        .serialize(s)
    }
}

impl WalkLevel {
    /// The level's name: PGD, P4D, PUD, PMD or PTE.
    pub fn name(&self) -> &'static str {
        LEVEL_NAMES.get(self.level as usize).copied().unwrap_or("?")
    }
}

/// The frame-number bits of an entry (12 to 51).
pub const PFN_BITS: u64 = ((1 << 52) - 1) & !4095;

impl Walk {
    /// Checks that the reply is one the MMU could have walked, whatever raced with it: the
    /// levels top down with the address's own indices, every entry above the last present
    /// and pointing to the table read next, and the last entry consistent with the end. A
    /// failure says what is wrong in one line.
    pub fn sane(&self) -> Result<(), String> {
        let r = &self.0;
        let want = split_address(r.address as usize, r.paging_levels);
        let levels = self.levels();
        if !(r.paging_levels == 4 || r.paging_levels == 5) || levels.is_empty() {
            return Err(format!(
                "{:#x}: {} levels read of {}-level paging",
                r.address, r.count, r.paging_levels
            ));
        }
        if r.count as usize > want.len() {
            return Err(format!(
                "{:#x}: {} levels read, more than the tables have",
                r.address, r.count
            ));
        }
        for (i, (l, &(level, shift, index))) in levels.iter().zip(&want).enumerate() {
            if (l.level, l.shift, l.index as usize) != (level, shift, index) {
                return Err(format!(
                    "{:#x}: read {} index {} (bits {}) as entry {i}, the address says {} index {index} (bits {shift})",
                    r.address, l.name(), l.index, l.shift, LEVEL_NAMES[level as usize]
                ));
            }
            let last = i + 1 == levels.len();
            if !last && l.entry & bits::PRESENT == 0 {
                return Err(format!(
                    "{:#x}: the walk went on below a non-present {}",
                    r.address,
                    l.name()
                ));
            }
            if !self.pfns_hidden() {
                if l.table_pfn == 0 {
                    return Err(format!(
                        "{:#x}: {} read from table PFN 0",
                        r.address,
                        l.name()
                    ));
                }
                if let Some(next) = levels.get(i + 1) {
                    if next.table_pfn != l.pfn {
                        return Err(format!(
                            "{:#x}: {} points to {:#x} but the {} was read from {:#x}",
                            r.address,
                            l.name(),
                            l.pfn,
                            next.name(),
                            next.table_pfn
                        ));
                    }
                }
            } else if l.table_pfn != 0 || l.pfn != 0 || l.entry & PFN_BITS != 0 {
                return Err(format!(
                    "{:#x}: PFNs hidden, yet {} shows one",
                    r.address,
                    l.name()
                ));
            }
        }
        let last = levels[levels.len() - 1];
        let present = last.entry & bits::PRESENT != 0;
        let huge = last.entry & bits::HUGE != 0;
        let consistent = match self.end() {
            // Only bits the MMU may set on its own (accessed, dirty): empty to the kernel.
            End::Empty => last.entry & !(bits::ACCESSED | bits::DIRTY) == 0,
            End::NotPresent => !present && last.entry != 0,
            End::Leaf => present && last.level == 4,
            End::HugePmd => present && huge && last.level == 3,
            End::HugePud => present && huge && last.level == 2,
            End::Unknown(_) => false,
        };
        if !consistent {
            return Err(format!(
                "{:#x}: ends {:?} at {} entry {:#x}",
                r.address,
                self.end(),
                last.name(),
                last.entry
            ));
        }
        Ok(())
    }

    /// `PGD 254 | PUD 72 | PMD 162 | PTE 359 | offset 0x000`: the address's bit fields.
    pub fn split_text(&self) -> String {
        let mut s: Vec<String> = split_address(self.0.address as usize, self.0.paging_levels)
            .iter()
            .map(|&(level, _, index)| format!("{} {index}", LEVEL_NAMES[level as usize]))
            .collect();
        s.push(format!("offset {:#05x}", self.0.address & 4095));
        s.join(" | ")
    }
}

/// The indices an address selects at each level, top first, for `levels` (4 or 5) levels:
/// `(level number, shift, index)`.
pub fn split_address(address: usize, levels: u32) -> Vec<(u16, u32, usize)> {
    let list: &[(u16, u32)] = if levels == 5 {
        &[(0, 48), (1, 39), (2, 30), (3, 21), (4, 12)]
    } else {
        &[(0, 39), (2, 30), (3, 21), (4, 12)]
    };
    list.iter()
        .map(|&(level, shift)| (level, shift, (address >> shift) & 511))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_has_the_modules_layout() {
        assert_eq!(std::mem::size_of::<WalkLevel>(), 32);
        assert_eq!(std::mem::size_of::<WalkReply>(), 208);
        assert_eq!(std::mem::offset_of!(WalkReply, levels), 48);
        assert_eq!(RPD_IOC_WALK, 0xc0d0_e701);
    }

    #[test]
    fn bits_are_named_by_level() {
        let pte = 0x8000_0000_0123_40e7;
        assert_eq!(
            bit_names(pte, 4),
            [
                "present",
                "writable",
                "user",
                "accessed",
                "dirty",
                "pat",
                "no-execute"
            ]
        );
        assert!(bit_names(pte, 3).contains(&"huge"));
    }

    #[test]
    fn a_huge_leaf_gives_the_page_inside_it() {
        let mut reply = WalkReply::request(0x7f00_0020_3000);
        reply.count = 3;
        reply.end = 4;
        reply.levels[2] = WalkLevel {
            entry: 0x4000_00e7,
            pfn: 0x40000,
            level: 3,
            shift: 21,
            ..WalkLevel::default()
        };
        let walk = Walk(reply);
        assert_eq!(walk.end(), End::HugePmd);
        assert_eq!(walk.frame_pfn(), Some(0x40003));
        assert!(walk.to_string().contains("PMD leaf"));
    }

    #[test]
    fn addresses_split_into_nine_bit_indices() {
        let address = (254 << 39) | (72 << 30) | (162 << 21) | (359 << 12) | 0x123;
        assert_eq!(
            split_address(address, 4),
            [(0, 39, 254), (2, 30, 72), (3, 21, 162), (4, 12, 359)]
        );
        assert_eq!(split_address(address, 5)[1], (1, 39, 254));
    }
}
