//! `testudoctl monitor upgrade`: re-executes containers' monitors in place with the daemon's
//! testudo binary, their containers running on.

use serde_json::{json, Value};
use testudo_client::containers::MonitorUpgrade;
use testudo_client::Client;

use crate::output::table;
use crate::{print_json, CtlError};

/// The monitor commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MonitorCommand {
    /// Upgrade the monitors of containers in place to the daemon's testudo binary (containers
    /// keep running); exits 1 if any monitor could not be upgraded
    Upgrade {
        /// Containers (ids or names)
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        containers: Vec<String>,
        /// Every container of the namespace
        #[arg(long)]
        all: bool,
    },
}

/// Runs `command`; returns the exit status.
pub(crate) async fn run(
    client: &mut Client,
    namespace: &str,
    as_json: bool,
    command: MonitorCommand,
) -> Result<u8, CtlError> {
    let MonitorCommand::Upgrade { containers, .. } = command;
    let upgrades = client.upgrade_monitors(namespace, &containers).await?;
    if as_json {
        print_json(&Value::Array(upgrades.iter().map(upgrade_json).collect()));
    } else {
        let rows: Vec<Vec<String>> = upgrades.iter().map(upgrade_row).collect();
        print!(
            "{}",
            table(&["CONTAINER", "NAME", "MONITOR", "RESULT"], &rows)
        );
    }
    let failed = upgrades.iter().filter(|u| !u.upgraded).count();
    if failed > 0 {
        eprintln!(
            "testudoctl: {failed} of {} monitors were not upgraded",
            upgrades.len()
        );
        return Ok(1);
    }
    Ok(0)
}

fn upgrade_json(upgrade: &MonitorUpgrade) -> Value {
    json!({
        "id": upgrade.id,
        "name": upgrade.name,
        "upgraded": upgrade.upgraded,
        "monitor_pid": upgrade.monitor_pid,
        "binary": upgrade.binary,
        "error": upgrade.error,
    })
}

fn upgrade_row(upgrade: &MonitorUpgrade) -> Vec<String> {
    let result = if upgrade.upgraded {
        format!("upgraded to {}", upgrade.binary)
    } else {
        format!("not upgraded: {}", upgrade.error)
    };
    let pid = match upgrade.monitor_pid {
        0 => "-".to_owned(),
        pid => pid.to_string(),
    };
    vec![upgrade.id.clone(), upgrade.name.clone(), pid, result]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_upgrade_shows_its_reason_and_a_done_one_its_binary() {
        let done = MonitorUpgrade {
            id: "abc".into(),
            name: "web".into(),
            upgraded: true,
            monitor_pid: 42,
            binary: "/usr/bin/testudo".into(),
            error: String::new(),
        };
        let refused = MonitorUpgrade {
            upgraded: false,
            monitor_pid: 0,
            binary: String::new(),
            error: "it cannot resume".into(),
            ..done.clone()
        };
        assert_eq!(
            upgrade_row(&done)[2..],
            ["42", "upgraded to /usr/bin/testudo"]
        );
        assert_eq!(
            upgrade_row(&refused)[2..],
            ["-", "not upgraded: it cannot resume"]
        );
        assert_eq!(upgrade_json(&refused)["upgraded"], false);
    }
}
