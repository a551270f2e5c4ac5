//! Supervision: one task per container that waits on its monitor for each exit, records it,
//! tells the waiters and the event bus, and restarts the container when its policy says so.
//!
//! - The task holds a `Wait` on the monitor's socket over tokio's own unix stream (framed with
//!   the protocol crate's [`encode`] and [`FrameDecoder`]), so dropping the service or the
//!   runtime cancels it: nothing blocks a thread of the blocking pool.
//! - Each exit is recorded under the container's lock, so it is ordered with stop, kill and
//!   delete. A monitor that cannot be reached leaves the exit record it wrote on disk; if there
//!   is none, the exit is recorded as [`UNKNOWN_EXIT_CODE`] (as containerd and docker do).
//! - A restart goes through the same monitor and keeps the container's id, bundle, mounted root
//!   filesystem and log file: the monitor deletes the old run (runtime state, cgroup), creates
//!   and starts a new one. The monitor protocol needs nothing more.
//! - Backoff as docker: 100 ms before the first restart, doubled each time up to a minute, and
//!   back to 100 ms after a run that lasted 10 s.
//! - Stop and Kill set `stop_requested` in the record before they signal, so the exit that
//!   follows is not restarted, even by a daemon that restarts meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use testudo_monitor_protocol::{
    decode, encode, read_record, ClientError, ErrorKind as MonitorErrorKind, ExitStatus,
    FrameDecoder, Request, Response, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::cgroups::CgroupDirs;
use super::{
    call_monitor, create_message, monitor_paths, monitor_paths_of, paths_for, rfc3339, status,
    sync_record, teardown, ContainerError, ContainerServiceConfig, CreateRequest, Made,
    RestartPolicy,
};
use crate::events::{Event, EventBus, EventKind};
use crate::images::ImageService;
use crate::networks::NetworkService;
use crate::state::{ContainerRecord, Name, StateDb};

/// The exit code recorded when how a container ended cannot be known (its monitor vanished
/// without an exit record).
pub const UNKNOWN_EXIT_CODE: i32 = 255;

/// The first restart's delay.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run this long resets the delay to [`FIRST_BACKOFF`].
const RESET_AFTER: Duration = Duration::from_secs(10);
/// How long to wait before asking again a monitor whose wait failed while the container runs.
const RETRY_WAIT: Duration = Duration::from_millis(200);

/// One lock per container (`<namespace>/<id>`): operations that change a container are
/// serialised, different containers proceed in parallel.
#[derive(Debug, Default)]
pub(super) struct Locks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn key(namespace: &Name, id: &str) -> String {
    format!("{namespace}/{id}")
}

impl Locks {
    /// Waits for, and holds, the lock of container `id`.
    pub(super) async fn lock(
        &self,
        namespace: &Name,
        id: &str,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key(namespace, id))
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Drops the lock of a deleted container.
    pub(super) fn forget(&self, namespace: &Name, id: &str) {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(namespace, id));
    }
}

/// How a run ended, as waiters learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exit {
    /// The exit status, or 128 + N when killed by signal N.
    pub(super) code: i32,
    /// When it ended.
    pub(super) at: SystemTime,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        Self {
            code: status.termination.shell_code(),
            at: status.at,
        }
    }
}

/// Whether `policy` restarts a container whose run ended with `code` after `restarts` restarts.
pub(super) fn restart_wanted(policy: RestartPolicy, code: i32, restarts: u32) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        // Every restart of this policy follows a failure, so the count is the run of failures.
        RestartPolicy::OnFailure { max_retries } => {
            code != 0 && (max_retries == 0 || restarts < max_retries)
        }
    }
}

/// The delay before the next restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(FIRST_BACKOFF)
    }

    /// The delay to wait now, after a run that lasted `ran_for`; doubles the next one.
    fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.0 = FIRST_BACKOFF;
        }
        let now = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        now
    }
}

/// The request a record was created with.
fn request_of(record: &ContainerRecord) -> CreateRequest {
    serde_json::from_value(record.config.clone()).unwrap_or_default()
}

/// The restart policy a record was created with.
fn policy_of(record: &ContainerRecord) -> RestartPolicy {
    request_of(record).restart
}

/// Whether the record is stopped for good and asked to be deleted then.
fn removal_due(record: &ContainerRecord) -> bool {
    record.status == status::STOPPED && !restart_due(record) && request_of(record).auto_remove
}

/// Whether the record's last exit is one its policy restarts.
fn restart_due(record: &ContainerRecord) -> bool {
    record.status == status::STOPPED
        && !record.stop_requested
        && restart_wanted(
            policy_of(record),
            record.exit_code.unwrap_or(UNKNOWN_EXIT_CODE),
            record.restart_count,
        )
}

