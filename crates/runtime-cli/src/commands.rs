//! One function per verb: parse what the CLI gave, call the runtime library, print what runc prints.

use std::io::Write;
use std::process::ExitCode;

use testudo_runtime::{
    container, create, create_and_start, exec, reaper, signal, Container, ControlError,
    CreateOptions, ExecOptions, StateRoot, Status,
};

use crate::cli::{Cli, Command, CreateArgs, ExecArgs};
use crate::log::Log;
use crate::terminal::{OwnConsole, Proxy};

type Outcome = Result<ExitCode, String>;

fn chain(error: &dyn std::error::Error) -> String {
    testudo_runtime::init::chain(error)
}

/// Runs the verb the command line names.
pub(crate) fn dispatch(cli: &Cli, log: &mut Log) -> Outcome {
    if cli.systemd_cgroup {
        return Err("the systemd cgroup driver is not available: there is no systemd on this host; use cgroupfs".into());
    }
    let root = StateRoot::new(&cli.root);
    match &cli.command {
        Command::Create(args) => {
            let created = create(&root, &valid_id(&args.id)?, &create_options(args))
                .map_err(|e| chain(&e))?;
            warn_all(log, &created.warnings);
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { id } => {
            let c = Container::load(&root, id, true).map_err(|e| chain(&e))?;
            let warnings = c.start().map_err(|e| chain(&e))?;
            warn_all(log, &warnings);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            create: args,
            detach,
            keep,
            no_subreaper,
        } => run(&root, args, *detach, *keep, *no_subreaper, log),
        Command::State { id } => {
            let c = Container::load(&root, id, false).map_err(|e| chain(&e))?;
            print_json(&c.state())
        }
        Command::Kill {
            all,
            id,
            signal: sig,
        } => {
            let number = signal::parse_signal(sig).map_err(|e| e.to_string())?;
            let c = Container::load(&root, id, false).map_err(|e| chain(&e))?;
            c.kill(number, *all).map_err(|e| chain(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { force, id } => delete(&root, id, *force),
        Command::Exec(args) => exec_command(&root, args, log),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&root, id, format, ps_args),
        Command::List { format, quiet } => list(&root, format, *quiet),
        Command::Pause { id } => {
            let c = Container::load(&root, id, true).map_err(|e| chain(&e))?;
            c.pause().map_err(|e| chain(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { id } => {
            let c = Container::load(&root, id, true).map_err(|e| chain(&e))?;
            c.resume().map_err(|e| chain(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => events(&root, id, *stats, interval),
        Command::Update(args) => {
            let resources = crate::resources::from_args(args)?;
            let c = Container::load(&root, &args.id, true).map_err(|e| chain(&e))?;
            c.update(&resources).map_err(|e| chain(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Spec { bundle, rootless } => spec(bundle, *rootless),
        Command::Features => {
            println!("{}", features());
            Ok(ExitCode::SUCCESS)
        }
        Command::Monitor {
            resume: Some(fd), ..
        } => testudo_monitor::resume_monitor(*fd),
        Command::Monitor {
            check_resume: true, ..
        } => match testudo_monitor::check_resume() {
            Ok(true) => Ok(ExitCode::SUCCESS),
            Ok(false) => Ok(ExitCode::FAILURE),
            Err(e) => Err(format!("check the handover: {e}")),
        },
        Command::Monitor {
            state_dir: Some(state_dir),
            socket: Some(socket),
            runtime_root,
            ..
        } => {
            // Returns at once in the re-executed process; should the exec fail, the monitor runs
            // with glibc's default malloc settings, only less lean.
            if let Err(e) = testudo_monitor::reexec_with_malloc_tunables() {
                eprintln!("testudo monitor: re-execute with lean malloc settings: {e}");
            }
            let mut config = testudo_monitor::MonitorConfig::new(state_dir.clone(), socket.clone());
            if let Some(root) = runtime_root {
                config.runtime_root = root.clone();
            }
            testudo_monitor::run_monitor(&config).map_err(|e| chain(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Monitor { .. } => Err("monitor needs --state-dir and --socket".into()),
    }
}

fn valid_id(id: &str) -> Result<testudo_runtime::ContainerId, String> {
    testudo_runtime::ContainerId::new(id).map_err(|e| e.to_string())
}

fn warn_all(log: &mut Log, warnings: &[String]) {
    for w in warnings {
        log.warn(w);
    }
}

fn print_json(value: &impl serde::Serialize) -> Outcome {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn create_options(args: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
    }
}

fn delete(root: &StateRoot, id: &str, force: bool) -> Outcome {
    match Container::load(root, id, true) {
        Ok(c) => c.delete(force).map_err(|e| chain(&e))?,
        Err(ControlError::State(testudo_runtime::state::StateError::NotExist(_))) => {
            // A state directory without a record is what a crashed `create` leaves: remove it.
            let removed = container::remove_orphan_state(root, id).map_err(|e| chain(&e))?;
            if !removed && !force {
                return Err(format!("container \"{id}\" does not exist"));
            }
        }
        Err(e) => return Err(chain(&e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for `pid` (a child of ours), forwarding signals to it; window size changes go to its
/// terminal when we proxy one.
fn wait_forwarding(pid: i32, terminal: Option<&Proxy>) -> Result<u8, String> {
    reaper::wait_forwarding(pid, |sig| match (sig, terminal) {
        (libc::SIGWINCH, Some(proxy)) => {
            proxy.resize();
            true
        }
        _ => false,
    })
    .map_err(|e| chain(&e))
}

fn block_forwarded() -> Result<(), String> {
    reaper::block_forwarded().map_err(|e| chain(&e))
}

fn run(
    root: &StateRoot,
    args: &CreateArgs,
    detach: bool,
    keep: bool,
    no_subreaper: bool,
    log: &mut Log,
) -> Outcome {
    let id = valid_id(&args.id)?;
    if !detach {
        // Blocked before the init exists so no signal is lost; the init unblocks them before exec.
        block_forwarded()?;
        if !no_subreaper {
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
        }
    }
    let mut options = create_options(args);
    let console =
        own_console(!detach && options.console_socket.is_none() && wants_terminal(&args.bundle))?;
    if let Some(c) = &console {
        options.console_socket = Some(c.path());
    }
    let created = create_and_start(root, &id, &options).map_err(|e| chain(&e))?;
    warn_all(log, &created.warnings);
    let proxy = console
        .map(|c| c.receive_master().and_then(Proxy::start))
        .transpose()
        .map_err(|e| format!("terminal: {e}"))?;
    if detach {
        return Ok(ExitCode::SUCCESS);
    }
    let code = wait_forwarding(created.pid, proxy.as_ref())?;
    if let Some(p) = proxy {
        p.finish();
    }
    if !keep {
        let c = Container::load(root, id.as_str(), true).map_err(|e| chain(&e))?;
        c.delete(true).map_err(|e| chain(&e))?;
    }
    Ok(ExitCode::from(code))
}

/// Whether the bundle's process asks for a terminal (read cheaply; `create` validates the rest).
fn wants_terminal(bundle: &std::path::Path) -> bool {
    let path = bundle.join("config.json");
    testudo_runtime::spec::read_limited(&path)
        .ok()
        .and_then(|raw| testudo_runtime::spec::parse_spec(&path, &raw).ok())
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

fn own_console(wanted: bool) -> Result<Option<OwnConsole>, String> {
    wanted
        .then(OwnConsole::new)
        .transpose()
        .map_err(|e| format!("console socket: {e}"))
}

fn parse_user(text: &str) -> Result<(u32, Option<u32>), String> {
    let bad = || format!("invalid --user {text:?}: want uid[:gid]");
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g.parse().map_err(|_| bad())?)),
        None => (text, None),
    };
    Ok((uid.parse().map_err(|_| bad())?, gid))
}

fn exec_command(root: &StateRoot, args: &ExecArgs, log: &mut Log) -> Outcome {
    let mut opts = ExecOptions {
        process_file: args.process.clone(),
        args: args.command.clone(),
        env: args.env.clone(),
        cwd: args.cwd.clone(),
        user: args.user.as_deref().map(parse_user).transpose()?,
        additional_gids: args.additional_gids.clone(),
        caps: args.cap.clone(),
        tty: args.tty,
        no_new_privs: args.no_new_privs,
        console_socket: args.console_socket.clone(),
        console_size: None,
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
    };
    if !args.detach {
        block_forwarded()?;
    }
    let process_tty = args.process.as_ref().is_some_and(|p| {
        std::fs::read(p)
            .ok()
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .is_some_and(|v| v["terminal"] == true)
    });
    let console =
        own_console(!args.detach && opts.console_socket.is_none() && (args.tty || process_tty))?;
    if let Some(c) = &console {
        opts.console_socket = Some(c.path());
    }
    let executed = exec(root, &args.id, &opts).map_err(|e| chain(&e))?;
    warn_all(log, &executed.warnings);
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let proxy = console
        .map(|c| c.receive_master().and_then(Proxy::start))
        .transpose()
        .map_err(|e| format!("terminal: {e}"))?;
    let code = wait_forwarding(executed.pid, proxy.as_ref())?;
    if let Some(p) = proxy {
        p.finish();
    }
    Ok(ExitCode::from(code))
}

fn ps(root: &StateRoot, id: &str, format: &str, ps_args: &[String]) -> Outcome {
    let c = Container::load(root, id, false).map_err(|e| chain(&e))?;
    let pids = c.cgroup().pids().map_err(|e| chain(&e))?;
    match format {
        "json" => print_json(&pids),
        "table" => {
            let args: Vec<&str> = if ps_args.is_empty() {
                vec!["-ef"]
            } else {
                ps_args.iter().map(String::as_str).collect()
            };
            let output = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| format!("run ps: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_column = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or("ps output has no PID column")?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{header}");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(pid_column)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    let _ = writeln!(out, "{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("invalid format {other:?}: use table or json")),
    }
}

fn list(root: &StateRoot, format: &str, quiet: bool) -> Outcome {
    let states = container::list(root).map_err(|e| chain(&e))?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match format {
        "json" => print_json(&states),
        "table" => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:<12} {:<10} {:<10} {:<40} {:<30} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                let _ = writeln!(
                    out,
                    "{:<12} {:<10} {:<10} {:<40} {:<30} {}",
                    s.id,
                    s.pid,
                    s.status.as_str(),
                    s.bundle.display(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("invalid format {other:?}: use table or json")),
    }
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid interval {text:?}: use e.g. 5s, 500ms, 1m");
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| (&text[..i], &text[i..]));
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if seconds <= 0.0 || !seconds.is_finite() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

fn events(root: &StateRoot, id: &str, once: bool, interval: &str) -> Outcome {
    let interval = parse_interval(interval)?;
    let c = Container::load(root, id, false).map_err(|e| chain(&e))?;
    loop {
        if c.status() == Status::Stopped {
            return Err("container not running".into());
        }
        let stats = c.cgroup().stats().map_err(|e| chain(&e))?;
        let event = serde_json::json!({"type": "stats", "id": id, "data": stats});
        println!("{event}");
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

fn spec(bundle: &std::path::Path, rootless: bool) -> Outcome {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(format!("{} exists: remove it first", path.display()));
    }
    let mut spec: serde_json::Value =
        serde_json::from_str(include_str!("default-spec.json")).map_err(|e| e.to_string())?;
    if rootless {
        make_rootless(&mut spec);
    }
    let text = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// runc's `spec --rootless` changes: a user namespace mapping the caller to root, no network
/// namespace of its own, the host's /sys, and no devpts gid (unmapped for the caller).
fn make_rootless(spec: &mut serde_json::Value) {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    if let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) {
        linux.remove("resources");
        linux.insert(
            "uidMappings".into(),
            serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]),
        );
        linux.insert(
            "gidMappings".into(),
            serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]),
        );
        if let Some(ns) = linux.get_mut("namespaces").and_then(|n| n.as_array_mut()) {
            ns.retain(|n| n["type"] != "network");
            ns.push(serde_json::json!({"type": "user"}));
        }
    }
    if let Some(mounts) = spec.get_mut("mounts").and_then(|m| m.as_array_mut()) {
        for m in mounts.iter_mut() {
            if m["type"] == "sysfs" {
                *m = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            if let Some(opts) = m.get_mut("options").and_then(|o| o.as_array_mut()) {
                opts.retain(|o| o != "gid=5");
            }
        }
    }
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion", "lazytime",
            "idmap", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
            "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime",
            "relatime", "remount", "rexec", "ridmap", "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime",
            "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
            "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave",
            "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": [
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
                "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
                "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
                "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
                "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
                "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
                "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"
            ],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": {"enabled": testudo_runtime::spec::apparmor_enabled()},
            "selinux": {"enabled": testudo_runtime::spec::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "netDevices": {"enabled": false},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_LOCAL",
                    "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "io.github.testudo.version": env!("CARGO_PKG_VERSION")
        }
    })
}
