//! `runtime-shim`: pods and containers from the command line, the way CRI-O runs them with a
//! pod monitor. State lives under `--root`, so separate invocations work together. With
//! tracing on, each command is one span named after the CRI method it stands for.

mod args;
mod cli;
#[cfg(feature = "demo")]
mod demo;
mod trace;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = args::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return cli::fail(&anyhow::Error::from(err)),
    };
    #[cfg(feature = "demo")]
    if let args::Command::Demo = args.command {
        return runtime.block_on(demo::run(args));
    }
    if let args::Command::Trace {
        trace_id,
        jaeger,
        format,
    } = &args.command
    {
        return runtime.block_on(trace::run(trace_id, jaeger, *format));
    }
    runtime.block_on(cli::run(args))
}
