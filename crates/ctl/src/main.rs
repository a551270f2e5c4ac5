//! `testudoctl`, the command-line client of `testudod`, over the unix socket or `-H host:port`
//! with mutual TLS (`connect.rs`): namespaces, images, containers (`run`, `create`, `start`,
//! `stop`, `kill`, `rm`, `ps`, `inspect`, `logs`, `wait`, `stats`, with podman's flags; `run`
//! and `create` attach to the default bridge network unless `--network` says otherwise),
//! networks (`network create|ls|inspect|rm`, `network.rs`), cells (`cell create|ls|inspect|rm`,
//! `cells.rs`; `run --cell` joins one), `events` (a stream, one line per
//! event), `exec`, `attach` and `run -i`/`-t` with a local terminal (`exec.rs`, `terminal.rs`),
//! `monitor upgrade` (`monitor.rs`) and `certs`, which writes a development CA and certificates
//! for TCP (`certs.rs`). Human tables by default, `--json` for scripts; an error is one line,
//! `testudoctl: <message>`, and exit status 1; `run` without `-d` exits with the container's
//! status.
//!
//! Non-goals: any logic the daemon owns (validation, defaults beyond the namespace); this binary
//! parses flags, calls `testudo-client` and prints.

mod cells;
mod certs;
mod connect;
mod containers;
mod events;
mod exec;
mod monitor;
mod network;
mod output;
mod signals;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use testudo_client::{Client, ClientError};

use crate::certs::{CertsArgs, CertsError};
use crate::connect::{Connection, ConnectionError};

use crate::output::{image_json, image_rows, namespace_json, namespace_rows, table};

/// testudoctl: the client of the testudo daemon
#[derive(Debug, Parser)]
#[command(name = "testudoctl", version)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    /// The namespace to work in
    #[arg(short = 'n', long, global = true, default_value = "default")]
    namespace: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Namespaces (tenants)
    #[command(subcommand)]
    Ns(NsCommand),
    /// Images of the namespace
    #[command(subcommand)]
    Image(ImageCommand),
    /// Follow the daemon's events (every namespace unless --only-namespace)
    Events(events::EventsArgs),
    /// Bridge networks of the node (shared by every namespace)
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Cells of the namespace: groups of containers sharing one monitor and one network
    #[command(subcommand)]
    Cell(cells::CellCommand),
    #[command(flatten)]
    Container(containers::ContainerCommand),
    /// Run a command in a running container; exit with its status
    Exec(exec::ExecArgs),
    /// Connect to a container's input and output; ctrl-p ctrl-q detaches from a terminal
    Attach(exec::AttachArgs),
    /// Container monitors
    #[command(subcommand)]
    Monitor(monitor::MonitorCommand),
    /// Write a development CA, a server and a client certificate for TCP with mutual TLS
    Certs(CertsArgs),
}

