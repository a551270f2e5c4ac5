//! Container output in the CRI log: streams, long lines, rotation.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn output_reaches_the_cri_log_with_its_stream() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("echo out; echo err >&2; echo; printf 'no newline'");
    monitor.run(&mut client, &bundle);
    client.wait(bundle.id()).unwrap();
    let records: Vec<(String, String, String)> = read_log(&monitor.log_path(bundle.id()))
        .into_iter()
        .map(|r| (r.stream, r.tag, r.line))
        .collect();
    let expected = [
        ("stdout", "F", "out"),
        ("stderr", "F", "err"),
        ("stdout", "F", ""),
        ("stdout", "F", "no newline"),
    ];
    for record in &expected {
        let record = (
            record.0.to_owned(),
            record.1.to_owned(),
            record.2.to_owned(),
        );
        assert!(records.contains(&record), "{record:?} not in {records:?}");
    }
    assert_eq!(records.len(), expected.len(), "{records:?}");
    let stdout: Vec<&str> = records
        .iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| r.2.as_str())
        .collect();
    assert_eq!(stdout, ["out", "", "no newline"]);
    monitor.shut_down();
}

#[test]
fn a_long_line_is_split_into_partial_records_and_a_full_one() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("head -c 40000 /dev/zero | tr '\\0' x; echo; echo after");
    monitor.run(&mut client, &bundle);
    client.wait(bundle.id()).unwrap();
    let records = read_log(&monitor.log_path(bundle.id()));
    let shape: Vec<(&str, usize)> = records
        .iter()
        .map(|r| (r.tag.as_str(), r.line.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("P", 16384),
            ("P", 16384),
            ("F", 40000 - 2 * 16384),
            ("F", 5)
        ]
    );
    let joined: String = records[..3].iter().map(|r| r.line.as_str()).collect();
    assert_eq!(joined, "x".repeat(40000));
    monitor.shut_down();
}

#[test]
fn rotation_keeps_every_line_in_order_across_files() {
    if !require_root() {
        return;
    }
    let monitor = TestMonitor::start();
    let mut client = monitor.client();
    let bundle = sh("seq 1 3000");
    let mut request = monitor.request(&bundle);
    request.log_rotation = LogRotation {
        max_bytes: 8192,
        keep: 100,
    };
    client.create(request).unwrap();
    client.start(bundle.id()).unwrap();
    client.wait(bundle.id()).unwrap();
    let (records, files) = read_rotated_log(&monitor.log_path(bundle.id()));
    assert!(files > 5, "only {files} files");
    let lines: Vec<String> = records.into_iter().map(|r| r.line).collect();
    let expected: Vec<String> = (1..=3000).map(|n| n.to_string()).collect();
    assert_eq!(lines, expected);
    for n in 1..files {
        let rotated = format!("{}.{n}", monitor.log_path(bundle.id()).display());
        let size = std::fs::metadata(&rotated).unwrap().len();
        assert!(size <= 8192, "{rotated} has {size} bytes");
    }
    monitor.shut_down();
}
