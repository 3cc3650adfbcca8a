//! `runtime-shim trace`: a trace from Jaeger's query API drawn as a waterfall, or printed as
//! the same tree in JSON.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use runtime_shim::waterfall::{Style, Waterfall, jaeger, render};

use crate::args::TraceFormat;
use crate::cli::fail;

pub(crate) async fn run(trace_id: &str, jaeger_url: &str, format: TraceFormat) -> ExitCode {
    match show(trace_id, jaeger_url, format).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn show(trace_id: &str, jaeger_url: &str, format: TraceFormat) -> Result<()> {
    let spans = jaeger::fetch(jaeger_url, trace_id).await?;
    print(&Waterfall::new(trace_id, &spans), format)
}

/// Prints `waterfall` on stdout in `format`.
pub(crate) fn print(waterfall: &Waterfall, format: TraceFormat) -> Result<()> {
    let text = match format {
        TraceFormat::Text => render(waterfall, Style::for_stdout()),
        TraceFormat::Json => serde_json::to_string_pretty(waterfall)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
