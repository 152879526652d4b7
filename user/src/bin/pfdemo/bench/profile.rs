//! The kernel's own sampling profile (`/proc/profile`) summed over the benchmark's timed
//! parts, for `make profile`.

use pfdemo::{io, Res};

/// The kernel's own profile (`/proc/profile`, there when the kernel was booted with
/// `profile=N`), summed over the timed part of the measurements only: not over module
/// reloads, mappings being set up or torn down, or the benchmark's own bookkeeping.
pub struct KernelProfile {
    step: u32,
    hits: Vec<u32>,
}

impl KernelProfile {
    const PATH: &'static str = "/proc/profile";

    /// The profile file: the sampling step in bytes, then one hit count per step of the
    /// kernel's text.
    pub fn read() -> Res<(u32, Vec<u32>)> {
        let raw = io("read /proc/profile", std::fs::read(Self::PATH))?;
        let mut words = raw
            .chunks_exact(4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        let step = words
            .next()
            .ok_or("/proc/profile is empty: boot with profile=2")?;
        Ok((step, words.collect()))
    }

    pub fn new() -> Res<Self> {
        let (step, hits) = Self::read()?;
        Ok(Self {
            step,
            hits: vec![0; hits.len()],
        })
    }

    /// Adds what the kernel counted between `before` and now.
    pub fn add_since(&mut self, before: &[u32]) -> Res {
        let (_, now) = Self::read()?;
        for ((sum, now), before) in self.hits.iter_mut().zip(now).zip(before) {
            *sum = sum.wrapping_add(now.wrapping_sub(*before));
        }
        Ok(())
    }

    /// Writes the sums in `/proc/profile`'s own format.
    pub fn write(&self, path: &str) -> Res {
        let mut out = Vec::with_capacity(4 * (self.hits.len() + 1));
        for word in std::iter::once(self.step).chain(self.hits.iter().copied()) {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        io("write profile", std::fs::write(path, out))
    }
}
