//! The `isoharness` binary: the command line ([`cli`]) and the commands ([`commands`]) over the harness library.
//! Everything the binary prints is printed here or below; the library only returns values.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use harness::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let status = match cli.runtime() {
        Ok(runtime) => runtime.block_on(cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitStatus::Usage
        }
    };
    ExitCode::from(status)
}
