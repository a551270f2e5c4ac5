//! `exec`, `attach`, and the foreground `run -i`/`run -t`: a session relays the local standard
//! input to a process and its output to the local standard output and error, until the process
//! ends (testudoctl then exits with its status), the user types the detach keys, or a signal
//! ends testudoctl.
//!
//! With a terminal for the process (`-t`) and one on the local standard input, the local one is
//! in raw mode for the session, its size is sent first and again on every `SIGWINCH`; ctrl-p
//! ctrl-q detaches from `attach` and `run -it`, leaving the container running. Without a local
//! terminal, `-t` still gives the process one, with a warning, and the end of the local input
//! is typed on it as ctrl-d. In an exec session `SIGINT`, `SIGTERM` and `SIGHUP` end the
//! session (restoring the terminal) with status 128 + N, and the daemon kills the exec process;
//! `attach` and `run -i/-t` pass the signals a foreground `run` passes on to the container
//! instead (docker's `--sig-proxy`), and end when it does.
//!
//! Standard input is read by a thread of its own, not by tokio: a blocking read of a terminal
//! cannot be cancelled, and a thread left in it does not hold up the exit.

use std::io::Write;
use std::os::fd::BorrowedFd;

use clap::Args;
use testudo_client::containers::{ContainerConfig, ExecStart, OutputStream, TerminalSize};
use testudo_client::{Client, Code, ProcessEvent, ProcessInput, ProcessOutput};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::signals::{self, Signals};
use crate::terminal::{self, DetachKeys, RawMode, Typed};
use crate::CtlError;

/// The flags of `exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Send standard input to the process (without it, the process reads end of file)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the process a terminal
    #[arg(short = 't', long)]
    tty: bool,
    /// An environment variable, KEY=VALUE; repeatable
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The user: uid or uid:gid
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// The working directory in the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Id or name of a running container
    container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The flags of `attach`.
#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// Do not send standard input to the container
    #[arg(long)]
    no_stdin: bool,
    /// Id or name of a created or running container
    container: String,
}

/// What a session relays.
#[derive(Debug, Clone, Copy)]
struct Session {
    /// Local standard input goes to the process.
    stdin: bool,
    /// The process has a terminal.
    tty: bool,
    /// ctrl-p ctrl-q detaches (only where the local terminal is raw, as it must be for the
    /// keys to reach testudoctl).
    detach_keys: bool,
}

/// ctrl-d, a terminal's end-of-file character (`VEOF`) unless the process changed it.
const END_OF_FILE: u8 = 0x04;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The process ended with this status.
    Exited(i32),
    /// The user typed the detach keys.
    Detached,
    /// testudoctl got this signal.
    Signalled(i32),
}

impl Ended {
    /// The status testudoctl exits with.
    fn status(self) -> u8 {
        let code = match self {
            Ended::Exited(code) => code,
            Ended::Detached => 0,
            Ended::Signalled(signal) => 128 + signal,
        };
        u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX)
    }
}

/// `testudoctl exec`: exits with the process's status.
pub(crate) async fn exec(client: &mut Client, ns: &str, args: ExecArgs) -> Result<u8, CtlError> {
    let session = Session {
        stdin: args.interactive,
        tty: args.tty,
        detach_keys: false,
    };
    warn_without_terminal(session);
    let start = ExecStart {
        namespace: ns.to_owned(),
        container: args.container,
        args: args.command,
        env: args.env,
        cwd: args.workdir.unwrap_or_default(),
        user: args.user.unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive,
        // Given at the start too, so that `exec -t C stty size` already sees it.
        size: args
            .tty
            .then(local_size)
            .flatten()
            .map(|(columns, rows)| TerminalSize {
                columns: columns.into(),
                rows: rows.into(),
            }),
    };
    let (input, output) = client.exec(start).await?;
    Ok(relay(input, output, session, None).await?.status())
}

/// `testudoctl attach`: exits with the container's status, or 0 once detached.
pub(crate) async fn attach(
    client: &mut Client,
    ns: &str,
    args: AttachArgs,
) -> Result<u8, CtlError> {
    let config = client
        .inspect_container(ns, &args.container)
        .await?
        .config
        .unwrap_or_default();
    let session = Session {
        stdin: config.stdin && !args.no_stdin,
        tty: config.tty,
        detach_keys: true,
    };
    let proxy = SignalProxy {
        client: client.clone(),
        ns: ns.to_owned(),
        container: args.container.clone(),
    };
    let (input, output) = client.attach(ns, &args.container).await?;
    Ok(relay(input, output, session, Some(proxy)).await?.status())
}

/// The foreground `run -i` or `run -t`: creates the container, attaches, then starts it, so
/// that none of its output is lost; exits with its status. With `-i` and no terminal its input
/// closes when the local one ends (`stdin_once`), so `echo x | testudoctl run -i IMAGE cat`
/// ends. With `rm` it is deleted once it has ended; after a detach, the daemon deletes it
/// when it stops (`auto_remove`).
pub(crate) async fn run_attached(
    client: &mut Client,
    ns: &str,
    mut config: ContainerConfig,
    rm: bool,
) -> Result<u8, CtlError> {
    config.stdin_once = config.stdin && !config.tty;
    // A detached container is removed by the daemon once it stops.
    config.auto_remove = rm;
    let session = Session {
        stdin: config.stdin,
        tty: config.tty,
        detach_keys: true,
    };
    warn_without_terminal(session);
    let id = client.create_container(ns, config).await?;
    let proxy = SignalProxy {
        client: client.clone(),
        ns: ns.to_owned(),
        container: id.clone(),
    };
    let ended = async {
        let (input, output) = client.attach(ns, &id).await?;
        client.start_container(ns, &id).await?;
        relay(input, output, session, Some(proxy)).await
    }
    .await;
    if rm && !matches!(ended, Ok(Ended::Detached)) {
        // Deleted here too, so that it is gone when testudoctl exits; the daemon's own removal
        // may have come first.
        match client.delete_container(ns, &id, true).await {
            Err(e) if e.code() == Some(Code::NotFound) => {}
            other => other?,
        }
    }
    Ok(ended?.status())
}