/// What a supervision task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Wait for the current run to end.
    Wait,
    /// Restart after the backoff; the last run lasted this long.
    Restart(Duration),
    /// Delete the container (it asked for that once stopped for good).
    Remove,
    /// Nothing: the container is gone or stays stopped.
    Done,
}

/// What the service keeps per container for supervision.
#[derive(Debug)]
struct Watch {
    /// Every recorded exit is sent here; dropped when the container is deleted.
    exits: watch::Sender<Option<Exit>>,
    task: Option<AbortHandle>,
}

/// The supervision of every container of a service.
#[derive(Debug)]
pub(super) struct Supervisor {
    config: ContainerServiceConfig,
    state: Arc<StateDb>,
    images: Arc<ImageService>,
    networks: Arc<NetworkService>,
    pub(super) locks: Locks,
    pub(super) events: EventBus,
    pub(super) cgroups: CgroupDirs,
    watches: Mutex<HashMap<String, Watch>>,
}

impl Supervisor {
    pub(super) fn new(
        config: ContainerServiceConfig,
        state: Arc<StateDb>,
        images: Arc<ImageService>,
        networks: Arc<NetworkService>,
    ) -> Self {
        let cgroups = CgroupDirs::detect(&config.cgroup_parent);
        Self {
            config,
            state,
            events: images.events().clone(),
            images,
            networks,
            locks: Locks::default(),
            cgroups,
            watches: Mutex::new(HashMap::new()),
        }
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watch>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts supervising container `id` from `step`, unless a task already does.
    pub(super) fn supervise(self: &Arc<Self>, namespace: &Name, id: &str, step: Step) {
        let mut watches = self.watches();
        let watch = watches.entry(key(namespace, id)).or_insert_with(|| Watch {
            exits: watch::channel(None).0,
            task: None,
        });
        if step == Step::Done || watch.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let task = tokio::spawn(self.clone().run(namespace.clone(), id.to_owned(), step));
        watch.task = Some(task.abort_handle());
    }

    /// A receiver of container `id`'s exits from now on; `None` if it is not supervised (it has
    /// been deleted).
    pub(super) fn subscribe(
        &self,
        namespace: &Name,
        id: &str,
    ) -> Option<watch::Receiver<Option<Exit>>> {
        self.watches()
            .get(&key(namespace, id))
            .map(|w| w.exits.subscribe())
    }

    /// Ends the supervision of a deleted container; its waiters learn that it is gone.
    pub(super) fn forget(&self, namespace: &Name, id: &str) {
        if let Some(watch) = self.watches().remove(&key(namespace, id)) {
            if let Some(task) = watch.task {
                task.abort();
            }
        }
    }

    /// Deletes container `record` with everything it has on the host, its record, its lock
    /// and its supervision (the task that calls this ends with it); the caller holds its lock.
    /// In a cell it also holds the cell's lock, so that the cell's monitor, stopped if this
    /// was its last container, is not stopped under a container being created in it.
    pub(super) async fn remove(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let (namespace, id) = (&record.namespace, record.id.as_str());
        let _cell_guard = match &record.cell {
            Some(cell) => Some(self.locks.lock(namespace, cell).await),
            None => None,
        };
        let paths = paths_for(&self.config, record);
        teardown(
            &self.images,
            &self.networks,
            &self.cgroups,
            id,
            &paths,
            &Made::everything(),
        )
        .await?;
        self.state.remove_container(namespace, id)?;
        self.locks.forget(namespace, id);
        self.events.publish(Event::container(
            namespace.as_str(),
            id,
            EventKind::ContainerDeleted {
                name: record.name.to_string(),
                image: record.image.clone(),
            },
        ));
        self.forget(namespace, id);
        Ok(())
    }

    /// Removes a container that asked for it once stopped; a failure is logged, and the next
    /// daemon start tries again.
    async fn remove_stopped(&self, record: &ContainerRecord) {
        match self.remove(record).await {
            Ok(()) => tracing::info!(container_id = %record.id, namespace = %record.namespace,
                "removed after its exit"),
            Err(e) => tracing::warn!(container_id = %record.id, namespace = %record.namespace,
                error = %e, "cannot remove the container after its exit"),
        }
    }

    /// Ends every task (the service is going away; the monitors carry on).
    pub(super) fn abort_all(&self) {
        for watch in self.watches().values() {
            if let Some(task) = &watch.task {
                task.abort();
            }
        }
    }

    /// Where supervision of a stored record starts after a daemon restart.
    pub(super) fn step_for(record: &ContainerRecord) -> Step {
        match record.status.as_str() {
            status::CREATED | status::RUNNING => Step::Wait,
            _ if restart_due(record) => Step::Restart(Duration::ZERO),
            _ if removal_due(record) => Step::Remove,
            _ => Step::Done,
        }
    }

    async fn run(self: Arc<Self>, namespace: Name, id: String, mut step: Step) {
        let mut backoff = Backoff::new();
        loop {
            step = match step {
                Step::Wait => {
                    let (socket, _) = self.paths(&namespace, &id);
                    let waited = wait_exit(&socket, &id).await;
                    self.settle(&namespace, &id, waited).await
                }
                Step::Restart(ran_for) => {
                    tokio::time::sleep(backoff.next(ran_for)).await;
                    self.restart(&namespace, &id).await
                }
                Step::Remove => {
                    let _guard = self.locks.lock(&namespace, &id).await;
                    if let Ok(record) = self.state.container(&namespace, &id) {
                        self.remove_stopped(&record).await;
                    }
                    Step::Done
                }
                Step::Done => return,
            }
        }
    }

    /// The socket and the state directory of container `id`'s monitor (its cell's, if it is
    /// in one).
    fn paths(&self, namespace: &Name, id: &str) -> (PathBuf, PathBuf) {
        match self.state.container(namespace, id) {
            Ok(record) => monitor_paths_of(&self.config, &record),
            Err(_) => monitor_paths(&self.config, namespace, id),
        }
    }

    /// Records how the run ended that `waited` reports, and says what comes next.
    async fn settle(
        &self,
        namespace: &Name,
        id: &str,
        waited: Result<ExitStatus, ClientError>,
    ) -> Step {
        let guard = self.locks.lock(namespace, id).await;
        let Ok(record) = self.state.container(namespace, id) else {
            return Step::Done;
        };
        let exit = match waited {
            Ok(status) => Exit::from(status),
            Err(e) => match self.exit_without_wait(namespace, id, &e).await {
                Some(exit) => exit,
                None => {
                    drop(guard);
                    tokio::time::sleep(RETRY_WAIT).await;
                    return Step::Wait;
                }
            },
        };
        let updated = self.state.update_container(namespace, id, |r| {
            r.status = status::STOPPED.to_owned();
            r.exit_code = Some(exit.code);
            r.finished = Some(rfc3339(exit.at));
        });
        let record = match updated {
            Ok(updated) => updated,
            Err(e) => {
                tracing::warn!(container_id = %id, error = %e, "cannot record an exit");
                record
            }
        };
        tracing::info!(container_id = %id, namespace = %namespace, exit_code = exit.code, "exited");
        if let Some(watch) = self.watches().get(&key(namespace, id)) {
            watch.exits.send_replace(Some(exit));
        }
        if self
            .cgroups
            .oom_kills(&paths_for(&self.config, &record).cgroup_level)
            > 0
        {
            self.events.publish(Event::container(
                namespace.as_str(),
                id,
                EventKind::ContainerOom,
            ));
        }
        self.events.publish(Event::container(
            namespace.as_str(),
            id,
            EventKind::ContainerExited {
                exit_code: exit.code,
                finished: exit.at,
            },
        ));
        if removal_due(&record) {
            self.remove_stopped(&record).await;
            return Step::Done;
        }
        if !restart_due(&record) {
            return Step::Done;
        }
        let started = record
            .started
            .as_deref()
            .and_then(|s| humantime::parse_rfc3339(s).ok());
        let ran_for = started
            .and_then(|s| exit.at.duration_since(s).ok())
            .unwrap_or_default();
        Step::Restart(ran_for)
    }

    /// How the run ended when the monitor's wait failed: from the monitor's exit record on
    /// disk, or unknown; `None` if the monitor says the container still runs.
    async fn exit_without_wait(
        &self,
        namespace: &Name,
        id: &str,
        error: &ClientError,
    ) -> Option<Exit> {
        let (socket, monitor_dir) = self.paths(namespace, id);
        if !matches!(error, ClientError::Connect { .. } | ClientError::Refused(_)) {
            let container = id.to_owned();
            let state = call_monitor(id, &socket, move |c| c.state(&container)).await;
            if state.is_ok_and(|s| s.exit.is_none()) {
                return None;
            }
        }
        match read_record(&monitor_dir, id) {
            Ok(Some(record)) if record.exit.is_some() => record.exit.map(Exit::from),
            read => {
                let read = read.err().map(|e| e.to_string());
                tracing::warn!(container_id = %id, namespace = %namespace, error = %error,
                    record_error = ?read, "the monitor lost the container without an exit record; \
                    recording an unknown exit");
                Some(Exit {
                    code: UNKNOWN_EXIT_CODE,
                    at: SystemTime::now(),
                })
            }
        }
    }

    /// Starts a new run of the container, unless Stop, Kill or Delete came first.
    async fn restart(&self, namespace: &Name, id: &str) -> Step {
        let _guard = self.locks.lock(namespace, id).await;
        let Ok(record) = self.state.container(namespace, id) else {
            return Step::Done;
        };
        // The run is deleted from the cell's monitor before the next is created: a removal of
        // another container must not find the monitor empty in between and stop it.
        let _cell_guard = match &record.cell {
            Some(cell) => Some(self.locks.lock(namespace, cell).await),
            None => None,
        };
        if !restart_due(&record) {
            return Step::Done;
        }
        let paths = paths_for(&self.config, &record);
        let request = request_of(&record);
        let create = create_message(id, &paths, &request);
        let container = id.to_owned();
        let restarted = call_monitor(id, &paths.socket, move |client| {
            match client.delete(&container, false) {
                Err(e) if e.kind() == Some(MonitorErrorKind::NotFound) => {}
                other => other?,
            }
            client.create(create)?;
            client.start(&container)?;
            client.state(&container)
        })
        .await;
        let monitor = match restarted {
            Ok(monitor) => monitor,
            Err(e) => {
                tracing::warn!(container_id = %id, namespace = %namespace, error = %e,
                    "restart failed; the container stays stopped");
                return Step::Done;
            }
        };
        let updated = self.state.update_container(namespace, id, |r| {
            sync_record(r, &monitor);
            r.restart_count += 1;
        });
        match updated {
            Ok(record) => {
                tracing::info!(container_id = %id, namespace = %namespace,
                    restart_count = record.restart_count, "restarted");
                self.events.publish(Event::container(
                    namespace.as_str(),
                    id,
                    EventKind::ContainerStarted {
                        pid: record.pid.unwrap_or(0),
                    },
                ));
                Step::Wait
            }
            Err(e) => {
                tracing::warn!(container_id = %id, error = %e, "cannot record a restart");
                Step::Wait
            }
        }
    }
}

/// Waits on the monitor at `socket` until container `id` has exited.
async fn wait_exit(socket: &Path, id: &str) -> Result<ExitStatus, ClientError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    let mut decoder = FrameDecoder::new();
    let hello = Request::Hello {
        version: PROTOCOL_VERSION,
    };
    match call(&mut stream, &mut decoder, &hello).await? {
        Response::Hello { .. } => {}
        Response::Error(reply) => return Err(ClientError::Refused(reply)),
        other => return Err(unexpected("hello", &other)),
    }
    let wait = Request::Wait { id: id.to_owned() };
    match call(&mut stream, &mut decoder, &wait).await? {
        Response::Exited(status) => Ok(status),
        Response::Error(reply) => Err(ClientError::Refused(reply)),
        other => Err(unexpected("wait", &other)),
    }
}

