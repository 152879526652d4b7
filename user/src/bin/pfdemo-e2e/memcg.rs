//! Memory cgroups: frames are charged to the cgroup of the task that faults them in.

use crate::expect::*;
use pfdemo::harness::Memcg;

pub const CASES: &[Case] = &[(
    "frames are charged to the toucher's memory cgroup",
    frames_charged_to_the_touchers_memcg,
)];

/// Frames are charged to the memory cgroup of the task that faults them in, as anonymous
/// memory is (`GFP_KERNEL_ACCOUNT`): a child in a cgroup of its own sees `memory.current`
/// grow by at least the frames it touched.
fn frames_charged_to_the_touchers_memcg() -> Check {
    let group = Memcg::create("rpd-e2e")?;
    let pages = 256;
    let frames = allocs(0..pages)? as u64;
    let status = in_child(|| {
        let current = || -> u64 {
            group
                .read("memory.current")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        if group.join().is_err() {
            return 10;
        }
        let Ok(dev) = Device::open() else { return 11 };
        let Ok(map) = dev.map(pages, 0, true) else {
            return 12;
        };
        let before = current();
        for p in 0..pages {
            map.write(p, 0, 1);
        }
        let grown = current().saturating_sub(before);
        if grown < frames * page_size() as u64 {
            eprintln!("memory.current grew by {grown} bytes for {frames} frames");
            return 13;
        }
        0
    })?;
    group.remove();
    ensure!(
        status == Ok(0),
        "child ended with {status:?} (10: join cgroup, 11/12: open/mmap, 13: not charged)"
    );
    Ok(())
}