#[derive(Debug, Subcommand)]
enum NsCommand {
    /// Create a namespace
    Create {
        /// Its name
        name: String,
    },
    /// List namespaces
    Ls,
    /// Delete a namespace
    Rm {
        /// Its name
        name: String,
        /// Also when it holds containers or images
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Pull an image from its registry
    Pull {
        /// The reference: busybox, registry:5000/app:1.2, name@sha256:...
        reference: String,
    },
    /// List images
    Ls,
    /// Show an image with its manifest and config
    Inspect {
        /// The reference
        reference: String,
    },
    /// Delete an image reference
    Rm {
        /// The reference
        reference: String,
    },
    /// Import the images of an OCI layout tar archive
    Import {
        /// The archive
        file: PathBuf,
        /// The name of images the archive names only by tag
        #[arg(long)]
        name: Option<String>,
    },
    /// Export an image as an OCI layout tar archive
    Export {
        /// The reference
        reference: String,
        /// The archive to write; it must not exist
        file: PathBuf,
    },
    /// Free content no image or container needs
    Prune,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CtlError {
    #[error("container {container} has no network namespace to join: it is not running and has no network of its own")]
    NoNetns { container: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Certs(#[from] CertsError),
    #[error("cannot open {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {path:?}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image config or manifest is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("invalid {flag} {value:?}: expected {expected}")]
    Flag {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot set up the terminal")]
    Terminal(#[source] std::io::Error),
    #[error("cannot watch for signals")]
    Signals(#[source] std::io::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    #[error("the daemon ended the stream without the process's exit status")]
    NoExit,
    #[error("--publish needs a bridge or CNI network, not --network {network}")]
    PublishWithout { network: String },
    #[error("a container in a cell shares the cell's network: give --network and --publish to `cell create`")]
    NetworkInCell,
}

pub(crate) fn print_json(value: &serde_json::Value) {
    // A Value always serialises.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

async fn run(cli: Cli) -> Result<u8, CtlError> {
    if let Command::Certs(args) = &cli.command {
        let written = certs::write(args)?;
        if cli.json {
            print_json(&json!(written));
        } else {
            written
                .iter()
                .for_each(|path| println!("{}", path.display()));
        }
        return Ok(0);
    }
    let mut client = cli.connection.connect().await?;
    let ns = cli.namespace.as_str();
    match cli.command {
        Command::Ns(NsCommand::Create { name }) => {
            let created = client.create_namespace(&name, []).await?;
            if cli.json {
                print_json(&namespace_json(&created));
            } else {
                println!("{}", created.name);
            }
        }
        Command::Ns(NsCommand::Ls) => {
            let namespaces = client.list_namespaces().await?;
            if cli.json {
                print_json(&namespaces.iter().map(namespace_json).collect());
            } else {
                print!(
                    "{}",
                    table(&["NAME", "CREATED"], &namespace_rows(&namespaces))
                );
            }
        }
        Command::Ns(NsCommand::Rm { name, force }) => client.delete_namespace(&name, force).await?,
        // Written above, without a connection.
        Command::Certs(_) => {}
        Command::Image(ImageCommand::Pull { reference }) => {
            let image = client.pull_image(ns, &reference, |_| {}).await?;
            if cli.json {
                print_json(&image_json(&image));
            } else {
                println!("{} {}", image.name, image.digest);
            }
        }
        Command::Image(ImageCommand::Ls) => {
            let images = client.list_images(ns).await?;
            if cli.json {
                print_json(&images.iter().map(image_json).collect());
            } else {
                print!(
                    "{}",
                    table(
                        &["NAME", "DIGEST", "SIZE", "LAYERS", "CREATED"],
                        &image_rows(&images)
                    )
                );
            }
        }
        Command::Image(ImageCommand::Inspect { reference }) => {
            let inspected = client.inspect_image(ns, &reference).await?;
            let document = |bytes: &[u8]| -> Result<serde_json::Value, CtlError> {
                serde_json::from_slice(bytes).map_err(CtlError::Json)
            };
            // One document either way: people read it as scripts do.
            print_json(&json!({
                "image": inspected.image.as_ref().map(image_json),
                "manifest": document(&inspected.manifest)?,
                "config": document(&inspected.config)?,
            }));
        }
        Command::Image(ImageCommand::Rm { reference }) => {
            client.delete_image(ns, &reference).await?;
        }
        Command::Image(ImageCommand::Import { file, name }) => {
            let archive = tokio::fs::File::open(&file)
                .await
                .map_err(|source| CtlError::Open {
                    path: file.clone(),
                    source,
                })?;
            let images = client.import_images(ns, name.as_deref(), archive).await?;
            if cli.json {
                print_json(&images.iter().map(image_json).collect());
            } else {
                print!(
                    "{}",
                    table(
                        &["NAME", "DIGEST", "SIZE", "LAYERS", "CREATED"],
                        &image_rows(&images)
                    )
                );
            }
        }
        Command::Image(ImageCommand::Export { reference, file }) => {
            export(&mut client, ns, &reference, &file).await?;
        }
        Command::Events(args) => events::follow(&mut client, ns, args, cli.json).await?,
        Command::Exec(args) => return exec::exec(&mut client, ns, args).await,
        Command::Attach(args) => return exec::attach(&mut client, ns, args).await,
        Command::Network(command) => network::run(&mut client, cli.json, command).await?,
        Command::Cell(command) => cells::run(&mut client, ns, cli.json, command).await?,
        Command::Container(command) => {
            return containers::run(&mut client, ns, cli.json, command).await;
        }
        Command::Monitor(command) => {
            return monitor::run(&mut client, ns, cli.json, command).await;
        }
        Command::Image(ImageCommand::Prune) => {
            let pruned = client.prune_images(ns).await?;
            if cli.json {
                print_json(&json!({
                    "blobs": pruned.blobs,
                    "snapshots": pruned.snapshots,
                    "reclaimed_bytes": pruned.reclaimed_bytes,
                }));
            } else {
                println!(
                    "removed {} blobs and {} snapshots, {} bytes",
                    pruned.blobs, pruned.snapshots, pruned.reclaimed_bytes
                );
            }
        }
    }
    Ok(0)
}

/// Writes the archive to a new `file`, removed again if the export fails.
async fn export(
    client: &mut Client,
    ns: &str,
    reference: &str,
    file: &std::path::Path,
) -> Result<(), CtlError> {
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .await
        .map_err(|source| CtlError::Create {
            path: file.to_owned(),
            source,
        })?;
    let exported = client.export_images(ns, &[reference], &mut out).await;
    if exported.is_err() {
        drop(out);
        let _ = tokio::fs::remove_file(file).await;
    }
    Ok(exported?)
}

/// The error and its causes as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("testudoctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("testudoctl: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
