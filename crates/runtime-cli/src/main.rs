//! `testudo`: the OCI runtime binary, a drop-in for runc. Thin adapters from the command line to
//! `testudo-runtime`; `testudo init` is the container's init, started by the runtime itself.

mod cli;
mod commands;
mod log;
mod resources;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The init path comes first and skips argument parsing: it runs in every container.
    if std::env::args_os().nth(1).is_some_and(|a| a == "init")
        && std::env::var_os(testudo_runtime::init::SYNC_FD_ENV).is_some()
    {
        testudo_runtime::init::init_main();
    }
    let cli = cli::Cli::parse();
    let mut log = log::Log::open(cli.log.as_deref(), cli.log_format);
    match commands::dispatch(&cli, &mut log) {
        Ok(code) => code,
        Err(error) => {
            log.error(&error);
            ExitCode::FAILURE
        }
    }
}
