//! `pfdemo bench`: fault-path throughput, side by side in one run.

#[derive(clap::Args)]
pub struct Args {
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json_out: Option<String>,
}

pub fn run(_args: Args) -> Result<(), String> {
    Err("bench: not implemented yet".into())
}
