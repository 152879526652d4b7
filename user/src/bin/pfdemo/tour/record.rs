//! The tour's recorder: every step with the evidence checked for it, printed as prose as it
//! happens or, with `--json`, all at the end; with `--check`, the verdict over all of them.

use pfdemo::parse::PagemapEntry;
use pfdemo::Res;
use serde::Serialize;

/// One step of the tour with the evidence that was checked for it.
#[derive(Serialize)]
struct Step {
    side: &'static str,
    step: u32,
    title: &'static str,
    evidence: String,
    ok: bool,
}

pub struct Tour {
    steps: Vec<Step>,
    json: bool,
}

impl Tour {
    pub fn new(json: bool) -> Self {
        Self {
            steps: Vec::new(),
            json,
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
        if !self.json {
            println!(
                "  {step}. {title}\n       {evidence}{}",
                if ok { "" } else { "   <-- MISMATCH" }
            );
        }
        self.steps.push(Step {
            side,
            step,
            title,
            evidence,
            ok,
        });
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
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&self.steps).map_err(|e| e.to_string())?
            );
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
