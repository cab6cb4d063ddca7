//! Command-line arguments (plain clap structs) and dispatch to each command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes shared by every command.
pub mod exit {
    /// Everything passed.
    pub const OK: u8 = 0;
    /// The command ran, and what it checked failed.
    pub const FINDINGS: u8 = 1;
    /// Bad input or configuration: nothing was checked.
    pub const USAGE: u8 = 2;
    /// Interrupted by Ctrl-C (after cleaning up).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(name = "isoharness", version, about = "Build and validate OpenStack guest images from installation ISOs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve mockstack (Keystone, Glance, Nova) on one port until Ctrl-C.
    Mock(crate::mock_cmd::MockArgs),
    /// Check libvirt domain XML (virsh dumpxml output or `<disk>` fragments) against an ISO-install layout.
    CheckXml(crate::check_xml_cmd::CheckXmlArgs),
    /// Run every scenario against every layout and report the guest-OS matrix.
    Matrix(crate::matrix_cmd::MatrixArgs),
    /// Run the ISO-to-image workflow for one scenario (embedded mockstack unless --os-cloud).
    Build(crate::build_cmd::BuildArgs),
    /// Check that an image is what it claims to be: metadata, data, content and a boot test.
    ValidateImage(crate::build_cmd::ValidateArgs),
    /// Delete what earlier runs left behind (from the ledger of created resources).
    Cleanup(crate::build_cmd::CleanupArgs),
    /// Write mockstack installation media (OS ISO, VirtIO-win ISO, driver floppy) for a guest.
    Media(crate::media_cmd::MediaArgs),
}

impl Cli {
    /// The async runtime this command runs on. One build (and one image validation) is a chain of requests, each
    /// waiting for its answer; with an embedded mockstack, client and server then hand every request across the two
    /// CPUs, and waking the other CPU costs more than the request (a build ran in 74 ms on two worker threads, 52 ms
    /// on one, with a tenth of the context switches). Disk copies and digests still run on threads of their own, and
    /// an embedded matrix runs one such runtime per core (`matrix::run::run_embedded`). Only `mock`, which serves
    /// clients it does not know, uses every core's worker.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.command {
            Command::Build(_)
            | Command::ValidateImage(_)
            | Command::Cleanup(_)
            | Command::CheckXml(_)
            | Command::Media(_)
            | Command::Matrix(_) => tokio::runtime::Builder::new_current_thread(),
            Command::Mock(_) => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Mock(args) => crate::mock_cmd::run(args).await,
        Command::CheckXml(args) => crate::check_xml_cmd::run(args),
        Command::Matrix(args) => crate::matrix_cmd::run(args).await,
        Command::Build(args) => crate::build_cmd::build(args).await,
        Command::ValidateImage(args) => crate::build_cmd::validate_image(args).await,
        Command::Cleanup(args) => crate::build_cmd::cleanup(args).await,
        Command::Media(args) => crate::media_cmd::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}
