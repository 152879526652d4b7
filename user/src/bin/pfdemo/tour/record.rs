//! The tour's recorder: every step with the evidence checked for it, printed as prose as it
//! happens or, with `--json`, all at the end (and with `--json-out FILE` into a file, next to
//! the prose); with `--check`, the verdict over all of them. A step that shows the page-table
//! walk carries the walks it read, for the JSON (what `scripts/walk_svg.py` draws).

use pfdemo::parse::PagemapEntry;
use pfdemo::walk::Walk;
use pfdemo::Res;
use serde::Serialize;
use std::collections::BTreeMap;

/// The CPU's record of a fault (tracefs `exceptions:page_fault_user`): the faulting
/// address, the instruction, and the hardware error code, raw and in words.
#[derive(Serialize, Debug, Clone)]
pub struct CpuFault {
    pub address: u64,
    pub ip: u64,
    pub error_code: u64,
    pub error: String,
}

/// One step of the tour with the evidence that was checked for it.
#[derive(Serialize)]
struct Step {
    side: &'static str,
    step: u32,
    title: &'static str,
    evidence: String,
    ok: bool,
    /// The walks the step shows, by what they are ("before", "after", "child", ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    walks: BTreeMap<&'static str, Walk>,
    /// Step 5: the CPU's records of the store's fault, or why tracefs has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_faults: Option<Vec<CpuFault>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_faults_unavailable: Option<String>,
}

/// What a failed check's line ends with.
fn mark(ok: bool) -> &'static str {
    if ok {
        ""
    } else {
        "   <-- MISMATCH"
    }
}

impl Step {
    fn new(side: &'static str, step: u32, title: &'static str, ok: bool, evidence: String) -> Self {
        Self {
            side,
            step,
            title,
            evidence,
            ok,
            walks: BTreeMap::new(),
            cpu_faults: None,
            cpu_faults_unavailable: None,
        }
    }
}

pub struct Tour {
    steps: Vec<Step>,
    json: bool,
    json_out: Option<String>,
}

impl Tour {
    pub fn new(json: bool, json_out: Option<String>) -> Self {
        Self {
            steps: Vec::new(),
            json,
            json_out,
        }
    }

    pub fn step(
        &mut self,
        side: &'static str,
        step: u32,
        title: &'static str,
        ok: bool,
        evidence: String,
    ) {
        self.record(Step::new(side, step, title, ok, evidence), false);
    }

    /// A check of step `step` on the page-table walk, printed under the step it belongs to;
    /// `walks` go into the JSON with it.
    pub fn walk_step(
        &mut self,
        (side, step): (&'static str, u32),
        title: &'static str,
        walks: &[(&'static str, Walk)],
        ok: bool,
        evidence: String,
    ) {
        let mut s = Step::new(side, step, title, ok, evidence);
        s.walks = walks.iter().copied().collect();
        self.record(s, true);
    }

    /// Prints `step` (unless JSON was asked for), under the step before it if `under`, and
    /// keeps it.
    fn record(&mut self, step: Step, under: bool) {
        if !self.json && !under {
            println!(
                "  {}. {}\n       {}{}",
                step.step,
                step.title,
                step.evidence,
                mark(step.ok)
            );
        }
        if !self.json && under {
            println!(
                "       the walk: {}\n         {}{}",
                step.title,
                step.evidence,
                mark(step.ok)
            );
        }
        self.steps.push(step);
    }

    /// Adds `walks` to the step recorded last (for the JSON).
    pub fn attach(&mut self, walks: &[(&'static str, Walk)]) {
        if let Some(last) = self.steps.last_mut() {
            last.walks.extend(walks.iter().copied());
        }
    }

    /// Adds the CPU's fault records (or why there are none) to the step recorded last.
    pub fn attach_cpu_fault(&mut self, faults: &Result<Vec<CpuFault>, String>) {
        if let Some(last) = self.steps.last_mut() {
            match faults {
                Ok(f) => last.cpu_faults = Some(f.clone()),
                Err(why) => last.cpu_faults_unavailable = Some(why.clone()),
            }
        }
    }

    /// Step 4, on either side: pagemap, read right before the store, had no entry for the page.
    pub fn no_entry_before(&mut self, side: &'static str, entry: &PagemapEntry) {
        self.step(
            side,
            4,
            "the page table has no entry for it",
            !entry.present,
            format!(
                "pagemap right before the store: {}",
                if entry.present {
                    "present"
                } else {
                    "not present"
                }
            ),
        );
    }

    pub fn say(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// Prints the steps as JSON (with `--json`) and, with `check`, fails unless every step's
    /// evidence held (`tour: all N checks passed` otherwise, in prose mode).
    pub fn finish(self, check: bool) -> Res {
        let failed: Vec<_> = self.steps.iter().filter(|s| !s.ok).collect();
        let text = serde_json::to_string_pretty(&self.steps).map_err(|e| e.to_string())?;
        if self.json {
            println!("{text}");
        }
        if let Some(path) = &self.json_out {
            std::fs::write(path, text + "\n").map_err(|e| format!("writing {path}: {e}"))?;
        }
        if check {
            if !failed.is_empty() {
                return Err(format!(
                    "tour: {} of {} checks failed (first: {} step {}: {})",
                    failed.len(),
                    self.steps.len(),
                    failed[0].side,
                    failed[0].step,
                    failed[0].evidence
                ));
            }
            if !self.json {
                println!("tour: all {} checks passed", self.steps.len());
            }
        }
        Ok(())
    }
}