/// Warns that `-i -t` got no terminal on standard input: the process gets a terminal all the
/// same, without raw mode, size or detach keys.
fn warn_without_terminal(session: Session) {
    if session.tty && session.stdin && !terminal::is_terminal(rustix::stdio::stdin()) {
        eprintln!("testudoctl: warning: standard input is not a terminal");
    }
}

/// Where the signals testudoctl gets go during an attached session with a container.
struct SignalProxy {
    client: Client,
    ns: String,
    container: String,
}

/// Relays until the process ends, the user detaches or a signal comes; with `proxy`, signals
/// go to the container instead of ending the session. The raw mode guard is held here, so
/// every way out of this function restores the terminal.
async fn relay(
    input: ProcessInput,
    mut output: ProcessOutput,
    session: Session,
    mut proxy: Option<SignalProxy>,
) -> Result<Ended, CtlError> {
    let stdin = rustix::stdio::stdin();
    let local_terminal = session.tty && terminal::is_terminal(stdin);
    let mut signals = Signals::watch(if proxy.is_some() {
        &signals::PROXIED
    } else {
        &signals::ENDING
    })?;
    let raw = (local_terminal && session.stdin)
        .then(|| RawMode::enable(stdin).map_err(CtlError::Terminal))
        .transpose()?;
    let detach_keys = session.detach_keys && raw.is_some();
    let size_of = if terminal::is_terminal(stdin) {
        stdin
    } else {
        rustix::stdio::stdout()
    };
    let mut window_changes = if session.tty {
        send_size(&input, size_of).await;
        Some(signal(SignalKind::window_change()).map_err(CtlError::Signals)?)
    } else {
        None
    };
    let mut typed = session.stdin.then(read_stdin);
    let mut input = Some(input);
    let mut keys = DetachKeys::default();
    loop {
        tokio::select! {
            event = output.next() => match event? {
                Some(ProcessEvent::Output { stream, data }) => write_output(stream, &data)?,
                Some(ProcessEvent::Exit(code)) => return Ok(Ended::Exited(code)),
                None => return Err(CtlError::NoExit),
            },
            bytes = next_typed(&mut typed) => {
                let Some(bytes) = bytes else {
                    typed = None;
                    if session.tty {
                        // A terminal cannot be closed: the end of (piped) local input is typed
                        // as its end-of-file character, and resizes may still follow.
                        if let Some(to) = &input {
                            let _ = to.write(&[END_OF_FILE]).await;
                        }
                    } else {
                        // The end of local input closes the process's.
                        input = None;
                    }
                    continue;
                };
                let (bytes, detach) = if detach_keys {
                    match keys.scan(&bytes) {
                        Typed::Input(bytes) => (bytes, false),
                        Typed::Detach(bytes) => (bytes, true),
                    }
                } else {
                    (bytes, false)
                };
                if let Some(to) = &input {
                    if !bytes.is_empty() && to.write(&bytes).await.is_err() {
                        // The call is over; its end (and the exit) comes as output.
                        typed = None;
                        input = None;
                    }
                }
                if detach {
                    return Ok(Ended::Detached);
                }
            },
            Some(()) = next_change(&mut window_changes) => {
                if let Some(to) = &input {
                    send_size(to, size_of).await;
                }
            },
            signal = signals.next() => match &mut proxy {
                Some(to) => signals::pass_on(&mut to.client, &to.ns, &to.container, signal).await,
                None => return Ok(Ended::Signalled(signal)),
            },
        }
    }
}

/// The size of the local terminal: standard input's, else standard output's.
fn local_size() -> Option<(u16, u16)> {
    terminal::size(rustix::stdio::stdin()).or_else(|| terminal::size(rustix::stdio::stdout()))
}

/// Sends the size of terminal `fd`, when it is one; a call that is over needs none.
async fn send_size(input: &ProcessInput, fd: BorrowedFd<'_>) {
    if let Some((columns, rows)) = terminal::size(fd) {
        let _ = input.resize(columns, rows).await;
    }
}

async fn next_typed(typed: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match typed {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_change(changes: &mut Option<Signal>) -> Option<()> {
    match changes {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Local standard input, read by a thread; the channel closes at its end.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match rustix::io::read(rustix::stdio::stdin(), &mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    if sender.blocking_send(buffer[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    eprintln!("testudoctl: cannot read standard input: {e}");
                    return;
                }
            }
        }
    });
    receiver
}

fn write_output(stream: OutputStream, data: &[u8]) -> Result<(), CtlError> {
    let written = match stream {
        OutputStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data).and_then(|()| err.flush())
        }
        OutputStream::Stdout | OutputStream::Unspecified => {
            let mut out = std::io::stdout().lock();
            out.write_all(data).and_then(|()| out.flush())
        }
    };
    written.map_err(CtlError::Output)
}
