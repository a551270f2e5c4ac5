//! Cells end to end: a real `testudod`, real containers grouped in cells through `testudoctl`.
//! Observed from the host: one monitor process is the parent of every container of a cell, the
//! containers share one network namespace (the cell's persistent one) and have their cgroups
//! below the cell's level; from inside: they reach each other on localhost and go by the cell's
//! name. The monitor goes with the cell's last container, the cell's namespace with the cell,
//! and bad requests are refused with their status.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use testudo_test_support::LeakCheck;

const IMAGE: &str = BUSYBOX;

fn cell(daemon: &Daemon, name: &str) -> serde_json::Value {
    daemon.json(&["cell", "inspect", name])
}

/// The pids of the `testudo monitor` processes whose arguments mention `marker`.
fn monitors_mentioning(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("monitor")
            && args.iter().any(|a| a.contains(marker))
        {
            found.push(pid);
        }
    }
    found
}

/// The inode of the network namespace of `pid`.
fn netns_inode(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino()
}

/// The memory cgroup of `pid` (cgroup v1), or its unified one.
fn memory_cgroup(pid: u32) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    cgroups
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            (controllers.split(',').any(|c| c == "memory") || controllers.is_empty())
                .then(|| path.to_owned())
        })
        .unwrap()
}

#[test]
fn the_containers_of_a_cell_share_one_monitor_one_network_and_the_cells_cgroup() {
    let Some(mut daemon) = daemon_with_busybox() else {
        return;
    };
    let leaks = LeakCheck::snapshot();
    let cell_id = daemon.ok(&["cell", "create", "web"]).trim().to_owned();
    assert_eq!(cell_id.len(), 64, "{cell_id}");
    let created = cell(&daemon, "web");
    let netns = created["netns"].as_str().unwrap().to_owned();
    assert!(Path::new(&netns).exists(), "{created}");
    let address = created["attachment"]["addresses"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(address.starts_with(&format!("{}.", daemon.network.prefix())));
    // An empty cell costs no process.
    assert_eq!(created["monitor_pid"], 0);
    assert!(monitors_mentioning(&cell_id).is_empty());

    daemon.ok(&[
        "run",
        "-d",
        "--cell",
        "web",
        "--name",
        "server",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo hello from the cell | nc -l -p 7000; done",
    ]);
    daemon.ok(&[
        "run", "-d", "--cell", "web", "--name", "side", IMAGE, "sleep", "600",
    ]);
    let (server, side) = (pid_of(&daemon, "server"), pid_of(&daemon, "side"));
    let inspected = cell(&daemon, "web");
    let monitor = u32::try_from(inspected["monitor_pid"].as_u64().unwrap()).unwrap();
    assert!(monitor > 0, "{inspected}");
    let members = inspected["containers"].as_array().unwrap().clone();
    assert_eq!(members.len(), 2, "{inspected}");
    for name in ["server", "side"] {
        assert!(members.contains(&serde_json::json!(id_of(&daemon, name))));
    }
    // One monitor process, the parent of both containers.
    assert_eq!(monitors_mentioning(&cell_id), vec![monitor]);
    assert_eq!(parent_of(server), monitor);
    assert_eq!(parent_of(side), monitor);
    // One network namespace, the cell's, reached over localhost; the cell's name as host name.
    let cell_netns = std::fs::metadata(&netns).unwrap().ino();
    assert_eq!(netns_inode(server), cell_netns);
    assert_eq!(netns_inode(side), cell_netns);
    poll_until("the server to answer on localhost", || {
        let out = daemon.ctl(&["exec", "side", "nc", "-w", "5", "127.0.0.1", "7000"]);
        String::from_utf8_lossy(&out.stdout) == "hello from the cell\n"
    });
    assert_eq!(daemon.ok(&["exec", "side", "hostname"]).trim(), "web");
    assert_eq!(daemon.ok(&["exec", "server", "hostname"]).trim(), "web");
    assert_eq!(
        daemon.ok(&["exec", "side", "hostname", "-i"]).trim(),
        address
    );
    // Cgroups below the cell's level.
    let side_id = id_of(&daemon, "side");
    assert!(
        memory_cgroup(side).ends_with(&format!("/default/{cell_id}/{side_id}")),
        "{}",
        memory_cgroup(side)
    );

    // The daemon dies; the cell's containers and its one monitor carry on and are adopted.
    daemon.kill_hard();
    assert!(alive(server) && alive(side) && alive(monitor));
    daemon.restart();
    assert_eq!(cell(&daemon, "web")["monitor_pid"], monitor);
    assert_eq!(
        daemon.json(&["inspect", "side"])["status"]["state"],
        "running"
    );
    assert_eq!(
        daemon.ok(&["exec", "side", "echo", "after"]).trim(),
        "after"
    );

    // A container's exit leaves the other in the monitor; the last one takes the monitor along.
    daemon.ok(&["rm", "-f", "server"]);
    assert!(!alive(server));
    assert!(alive(monitor) && alive(side));
    assert_eq!(
        cell(&daemon, "web")["containers"],
        serde_json::json!([side_id])
    );
    daemon.ok(&["rm", "-f", "side"]);
    poll_until("the cell's monitor to exit", || !alive(monitor));
    assert_eq!(cell(&daemon, "web")["monitor_pid"], 0);
    // The cell's network outlives its containers, and goes with the cell.
    assert!(Path::new(&netns).exists());
    daemon.ok(&["cell", "rm", "web"]);
    assert!(!Path::new(&netns).exists(), "{netns} is left");
    leaks.assert_no_leaks_for(&cell_id);
    leaks.assert_no_leaks_for(&side_id);
    assert_eq!(daemon.json(&["cell", "ls"]), serde_json::json!([]));
}

#[test]
fn a_cell_without_a_network_shares_loopback_and_force_deletes_its_containers() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let cell_id = daemon
        .ok(&["cell", "create", "--network", "none", "quiet"])
        .trim()
        .to_owned();
    let netns = cell(&daemon, "quiet")["netns"].as_str().unwrap().to_owned();
    daemon.ok(&[
        "run",
        "-d",
        "--cell",
        "quiet",
        "--name",
        "a",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo over loopback | nc -l -p 7100; done",
    ]);
    daemon.ok(&[
        "run", "-d", "--cell", "quiet", "--name", "b", IMAGE, "sleep", "600",
    ]);
    poll_until("a to answer b on localhost", || {
        let out = daemon.ctl(&["exec", "b", "nc", "-w", "5", "127.0.0.1", "7100"]);
        String::from_utf8_lossy(&out.stdout) == "over loopback\n"
    });
    // Only loopback inside.
    let links = daemon.ok(&["exec", "b", "ls", "/sys/class/net"]);
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), vec!["lo"]);
    let monitor = u32::try_from(cell(&daemon, "quiet")["monitor_pid"].as_u64().unwrap()).unwrap();
    assert_eq!(parent_of(pid_of(&daemon, "a")), monitor);

    let refused = daemon.fails(&["cell", "rm", "quiet"]);
    assert!(refused.contains("still holds 2 container(s)"), "{refused}");
    assert_eq!(daemon.json(&["ps", "-a"]).as_array().unwrap().len(), 2);
    daemon.ok(&["cell", "rm", "-f", "quiet"]);
    assert_eq!(daemon.json(&["ps", "-a"]), serde_json::json!([]));
    // It has removed its socket, the last thing it does before it exits.
    poll_until("the cell's monitor to exit", || !alive(monitor));
    assert!(!Path::new(&netns).exists());
    assert!(monitors_mentioning(&cell_id).is_empty());
}

