//! The `bench` binary (run by `cargo xtask bench`): thin glue from the command line to the bench library, plus the
//! hidden `serve-mock` mode in which it is its own mockstack child process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "isoharness and mockstack against the machine's limits and the real services")]
#[command(args_conflicts_with_subcommands = true)]
struct BenchCli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    run: bench::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Serve mockstack on 127.0.0.1 until stdin closes (the benchmark's child process).
    #[command(hide = true)]
    ServeMock {
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long, default_value = "real")]
        clock: mockstack::ClockMode,
    },
    /// Time every driver call of repeated builds on one embedded mockstack (a profile of the build).
    ProfileBuild {
        #[arg(long, default_value = bench::workflow::BUILD_SCENARIO)]
        scenario: String,
        #[arg(long, default_value = "patched")]
        layout: guestsim::Layout,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[arg(long, default_value = "scenarios")]
        scenarios: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = BenchCli::parse();
    // A profiled build runs on one thread, as `isoharness build` does.
    let mut builder = match cli.mode {
        Some(Mode::ProfileBuild { .. }) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.mode {
            Some(Mode::ServeMock { state_dir, clock }) => {
                bench::child::serve(state_dir, clock, guestsim::Layout::Patched).await
            }
            Some(Mode::ProfileBuild { scenario, layout, runs, scenarios }) => {
                print!("{}", bench::workflow::profile_build(&scenarios, &scenario, layout, runs).await?);
                Ok(())
            }
            None => {
                let plan = bench::BenchPlan::resolve(&cli.run)?;
                let report = bench::run(&plan).await?;
                println!("{report}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
