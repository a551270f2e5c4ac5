//! The harness proved with runc standing in for testudo: each helper that takes a runtime binary
//! must work with runc before testudo exists.

use std::path::Path;

use testudo_test_support::{
    assert_success, require_root, unique_id, Bundle, Containerd, LeakCheck, Podman, Runtime,
};

const RUNC: &str = "/usr/sbin/runc";

fn runc() -> Runtime {
    Runtime::new(Path::new(RUNC))
}

fn bundle_dir(bundle: &Bundle) -> &str {
    bundle.path().to_str().expect("bundle path is UTF-8")
}

#[test]
fn runc_runs_a_bundle_that_prints_ok() {
    if !require_root() {
        return;
    }
    let runtime = runc();
    let bundle = Bundle::new().args(&["/bin/sh", "-c", "echo ok"]).write();
    let leaks = LeakCheck::snapshot()
        .bundle(&bundle)
        .state_root(runtime.root());

    let out = runtime.run_ok(["run", "--bundle", bundle_dir(&bundle), bundle.id()]);

    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    leaks.assert_no_leaks_for(bundle.id());
}

#[test]
fn rootfs_users_and_groups_resolve_inside_the_container() {
    if !require_root() {
        return;
    }
    let runtime = runc();
    let bundle = Bundle::new()
        .args(&["/bin/sh", "-c", "id tester; id nobody; ulimit -n"])
        .write();

    let out = runtime.run_ok(["run", "--bundle", bundle_dir(&bundle), bundle.id()]);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "uid=1000(tester) gid=1000(tester) groups=1000(tester),50(staff)\n\
         uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n\
         1024\n"
    );
}

#[test]
fn runtime_reports_state_and_fails_on_an_unknown_container() {
    if !require_root() {
        return;
    }
    let runtime = runc();
    let bundle = Bundle::new().args(&["/bin/sleep", "30"]).write();
    let leaks = LeakCheck::snapshot()
        .bundle(&bundle)
        .state_root(runtime.root());

    runtime.run_ok(["create", "--bundle", bundle_dir(&bundle), bundle.id()]);
    let state = runtime.state(bundle.id());
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], bundle.id());
    runtime.run_fail(["state", "no-such-container"]);
    runtime.run_ok(["delete", "--force", bundle.id()]);

    leaks.assert_no_leaks_for(bundle.id());
}

#[test]
fn dropping_the_runtime_deletes_its_running_containers() {
    if !require_root() {
        return;
    }
    let runtime = runc();
    let bundle = Bundle::new().args(&["/bin/sleep", "30"]).write();
    let leaks = LeakCheck::snapshot().bundle(&bundle);
    runtime.run_ok([
        "run",
        "--detach",
        "--bundle",
        bundle_dir(&bundle),
        bundle.id(),
    ]);
    assert_eq!(runtime.state(bundle.id())["status"], "running");

    drop(runtime);

    leaks.assert_no_leaks_for(bundle.id());
}

#[test]
fn podman_with_runc_runs_echo_from_the_imported_image() {
    if !require_root() {
        return;
    }
    let podman = Podman::new(Path::new(RUNC));
    let image = podman.import_busybox();
    let name = unique_id("podman");
    let leaks = LeakCheck::snapshot();

    let out = podman.run(["--rm", "--name", &name, &image, "echo", "ok"]);

    assert_success("podman run", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    leaks.assert_no_leaks_for(&name);
}

#[test]
fn podman_image_default_command_is_sh() {
    if !require_root() {
        return;
    }
    let podman = Podman::new(Path::new(RUNC));
    let image = podman.import_busybox();

    let out = podman.output(["image", "inspect", "--format", "{{.Config.Cmd}}", &image]);

    assert_success("podman image inspect", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[/bin/sh]");
}

#[test]
fn ctr_with_runc_binary_runs_echo() {
    if !require_root() {
        return;
    }
    let containerd = Containerd::start();
    let image = containerd.import_busybox();
    let id = unique_id("ctr");
    let leaks = LeakCheck::snapshot();

    let out = containerd.run_with_runtime(Path::new(RUNC), &image, &id, &["echo", "ok"]);

    assert_success("ctr run", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    leaks.assert_no_leaks_for(&id);
}

#[test]
fn podman_containers_get_only_loopback_by_default() {
    if !require_root() {
        return;
    }
    let podman = Podman::new(Path::new(RUNC));
    let image = podman.import_busybox();

    let out = podman.run(["--rm", &image, "cat", "/proc/net/dev"]);

    assert_success("podman run", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let interfaces: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{stdout}");
}

#[test]
fn dropping_podman_removes_its_running_containers() {
    if !require_root() {
        return;
    }
    let podman = Podman::new(Path::new(RUNC));
    let image = podman.import_busybox();
    let leaks = LeakCheck::snapshot();
    let out = podman.run(["--detach", &image, "sleep", "30"]);
    assert_success("podman run --detach", &out);
    let container = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    drop(podman);

    leaks.assert_no_leaks_for(&container);
}

#[test]
fn dropping_containerd_stops_its_tasks_and_shims() {
    if !require_root() {
        return;
    }
    let containerd = Containerd::start();
    let image = containerd.import_busybox();
    let id = unique_id("ctr-detached");
    let leaks = LeakCheck::snapshot();
    let runc_root = containerd.runc_root();
    let mut run = containerd.ctr_cmd(["run", "--detach", "--runc-binary", RUNC, "--runc-root"]);
    run.arg(&runc_root).args([
        "--snapshotter",
        containerd.snapshotter(),
        &image,
        &id,
        "sleep",
        "30",
    ]);
    let out = run.output().expect("run ctr");
    assert_success("ctr run --detach", &out);
    let address = containerd.address();

    drop(containerd);

    leaks.assert_no_leaks_for(&id);
    let shims_left = std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&*address.to_string_lossy()))
        .count();
    assert_eq!(shims_left, 0, "processes still name {}", address.display());
}