#[test]
fn bad_cell_requests_are_refused_with_their_status_and_change_nothing() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    daemon.ok(&["cell", "create", "--network", "none", "c"]);
    let duplicate = daemon.fails(&["cell", "create", "c"]);
    assert!(duplicate.contains("already exists"), "{duplicate}");
    let bad_name = daemon.fails(&["cell", "create", "no/slash"]);
    assert!(bad_name.contains("invalid cell name"), "{bad_name}");
    let unknown = daemon.fails(&["run", "-d", "--cell", "nope", IMAGE, "true"]);
    assert!(unknown.contains("cell \"nope\" not found"), "{unknown}");
    let own_network = daemon.fails(&[
        "run",
        "-d",
        "--cell",
        "c",
        "--network",
        "host",
        IMAGE,
        "true",
    ]);
    assert!(
        own_network.contains("shares the cell's network"),
        "{own_network}"
    );
    let no_network = daemon.fails(&["cell", "create", "--network", "missing-net", "d"]);
    assert!(no_network.contains("not found"), "{no_network}");
    let gone = daemon.fails(&["cell", "rm", "nope"]);
    assert!(gone.contains("not found"), "{gone}");
    // Nothing was made by the refused requests.
    let cells = daemon.json(&["cell", "ls"]);
    assert_eq!(cells.as_array().unwrap().len(), 1, "{cells}");
    assert_eq!(daemon.json(&["ps", "-a"]), serde_json::json!([]));
    // A namespace holding a cell is not deleted without force.
    daemon.ok(&["ns", "create", "team"]);
    daemon.ok(&["-n", "team", "cell", "create", "--network", "none", "t"]);
    let held = daemon.fails(&["ns", "rm", "team"]);
    assert!(held.contains("1 cell(s)"), "{held}");
    daemon.ok(&["-n", "team", "cell", "rm", "t"]);
    daemon.ok(&["ns", "rm", "team"]);
    daemon.ok(&["cell", "rm", "c"]);
}

