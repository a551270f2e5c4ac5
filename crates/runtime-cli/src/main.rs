//! `testudo`: the OCI runtime binary, a drop-in for runc. Thin adapters from the command line to
//! `testudo-runtime`; `testudo init` is the container's init, started by the runtime itself, and
//! `testudo reap` the minimal PID 1 that reaps orphans and forwards signals (`init: yes`).

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
    // `testudo reap -- PROGRAM...`: the minimal init of `init: yes` containers; it runs as
    // PID 1 in a container, so it parses nothing it does not need.
    if std::env::args_os().nth(1).is_some_and(|a| a == "reap") {
        let args: Vec<_> = std::env::args_os().skip(2).collect();
        return match testudo_runtime::reaper::reap(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("testudo reap: {}", testudo_runtime::init::chain(&e));
                ExitCode::from(127)
            }
        };
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
