//! The conmond binary: parse the command line, answer version queries, or run the daemon.

use std::process::ExitCode;

use clap::Parser as _;
use conmon::config::Config;
use conmon::version::BuildInfo;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(verbosity) = config.version {
        print_stdout(&BuildInfo::get(verbosity == conmon::config::VersionVerbosity::Full).text());
        return ExitCode::SUCCESS;
    }
    if let Some(verbosity) = config.version_json {
        let json = BuildInfo::get(verbosity == conmon::config::VersionVerbosity::Full).json();
        print_stdout(&format!("{json}\n"));
        return ExitCode::SUCCESS;
    }
    let result = config
        .validate()
        .map_err(anyhow::Error::from)
        .and_then(|settings| conmon::daemon::start(settings).map_err(anyhow::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint_error(&err);
            ExitCode::FAILURE
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "version output is the program's answer"
)]
fn print_stdout(text: &str) {
    print!("{text}");
}

#[allow(
    clippy::print_stderr,
    reason = "start-up errors happen before logging exists"
)]
fn eprint_error(err: &anyhow::Error) {
    eprintln!("Error: {err:#}");
}
