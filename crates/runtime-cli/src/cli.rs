//! The command line, runc-compatible because podman, conmon and containerd's shim build it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::log::LogFormat;

/// testudo: an OCI container runtime.
#[derive(Debug, Parser)]
#[command(name = "testudo", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0"), disable_help_subcommand = true)]
pub(crate) struct Cli {
    /// Directory for container state.
    #[arg(long, default_value = "/run/testudo")]
    pub(crate) root: PathBuf,
    /// Append log lines to this file.
    #[arg(long)]
    pub(crate) log: Option<PathBuf>,
    /// Format of the log file.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
    /// Log more.
    #[arg(long)]
    pub(crate) debug: bool,
    /// Use the systemd cgroup driver.
    #[arg(long)]
    pub(crate) systemd_cgroup: bool,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, hide = true)]
    pub(crate) criu: Option<String>,
    /// Accepted for runc compatibility (true, false or auto).
    #[arg(long, hide = true)]
    pub(crate) rootless: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    pub(crate) bundle: PathBuf,
    /// Unix socket that receives the terminal's master descriptor.
    #[arg(long)]
    pub(crate) console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long)]
    pub(crate) pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    #[arg(long)]
    pub(crate) no_pivot: bool,
    /// Do not create a session keyring for the container.
    #[arg(long)]
    pub(crate) no_new_keyring: bool,
    /// Pass this many descriptors after stdio to the container.
    #[arg(long, default_value_t = 0)]
    pub(crate) preserve_fds: u32,
    /// Container id.
    pub(crate) id: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a container (its init waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container is started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        /// Do not become a subreaper of the container's orphans.
        #[arg(long)]
        no_subreaper: bool,
    },
    /// Print a container's state as JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal to a container's init (or every process with --all).
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        /// Container id.
        id: String,
        /// Signal name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it still runs.
        #[arg(short, long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Container id.
        id: String,
        /// Options passed to ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Print resource usage events.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events.
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Container id.
        id: String,
    },
    /// Change the resource limits of a running container.
    Update(UpdateArgs),
    /// Write a default config.json.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for a user without root privileges.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the features this runtime implements, as JSON.
    Features,
    /// Start a container monitor (for testudod): it detaches, and this command returns once it
    /// listens on its socket.
    Monitor {
        /// The monitor's state directory.
        #[arg(long, required_unless_present_any = ["resume", "check_resume"])]
        state_dir: Option<PathBuf>,
        /// The control socket to listen on.
        #[arg(long, required_unless_present_any = ["resume", "check_resume"])]
        socket: Option<PathBuf>,
        /// The runtime state root of its containers [default: <state dir>/runtime].
        #[arg(long)]
        runtime_root: Option<PathBuf>,
        /// Resume a monitor that upgraded itself to this binary, from the handover in this
        /// descriptor (run by the monitor itself).
        #[arg(long, value_name = "FD", conflicts_with_all = ["state_dir", "socket", "check_resume"])]
        resume: Option<i32>,
        /// Check that this binary can resume the handover on stdin, and say so on stdout (run by
        /// an upgrading monitor before it re-executes this binary).
        #[arg(long, conflicts_with_all = ["state_dir", "socket"])]
        check_resume: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// process.json to execute.
    #[arg(short, long)]
    pub(crate) process: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub(crate) tty: bool,
    /// Return once the process runs.
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// File to write the process's pid to.
    #[arg(long)]
    pub(crate) pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master descriptor.
    #[arg(long)]
    pub(crate) console_socket: Option<PathBuf>,
    /// Environment variable (KEY=VALUE), repeatable.
    #[arg(short, long)]
    pub(crate) env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    pub(crate) cwd: Option<String>,
    /// uid[:gid].
    #[arg(short, long)]
    pub(crate) user: Option<String>,
    /// Supplementary group, repeatable.
    #[arg(short = 'g', long)]
    pub(crate) additional_gids: Vec<u32>,
    /// Capability to add, repeatable.
    #[arg(short, long)]
    pub(crate) cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub(crate) no_new_privs: bool,
    /// Pass this many descriptors after stdio.
    #[arg(long, default_value_t = 0)]
    pub(crate) preserve_fds: u32,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub(crate) process_label: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub(crate) apparmor: Option<String>,
    /// Container id.
    pub(crate) id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// LinuxResources JSON file ("-" for stdin).
    #[arg(short, long)]
    pub(crate) resources: Option<PathBuf>,
    /// Block IO weight.
    #[arg(long)]
    pub(crate) blkio_weight: Option<u16>,
    /// CPU CFS period (µs).
    #[arg(long)]
    pub(crate) cpu_period: Option<u64>,
    /// CPU CFS quota (µs).
    #[arg(long)]
    pub(crate) cpu_quota: Option<i64>,
    /// CPU shares.
    #[arg(long)]
    pub(crate) cpu_share: Option<u64>,
    /// CPU realtime period (µs).
    #[arg(long)]
    pub(crate) cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (µs).
    #[arg(long)]
    pub(crate) cpu_rt_runtime: Option<i64>,
    /// CPUs allowed.
    #[arg(long)]
    pub(crate) cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long)]
    pub(crate) cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(long)]
    pub(crate) memory: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    pub(crate) memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long)]
    pub(crate) memory_swap: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub(crate) pids_limit: Option<i64>,
    /// Accepted for runc compatibility; kernel memory limits are not enforced by current kernels.
    #[arg(long, hide = true)]
    pub(crate) kernel_memory: Option<String>,
    /// Container id.
    pub(crate) id: String,
}
