//! `pfdemo walk`: the MMU's view of an address of this process, level by level, from the
//! module's `RPD_IOC_WALK` ioctl; with `--touch`, a fresh mapping of the device walked before
//! and after its first touch. The leaf's frame is cross-checked with `/proc/self/pagemap`.

use pfdemo::sys::{Device, Pagemap};
use pfdemo::walk::{walk, Walk};
use pfdemo::{io, Res};

#[derive(clap::Args)]
pub struct Args {
    /// The address to walk (hex with 0x, or decimal); rounded down to its page.
    #[arg(value_parser = parse_address, required_unless_present = "touch")]
    pub address: Option<usize>,
    /// Map one page of the device, walk it, write to it, and walk it again.
    #[arg(long, conflicts_with = "address")]
    pub touch: bool,
}

fn parse_address(s: &str) -> Result<usize, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => usize::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("not an address: {s}: {e}"))
}

/// Prints `walk` and checks its leaf against pagemap: the same frame, or neither has one.
fn show(pm: &mut Pagemap, walk: &Walk) -> Res {
    println!("{walk}");
    let entry = io("pagemap", pm.entry(walk.0.address as usize))?;
    let pagemap = if entry.present { entry.pfn } else { None };
    if walk.pfns_hidden() {
        return Ok(());
    }
    if walk.frame_pfn() != pagemap {
        return Err(format!(
            "the walk's frame {:?} is not pagemap's {:?} for {:#x}",
            walk.frame_pfn(),
            pagemap,
            walk.0.address
        ));
    }
    match pagemap {
        Some(pfn) => println!("  pagemap: frame {pfn:#x}, agrees"),
        None => println!("  pagemap: no frame, agrees"),
    }
    Ok(())
}

pub fn run(args: &Args) -> Res {
    let dev = io("open device", Device::open())?;
    let mut pm = io("open pagemap", Pagemap::open())?;
    if let Some(address) = args.address {
        let walk = io("walk", walk(dev.fd(), address))?;
        return show(&mut pm, &walk);
    }
    let map = io("mmap", dev.map(1, 0, true))?;
    println!("before the first touch:");
    show(&mut pm, &io("walk", walk(dev.fd(), map.addr(0)))?)?;
    map.write(0, 0, 1);
    println!("after writing to it:");
    show(&mut pm, &io("walk", walk(dev.fd(), map.addr(0)))?)
}
