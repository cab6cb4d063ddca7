//! The command line: clap's parsing of `isoharness` and its subcommands, and dispatch to the commands.

use clap::{Parser, Subcommand};
use harness::exit::ExitStatus;

use crate::commands::{self, build, check_xml, cleanup, matrix, media, mock, report, validate_image};

#[derive(Debug, Parser)]
#[command(
    name = "isoharness",
    version,
    about = "Build and validate OpenStack guest images from installation ISOs",
    after_help = ExitStatus::help(&ExitStatus::ALL),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve mockstack (Keystone, Glance, Nova and a simulated libvirt host) on one port until Ctrl-C
    #[command(after_help = ExitStatus::help(mock::STATUSES))]
    Mock(mock::MockArgs),
    /// Check libvirt domain XML (virsh dumpxml output or `<disk>` fragments) against an ISO-install layout
    #[command(after_help = ExitStatus::help(check_xml::STATUSES))]
    CheckXml(check_xml::CheckXmlArgs),
    /// Run every scenario against every layout and report the guest-OS matrix (embedded mockstacks unless a cloud
    /// is named)
    #[command(
        after_help = ExitStatus::help(matrix::STATUSES),
        mut_arg("os_cloud", |arg| arg.help(commands::EMBEDDED_CLOUD_HELP)),
    )]
    Matrix(matrix::MatrixArgs),
    /// Work on saved matrix reports: `report merge` makes one matrix of several `matrix --format json` reports
    #[command(after_help = ExitStatus::help(report::STATUSES))]
    Report(report::ReportArgs),
    /// Run the ISO-to-image workflow for one scenario (an embedded mockstack unless a cloud is named)
    #[command(
        after_help = ExitStatus::help(build::STATUSES),
        mut_arg("os_cloud", |arg| arg.help(commands::EMBEDDED_CLOUD_HELP)),
    )]
    Build(build::BuildArgs),
    /// Check that an image of a real cloud is what it claims to be: metadata, data, content and a boot test
    #[command(after_help = ExitStatus::help(validate_image::STATUSES))]
    ValidateImage(validate_image::ValidateArgs),
    /// Delete what earlier runs on a real cloud left behind (from the ledger of created resources)
    #[command(after_help = ExitStatus::help(cleanup::STATUSES))]
    Cleanup(cleanup::CleanupArgs),
    /// Write the installation media mockstack's guests understand (OS ISO, VirtIO-win ISO, driver floppy)
    #[command(after_help = ExitStatus::help(media::STATUSES))]
    Media(media::MediaArgs),
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
            | Command::Report(_)
            | Command::Matrix(_) => tokio::runtime::Builder::new_current_thread(),
            Command::Mock(_) => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build()
    }
}

/// Runs the command; its errors are printed on stderr and classified into its exit status.
pub async fn run(cli: Cli) -> ExitStatus {
    let result = match cli.command {
        Command::Mock(args) => mock::run(args).await,
        Command::CheckXml(args) => check_xml::run(args),
        Command::Matrix(args) => matrix::run(args).await,
        Command::Build(args) => build::run(args).await,
        Command::ValidateImage(args) => validate_image::run(args).await,
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::Media(args) => media::run(args),
        Command::Report(args) => report::run(args),
    };
    commands::finish(result)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_says_what_it_does_and_lists_its_values() {
        let cli = Cli::command();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let name = format!("{} --{}", command.get_name(), arg.get_id());
                if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                assert!(arg.get_help().is_some_and(|h| !h.to_string().is_empty()), "{name} has no description");
                let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
                if takes_value && !arg.get_possible_values().is_empty() {
                    continue;
                }
                // A free-form value says what it is with a value name other than its id's upper case.
                if takes_value && !arg.is_positional() {
                    let names: Vec<String> =
                        arg.get_value_names().unwrap_or_default().iter().map(|n| n.to_string()).collect();
                    assert!(!names.is_empty(), "{name} names no value");
                }
            }
        }
    }

    #[test]
    fn a_command_shows_only_its_own_options() {
        let cli = Cli::command();
        let ids = |name: &str| -> Vec<String> {
            let command = cli.find_subcommand(name).unwrap_or_else(|| panic!("no {name}"));
            command.get_arguments().map(|a| a.get_id().to_string()).collect()
        };
        for command in ["cleanup", "validate-image"] {
            let ids = ids(command);
            assert!(!ids.iter().any(|id| id.starts_with("domain_xml")), "{command}: {ids:?}");
            let help = cli.find_subcommand(command).unwrap().clone().render_long_help().to_string();
            assert!(!help.contains("embedded mockstack is used"), "{command}: {help}");
            assert!(!help.contains("runs on an embedded mockstack"), "{command}: {help}");
        }
        for command in ["build", "matrix"] {
            let help = cli.find_subcommand(command).unwrap().clone().render_long_help().to_string();
            assert!(help.contains("runs on an embedded mockstack"), "{command}: {help}");
            assert!(help.contains("--domain-xml-command"), "{command}");
        }
    }
}
