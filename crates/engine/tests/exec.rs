//! Exec and attach through the container service: real containers under real `testudo monitor`
//! processes, their stdio as async handles.

#![allow(clippy::unwrap_used)]

mod common;

use common::{container_service, Services};
use tempfile::TempDir;
use testudo_engine::containers::{
    ContainerService, CreateRequest, ExecRequest, OutputStream, ProcessIo,
};
use testudo_test_support::{require_root, Registry};
use tokio::io::AsyncWriteExt;

const NS: &str = "tenant";

/// A registry holding busybox, the services on a temporary root, and namespace [`NS`].
struct Fixture {
    _registry: Registry,
    dir: TempDir,
    containers: ContainerService,
    reference: String,
}

impl Fixture {
    async fn new() -> Self {
        let Services {
            registry,
            dir,
            state,
            images,
            reference,
        } = Services::start(NS).await;
        let containers = container_service(dir.path(), &images, &state);
        Self {
            _registry: registry,
            dir,
            containers,
            reference,
        }
    }

    /// Creates and starts a container running `script`; returns its id.
    async fn run(&self, script: &str, change: impl FnOnce(&mut CreateRequest)) -> String {
        let mut request = CreateRequest {
            image: self.reference.clone(),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            ..CreateRequest::default()
        };
        change(&mut request);
        let created = self.containers.create(NS, request).await.unwrap();
        self.containers.start(NS, &created.id).await.unwrap();
        created.id
    }
}

/// Output until `needle` has been seen on `stream`; returns what that stream carried.
async fn read_until(io: &mut ProcessIo, stream: OutputStream, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        let chunk = io.output.recv().await.unwrap_or_else(|| {
            panic!("output ended before {needle:?}; read {text:?}");
        });
        if chunk.stream == stream {
            text.push_str(&String::from_utf8_lossy(&chunk.data));
        }
    }
    text
}

/// Everything left of each stream, until the output ends.
async fn read_to_end(io: &mut ProcessIo) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(chunk) = io.output.recv().await {
        let text = String::from_utf8_lossy(&chunk.data);
        match chunk.stream {
            OutputStream::Stdout => out.push_str(&text),
            OutputStream::Stderr => err.push_str(&text),
        }
    }
    (out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_tagged_output_takes_stdin_and_reports_the_exit_code() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let id = f.run("sleep 1000", |_| {}).await;
    let mut io = f
        .containers
        .exec(
            NS,
            &id,
            ExecRequest {
                args: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "read x; echo \"out $x $(id -u) $(pwd)\"; echo err >&2; exit 9".into(),
                ],
                cwd: Some("/tmp".into()),
                user: Some((1000, None)),
                stdin: true,
                ..ExecRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(io.resize.is_none());
    let mut stdin = io.stdin.take().unwrap();
    stdin.write_all(b"hi\n").await.unwrap();
    drop(stdin);
    let (out, err) = read_to_end(&mut io).await;
    assert_eq!(out, "out hi 1000 /tmp\n");
    assert_eq!(err, "err\n");
    assert_eq!(io.exit.await.unwrap(), 9);
    f.containers.delete(NS, &id, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_tty_runs_on_a_terminal_that_resizes() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let id = f.run("sleep 1000", |_| {}).await;
    let mut io = f
        .containers
        .exec(
            NS,
            &id,
            ExecRequest {
                args: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "tty; read x; stty size".into(),
                ],
                tty: true,
                ..ExecRequest::default()
            },
        )
        .await
        .unwrap();
    let first = read_until(&mut io, OutputStream::Stdout, "\n").await;
    assert!(first.starts_with("/dev/pts/"), "{first:?}");
    io.resize.as_ref().unwrap().resize(20, 70).unwrap();
    io.stdin.as_mut().unwrap().write_all(b"\n").await.unwrap();
    let (out, err) = read_to_end(&mut io).await;
    assert!(out.contains("20 70"), "{out:?}");
    assert!(err.is_empty());
    assert_eq!(io.exit.await.unwrap(), 0);
    let error = f
        .containers
        .exec(NS, &id, ExecRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        testudo_engine::error::Kind::kind(&error),
        testudo_engine::error::ErrorKind::InvalidArgument,
        "{error}"
    );
    f.containers.delete(NS, &id, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_container_on_a_terminal_types_on_it_and_learns_its_exit() {
    if !require_root() {
        return;
    }
    let f = Fixture::new().await;
    let id = f
        .run("echo ready; read x; echo \"typed $x\"; exit 3", |r| {
            r.tty = true;
        })
        .await;
    let mut io = f.containers.attach(NS, &id).await.unwrap();
    assert!(io.resize.is_some());
    // Whether "ready" came before the attach or not, the log has it; the typing is seen live.
    io.stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .await
        .unwrap();
    let (out, _) = read_to_end(&mut io).await;
    assert!(out.contains("typed hello"), "{out:?}");
    assert_eq!(io.exit.await.unwrap(), 3);
    let record = f.containers.inspect(NS, &id).await.unwrap();
    let log = std::fs::read_to_string(
        f.dir
            .path()
            .join("logs")
            .join(NS)
            .join(format!("{}.log", record.name)),
    )
    .unwrap();
    assert!(log.contains(" stdout F ready\n"), "{log}");
    assert!(log.contains(" stdout F typed hello\n"), "{log}");
    f.containers.delete(NS, &id, true).await.unwrap();
}
