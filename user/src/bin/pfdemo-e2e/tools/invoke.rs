//! Running the `pfdemo` binary as a user would, and reading what it prints: its exit code and
//! output, `pfdemo touch --hold` kept in the background, and `touch`'s rows and totals.

use crate::expect::*;
use std::io::BufRead;
use std::process::{Command, Stdio};

/// Runs `cmd` and returns its exit code (None: killed by a signal), stdout and stderr.
pub fn output(cmd: &str, args: &[&str]) -> Result<(Option<i32>, String, String), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `pfdemo ARGS`, which must exit 0; its stdout.
pub fn pfdemo(args: &[&str]) -> Result<String, String> {
    let (code, out, err) = output("/bin/pfdemo", args)?;
    ensure!(
        code == Some(0),
        "pfdemo {args:?} exited with {code:?}: {err}"
    );
    Ok(out)
}

/// `pfdemo touch ... --hold` in the background, up to its "holding" line; killed on drop.
pub struct Held {
    child: std::process::Child,
    pub lines: Vec<String>,
}

impl Held {
    pub fn start(args: &[&str]) -> Result<Self, String> {
        let mut child = io(
            "spawn pfdemo touch --hold",
            Command::new("/bin/pfdemo")
                .arg("touch")
                .args(args)
                .arg("--hold")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn(),
        )?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut held = Held {
            child,
            lines: Vec::new(),
        };
        for line in std::io::BufReader::new(stdout).lines() {
            let line = io("read pfdemo touch", line)?;
            let done = line.starts_with("holding the mapping");
            held.lines.push(line);
            if done {
                return Ok(held);
            }
        }
        Err(format!(
            "pfdemo touch {args:?} ended before holding: {:?}",
            held.lines
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `pfdemo touch` printed: its instance, its per-page rows (page, pagemap PFN, frames PFN,
/// faults column), the map lines and the module totals (faults, frames allocated).
pub struct Touched {
    pub instance: u64,
    pub rows: Vec<(usize, Option<u64>, Option<u64>, String)>,
    pub pictures: Vec<String>,
    pub totals: (i64, i64),
}

pub fn parse_touch(lines: &[String]) -> Result<Touched, String> {
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let instance = lines
        .iter()
        .find_map(|l| l.strip_prefix("instance ")?.split(',').next()?.parse().ok())
        .ok_or(format!("no instance line in {lines:?}"))?;
    let mut rows = Vec::new();
    for l in lines {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let (Some(page), Some(va)) = (cols.first(), cols.get(1)) else {
            continue;
        };
        let (Ok(page), true) = (page.parse::<usize>(), va.starts_with("0x")) else {
            continue;
        };
        ensure!(
            cols.len() >= 5 && cols[2] == page.to_string(),
            "bad row {l:?}"
        );
        rows.push((
            page,
            hex(cols[3]),
            hex(cols[4]),
            cols.get(5).unwrap_or(&"").to_string(),
        ));
    }
    let pictures = lines
        .iter()
        .filter(|l| l.starts_with('['))
        .cloned()
        .collect();
    let totals = lines
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix("module: faults +")?;
            let (faults, rest) = rest.split_once(", frames allocated +")?;
            let (allocated, _) = rest.split_once(',')?;
            Some((faults.parse().ok()?, allocated.parse().ok()?))
        })
        .ok_or(format!("no module totals in {lines:?}"))?;
    Ok(Touched {
        instance,
        rows,
        pictures,
        totals,
    })
}
