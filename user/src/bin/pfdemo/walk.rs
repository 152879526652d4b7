//! `pfdemo walk`: the MMU's view of an address of this process, level by level, from the
//! module's `RPD_IOC_WALK` ioctl; with `--touch`, a fresh mapping of the device walked before
//! and after its first touch. The leaf's frame is cross-checked with `/proc/self/pagemap`: a
//! disagreement fails the command. `--json` prints the same as one JSON object (what
//! `scripts/walk_svg.py` draws).

use pfdemo::sys::{Device, Pagemap};
use pfdemo::walk::{walk, Walk};
use pfdemo::{io, Res};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// The address to walk (hex with 0x, or decimal); rounded down to its page.
    #[arg(value_parser = parse_address, required_unless_present = "touch")]
    pub address: Option<usize>,
    /// Map one page of the device, walk it, write to it, and walk it again.
    #[arg(long, conflicts_with = "address")]
    pub touch: bool,
    /// Print JSON: `{"walks": [{"label", "walk", "pagemap_pfn"}, ...]}`.
    #[arg(long)]
    pub json: bool,
}

fn parse_address(s: &str) -> Result<usize, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => usize::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("not an address: {s}: {e}"))
}

/// One walk, with what pagemap says about the same page.
#[derive(Serialize)]
struct Checked {
    label: &'static str,
    walk: Walk,
    /// Pagemap's frame for the page (None: not present, or hidden).
    pagemap_pfn: Option<u64>,
}

/// Walks `address` and checks the leaf against pagemap: the same frame, or neither has one
/// (unless frame numbers are hidden from us, which pagemap does too).
fn checked(label: &'static str, fd: i32, pm: &mut Pagemap, address: usize) -> Res<Checked> {
    let walk = io("walk", walk(fd, address))?;
    let entry = io("pagemap", pm.entry(walk.0.address as usize))?;
    let pagemap_pfn = if entry.present { entry.pfn } else { None };
    walk.sane()?;
    if !walk.pfns_hidden() && walk.frame_pfn() != pagemap_pfn {
        return Err(format!(
            "the walk's frame {:?} is not pagemap's {:?} for {:#x}",
            walk.frame_pfn(),
            pagemap_pfn,
            walk.0.address
        ));
    }
    Ok(Checked {
        label,
        walk,
        pagemap_pfn,
    })
}

fn print(c: &Checked) {
    println!("{}:\n{}", c.label, c.walk);
    if c.walk.pfns_hidden() {
        return;
    }
    match c.pagemap_pfn {
        Some(pfn) => println!("  pagemap: frame {pfn:#x}, agrees"),
        None => println!("  pagemap: no frame, agrees"),
    }
}

pub fn run(args: &Args) -> Res {
    let dev = io("open device", Device::open())?;
    let mut pm = io("open pagemap", Pagemap::open())?;
    let mut walks = Vec::new();
    let _map = match args.address {
        Some(address) => {
            walks.push(checked("the address", dev.fd(), &mut pm, address)?);
            None
        }
        None => {
            let map = io("mmap", dev.map(1, 0, true))?;
            walks.push(checked(
                "before the first touch",
                dev.fd(),
                &mut pm,
                map.addr(0),
            )?);
            map.write(0, 0, 1);
            walks.push(checked(
                "after writing to it",
                dev.fd(),
                &mut pm,
                map.addr(0),
            )?);
            Some(map)
        }
    };
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            walks: &'a [Checked],
        }
        let text =
            serde_json::to_string_pretty(&Out { walks: &walks }).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        walks.iter().for_each(print);
    }
    Ok(())
}
