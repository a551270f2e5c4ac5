//! Running OCI hooks: the program with its args and env, the container state on stdin, killed when its
//! timeout expires.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::plan::HookPlan;

/// A hook did not succeed.
#[derive(Debug, Error)]
pub enum HookError {
    /// The program could not be started.
    #[error("{stage} hook {path} could not be started")]
    Spawn {
        /// The hook stage.
        stage: &'static str,
        /// The program.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It exited with a failure status.
    #[error("{stage} hook {path} failed with {status}: {stderr}")]
    Failed {
        /// The hook stage.
        stage: &'static str,
        /// The program.
        path: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// It ran longer than its timeout and was killed.
    #[error("{stage} hook {path} timed out after {seconds} seconds")]
    TimedOut {
        /// The hook stage.
        stage: &'static str,
        /// The program.
        path: String,
        /// The timeout.
        seconds: i64,
    },
}

/// Converts the spec's hooks.
pub fn from_spec(hooks: Option<&Vec<oci_spec::runtime::Hook>>) -> Vec<HookPlan> {
    hooks
        .into_iter()
        .flatten()
        .map(|h| HookPlan {
            path: h.path().display().to_string(),
            args: h.args().clone().unwrap_or_default(),
            env: h.env().clone().unwrap_or_default(),
            timeout: h.timeout(),
        })
        .collect()
}

/// Runs `hooks` in order with `state` on stdin; the first failure stops the sequence.
pub fn run_all(stage: &'static str, hooks: &[HookPlan], state: &str) -> Result<(), HookError> {
    hooks
        .iter()
        .try_for_each(|hook| run_one(stage, hook, state))
}

fn run_one(stage: &'static str, hook: &HookPlan, state: &str) -> Result<(), HookError> {
    let path = hook.path.clone();
    let mut command = Command::new(&hook.path);
    if let Some((arg0, rest)) = hook.args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
        command.args(rest);
    }
    command.env_clear();
    for entry in &hook.env {
        if let Some((k, v)) = entry.split_once('=') {
            command.env(k, v);
        }
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HookError::Spawn {
            stage,
            path: path.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook
        .timeout
        .filter(|t| *t > 0)
        .map(|t| (t, Instant::now() + Duration::from_secs(t.unsigned_abs())));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                return Err(HookError::Spawn {
                    stage,
                    path,
                    source,
                })
            }
        }
        if let Some((seconds, at)) = deadline {
            if Instant::now() >= at {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::TimedOut {
                    stage,
                    path,
                    seconds,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    Err(HookError::Failed {
        stage,
        path,
        status,
        stderr: stderr.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Option<i64>) -> HookPlan {
        HookPlan {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["X=1".into()],
            timeout,
        }
    }

    #[test]
    fn a_hook_reads_the_state_and_its_env() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out");
        let script = format!("cat > {} && echo $X >> {}", out.display(), out.display());
        run_all("prestart", &[hook(&script, None)], "{\"id\":\"c\"}").expect("hook");
        assert_eq!(
            std::fs::read_to_string(out).expect("out"),
            "{\"id\":\"c\"}1\n"
        );
    }

    #[test]
    fn failures_and_timeouts_are_reported() {
        let err =
            run_all("poststart", &[hook("echo bad >&2; exit 3", None)], "{}").expect_err("fails");
        assert!(err.to_string().contains("bad"), "{err}");
        let err = run_all("prestart", &[hook("sleep 5", Some(1))], "{}").expect_err("times out");
        assert!(matches!(err, HookError::TimedOut { .. }));
    }
}
