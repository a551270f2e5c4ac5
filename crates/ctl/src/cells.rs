//! Cells: `testudoctl cell create|ls|inspect|rm`. A cell's containers share its monitor and its
//! network; `run --cell NAME` and `create --cell NAME` put a container in one.

use clap::Subcommand;
use serde_json::{json, Value};
use testudo_client::cells::Cell;
use testudo_client::Client;

use crate::containers::pairs;
use crate::network::{attachment_json, mode_json, network_mode};
use crate::output::{table, time};
use crate::{print_json, CtlError};

/// The cell commands.
#[derive(Debug, Subcommand)]
pub(crate) enum CellCommand {
    /// Create a cell
    Create {
        /// Its name, unique in the namespace
        name: String,
        /// The network its containers share: bridge (the default network), a network's name,
        /// none (loopback only), host, cni:CONFLIST or ns:PATH
        #[arg(long, default_value = "bridge")]
        network: String,
        /// Publish a port, [hostIP:]hostPort:containerPort[/tcp|udp]; repeatable
        #[arg(short = 'p', long = "publish", value_name = "PORTS")]
        publish: Vec<String>,
        /// A label, KEY=VALUE; repeatable
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// List the namespace's cells
    Ls,
    /// Show a cell, with its containers and monitor
    Inspect {
        /// Its name or id
        cell: String,
    },
    /// Delete a cell
    Rm {
        /// Delete its containers first (running ones are killed)
        #[arg(short = 'f', long)]
        force: bool,
        /// Its name or id
        cell: String,
    },
}

fn cell_json(c: &Cell) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "namespace": c.namespace,
        "network": mode_json(c.network.as_ref()),
        "netns": c.netns_path,
        "attachment": attachment_json(c.attachment.as_ref()),
        "tags": c.tags,
        "created_at": time(c.created_at),
        "containers": c.containers,
        "monitor_pid": c.monitor_pid,
    })
}

fn cell_rows(cells: &[Cell]) -> Vec<Vec<String>> {
    cells
        .iter()
        .map(|c| {
            let addresses = c
                .attachment
                .as_ref()
                .map(|a| a.addresses.join(","))
                .unwrap_or_default();
            vec![
                c.id.chars().take(12).collect(),
                c.name.clone(),
                mode_json(c.network.as_ref())
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                addresses,
            ]
        })
        .collect()
}

const HEADERS: [&str; 4] = ["CELL ID", "NAME", "NETWORK", "ADDRESSES"];

/// Runs a cell command in namespace `ns`.
pub(crate) async fn run(
    client: &mut Client,
    ns: &str,
    json: bool,
    command: CellCommand,
) -> Result<(), CtlError> {
    match command {
        CellCommand::Create {
            name,
            network,
            publish,
            labels,
        } => {
            let network = network_mode(&network, &publish)?;
            let tags = pairs("--label", &labels)?;
            let created = client.create_cell(ns, &name, Some(network), tags).await?;
            if json {
                print_json(&cell_json(&created));
            } else {
                println!("{}", created.id);
            }
        }
        CellCommand::Ls => {
            let cells = client.list_cells(ns).await?;
            if json {
                print_json(&cells.iter().map(cell_json).collect());
            } else {
                print!("{}", table(&HEADERS, &cell_rows(&cells)));
            }
        }
        CellCommand::Inspect { cell } => {
            print_json(&cell_json(&client.inspect_cell(ns, &cell).await?));
        }
        CellCommand::Rm { force, cell } => client.delete_cell(ns, &cell, force).await?,
    }
    Ok(())
}