/// Sends one request and reads its response.
async fn call(
    stream: &mut UnixStream,
    decoder: &mut FrameDecoder,
    request: &Request,
) -> Result<Response, ClientError> {
    stream
        .write_all(&encode(request)?)
        .await
        .map_err(ClientError::Io)?;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(body) = decoder.next_frame()? {
            return Ok(decode(body)?);
        }
        let n = stream.read(&mut chunk).await.map_err(ClientError::Io)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        decoder.push(&chunk[..n]);
    }
}

fn unexpected(request: &'static str, response: &Response) -> ClientError {
    ClientError::Unexpected {
        request,
        response: serde_json::to_string(response).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_failure_restarts_failures_up_to_its_limit_and_always_restarts_everything() {
        let on_failure = |max_retries| RestartPolicy::OnFailure { max_retries };
        assert!(!restart_wanted(RestartPolicy::No, 1, 0));
        assert!(restart_wanted(RestartPolicy::Always, 0, 100));
        assert!(restart_wanted(on_failure(2), 1, 1));
        assert!(!restart_wanted(on_failure(2), 1, 2));
        assert!(!restart_wanted(on_failure(2), 0, 0));
        assert!(restart_wanted(on_failure(0), 137, 1000));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute_and_resets_after_a_long_run() {
        let mut backoff = Backoff::new();
        let short = Duration::from_secs(1);
        let delays: Vec<u128> = (0..4).map(|_| backoff.next(short).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        for _ in 0..20 {
            backoff.next(short);
        }
        assert_eq!(backoff.next(short), MAX_BACKOFF);
        assert_eq!(backoff.next(RESET_AFTER), FIRST_BACKOFF);
        assert_eq!(backoff.next(short), FIRST_BACKOFF * 2);
    }
}