#[test]
fn a_forced_namespace_delete_removes_its_containers_and_cells_from_the_host() {
    let Some(daemon) = daemon_with_busybox() else {
        return;
    };
    let leaks = LeakCheck::snapshot();
    daemon.ok(&["ns", "create", "team"]);
    let archive = daemon.dir.path().join("busybox.tar");
    daemon.ok(&[
        "-n",
        "team",
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        "example.com/busybox",
    ]);
    let team = |args: &[&str]| {
        let mut all = vec!["-n", "team"];
        all.extend_from_slice(args);
        daemon.ok(&all)
    };
    let cell_id = team(&["cell", "create", "pod"]).trim().to_owned();
    team(&[
        "run", "-d", "--cell", "pod", "--name", "in", IMAGE, "sleep", "600",
    ]);
    team(&["run", "-d", "--name", "out", IMAGE, "sleep", "600"]);
    let inspect = |name: &str| -> serde_json::Value {
        serde_json::from_str(&team(&["--json", "inspect", name])).unwrap()
    };
    let pids: Vec<u32> = ["in", "out"]
        .iter()
        .map(|n| u32::try_from(inspect(n)["status"]["pid"].as_u64().unwrap()).unwrap())
        .collect();
    let ids: Vec<String> = ["in", "out"]
        .iter()
        .map(|n| inspect(n)["id"].as_str().unwrap().to_owned())
        .collect();
    let monitors: Vec<u32> = pids.iter().map(|&p| parent_of(p)).collect();
    let netns: serde_json::Value =
        serde_json::from_str(&team(&["--json", "cell", "inspect", "pod"])).unwrap();
    let netns = netns["netns"].as_str().unwrap().to_owned();

    let held = daemon.fails(&["ns", "rm", "team"]);
    assert!(held.contains("2 container(s), 1 cell(s)"), "{held}");
    daemon.ok(&["ns", "rm", "--force", "team"]);
    for pid in pids.iter().chain(&monitors) {
        poll_until("the namespace's processes to end", || !alive(*pid));
    }
    assert!(!Path::new(&netns).exists(), "{netns} is left");
    for id in ids.iter().chain(std::iter::once(&cell_id)) {
        leaks.assert_no_leaks_for(id);
    }
    assert!(daemon.fails(&["-n", "team", "ps"]).contains("not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_deleting_a_cell_are_events() {
    use testudo_api::events::v1::events_service_client::EventsServiceClient;
    use testudo_api::events::v1::{event, SubscribeRequest};
    let Some(daemon) = tokio::task::spawn_blocking(|| {
        testudo_test_support::require_root().then(|| Daemon::start(&[]))
    })
    .await
    .unwrap() else {
        return;
    };
    let mut client = EventsServiceClient::new(channel(daemon.socket()).await);
    // The call returns once the daemon has subscribed: nothing after it is missed.
    let mut events = client
        .subscribe(SubscribeRequest {
            namespace: "default".to_owned(),
            topics: vec!["/cells/".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.ok(&["cell", "create", "--network", "none", "seen"]);
        daemon.ok(&["cell", "rm", "seen"]);
        daemon
    })
    .await
    .unwrap();
    for topic in ["/cells/create", "/cells/delete"] {
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        assert_eq!(got.topic, topic);
        assert_eq!(got.namespace, "default");
        match got.payload {
            Some(event::Payload::CellChanged(cell)) => {
                assert_eq!(cell.name, "seen");
                assert_eq!(cell.id.len(), 64);
            }
            other => panic!("{topic}: {other:?}"),
        }
    }
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cells_api_answers_bad_requests_with_their_status_codes() {
    use testudo_api::cells::v1::cells_service_client::CellsServiceClient;
    use testudo_api::cells::v1::{CreateRequest, DeleteRequest, InspectRequest, ListRequest};
    use testudo_api::containers::v1::containers_service_client::ContainersServiceClient;
    use testudo_api::containers::v1::{
        network, ContainerConfig, CreateRequest as CreateContainer, HostNetwork, Network,
    };
    use tonic::Code;
    fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
        result.unwrap_err().code()
    }
    let Some(daemon) = tokio::task::spawn_blocking(daemon_with_busybox)
        .await
        .unwrap()
    else {
        return;
    };
    let channel = channel(daemon.socket()).await;
    let mut cells = CellsServiceClient::new(channel.clone());
    let mut containers = ContainersServiceClient::new(channel);
    let create = |namespace: &str, name: &str| CreateRequest {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ..CreateRequest::default()
    };
    let made = cells
        .create(create("default", "grpc"))
        .await
        .unwrap()
        .into_inner()
        .cell
        .unwrap();
    // Unset network: a namespace of the cell's own with only loopback.
    assert!(
        made.netns_path.starts_with("/run/netns/testudo-"),
        "{made:?}"
    );
    assert!(made.attachment.is_none());
    assert_eq!(
        code(cells.create(create("default", "grpc")).await),
        Code::AlreadyExists
    );
    assert_eq!(
        code(cells.create(create("default", "bad name")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(cells.create(create("default", &"a".repeat(64))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(cells.create(create("nowhere", "grpc")).await),
        Code::NotFound
    );
    let inspect = |cell: &str| InspectRequest {
        namespace: "default".to_owned(),
        cell: cell.to_owned(),
    };
    assert_eq!(code(cells.inspect(inspect("nope")).await), Code::NotFound);
    // By id as by name.
    let by_id = cells.inspect(inspect(&made.id)).await.unwrap().into_inner();
    assert_eq!(by_id.cell.unwrap().name, "grpc");
    let list = ListRequest {
        namespace: "nowhere".to_owned(),
    };
    assert_eq!(code(cells.list(list).await), Code::NotFound);

    let member = |network: Option<Network>| CreateContainer {
        namespace: "default".to_owned(),
        config: Some(ContainerConfig {
            image: BUSYBOX.to_owned(),
            cell: "grpc".to_owned(),
            network,
            cmd: Some(testudo_api::containers::v1::Command {
                args: vec!["sleep".to_owned(), "600".to_owned()],
            }),
            ..ContainerConfig::default()
        }),
    };
    let own = Network {
        mode: Some(network::Mode::Host(HostNetwork {})),
    };
    assert_eq!(
        code(containers.create(member(Some(own))).await),
        Code::InvalidArgument
    );
    containers.create(member(None)).await.unwrap();
    let delete = |force| DeleteRequest {
        namespace: "default".to_owned(),
        cell: "grpc".to_owned(),
        force,
    };
    assert_eq!(
        code(cells.delete(delete(false)).await),
        Code::FailedPrecondition
    );
    cells.delete(delete(true)).await.unwrap();
    assert_eq!(code(cells.delete(delete(false)).await), Code::NotFound);
    assert!(!std::path::Path::new(&made.netns_path).exists());
    drop(daemon);
}
