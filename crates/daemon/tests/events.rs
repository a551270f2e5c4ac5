//! Events end to end: the real daemon publishes namespace and image events to subscribers of
//! its EventsService, filtered by namespace and topic prefix, and `testudoctl events --json`
//! prints them as they happen. (Container events are covered at the engine level, where the
//! container service is driven directly: crates/engine/tests/supervise.rs.)

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use testudo_api::events::v1::events_service_client::EventsServiceClient;
use testudo_api::events::v1::{event, Event, SubscribeRequest, SubscribeResponse};
use testudo_test_support::{require_root, ImageLayout, Layer, PushFormat, Registry, TestImage};
use tonic::Streaming;

/// How long a test waits for an event before it fails (never a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

/// The next event of `stream` that is not about a `ready-*` namespace (the readiness probes).
async fn next(stream: &mut Streaming<SubscribeResponse>) -> Event {
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("no event came")
            .unwrap()
            .unwrap();
        let event = message.event.unwrap();
        if !event.namespace.starts_with("ready-") {
            return event;
        }
    }
}

fn topic_and_namespace(event: &Event) -> (String, String) {
    (event.topic.clone(), event.namespace.clone())
}

fn pair(topic: &str, namespace: &str) -> (String, String) {
    (topic.to_owned(), namespace.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_and_image_events_reach_filtered_subscribers_and_testudoctl() {
    if !require_root() {
        return;
    }
    let registry = Registry::start();
    let mut layout = ImageLayout::new();
    let image = TestImage::new(vec![Layer::new().file("hello", b"hi\n", 0o644)]);
    let written = layout.add_image("v1", &image);
    registry.push(layout.path(), "v1", "app:v1", PushFormat::Oci, false);
    let daemon = Daemon::start(&[registry.address()]);
    let reference = format!("{}/app:v1", registry.address());

    let client = EventsServiceClient::new(channel(daemon.socket()).await);
    let subscribe = |namespace: &str, topics: &[&str]| {
        let request = SubscribeRequest {
            namespace: namespace.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        };
        let mut client = client.clone();
        async move { client.subscribe(request).await.map(|r| r.into_inner()) }
    };
    // Each call returns once the daemon has subscribed: nothing after it is missed.
    let mut all = subscribe("", &[]).await.unwrap();
    let mut acme = subscribe("acme", &["/namespaces/"]).await.unwrap();
    let mut images = subscribe("", &["/images/"]).await.unwrap();
    let refused = subscribe("", &["images"]).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("\"images\""), "{refused:?}");

    // testudoctl subscribes in its own time: probe namespaces show when it listens.
    let mut ctl = Command::new(testudoctl())
        .arg("--socket")
        .arg(daemon.socket())
        .args(["--json", "events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (line_sender, lines) = mpsc::channel::<serde_json::Value>();
    let stdout = ctl.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line_sender
                .send(serde_json::from_str(&line).unwrap())
                .is_err()
            {
                return;
            }
        }
    });
    let mut probe = 0;
    loop {
        daemon.ok(&["ns", "create", &format!("ready-{probe}")]);
        probe += 1;
        if lines.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        assert!(probe < 60, "testudoctl events never printed an event");
    }

    daemon.ok(&["ns", "create", "acme"]);
    daemon.ok(&["ns", "create", "other"]);
    daemon.ok(&["image", "pull", &reference]);
    daemon.ok(&["image", "rm", &reference]);
    daemon.ok(&["ns", "rm", "acme"]);
    daemon.ok(&["ns", "rm", "other"]);

    let expected = [
        pair("/namespaces/create", "acme"),
        pair("/namespaces/create", "other"),
        pair("/images/pull", "default"),
        pair("/images/delete", "default"),
        pair("/namespaces/delete", "acme"),
        pair("/namespaces/delete", "other"),
    ];
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        seen.push(next(&mut all).await);
    }
    let topics: Vec<_> = seen.iter().map(topic_and_namespace).collect();
    assert_eq!(topics, expected);
    match &seen[2].payload {
        Some(event::Payload::ImageChanged(changed)) => {
            assert_eq!(changed.name, reference);
            assert_eq!(changed.digest, written.manifest.digest);
        }
        other => panic!("{other:?}"),
    }
    assert!(seen.iter().all(|e| e.time.is_some()));

    // The namespace filter passes acme's events only, the topic filter images' only.
    let acme_seen = [next(&mut acme).await, next(&mut acme).await];
    assert_eq!(
        acme_seen
            .iter()
            .map(topic_and_namespace)
            .collect::<Vec<_>>(),
        [
            pair("/namespaces/create", "acme"),
            pair("/namespaces/delete", "acme")
        ]
    );
    let images_seen = [next(&mut images).await, next(&mut images).await];
    assert_eq!(
        images_seen
            .iter()
            .map(topic_and_namespace)
            .collect::<Vec<_>>(),
        [
            pair("/images/pull", "default"),
            pair("/images/delete", "default")
        ]
    );

    // testudoctl printed the same, one JSON object per line.
    let mut printed = Vec::new();
    while printed.len() < expected.len() {
        let value = lines.recv_timeout(PATIENCE).unwrap();
        let namespace = value["namespace"].as_str().unwrap().to_owned();
        if !namespace.starts_with("ready-") {
            printed.push((
                value["topic"].as_str().unwrap().to_owned(),
                namespace,
                value,
            ));
        }
    }
    let printed_topics: Vec<_> = printed
        .iter()
        .map(|(topic, ns, _)| (topic.clone(), ns.clone()))
        .collect();
    assert_eq!(printed_topics, expected);
    assert_eq!(printed[2].2["name"], reference.as_str());
    let _ = ctl.kill();
    let _ = ctl.wait();
}
