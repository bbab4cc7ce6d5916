//! config.json's hooks: each runs as a host program with the container's
//! state (JSON) on its stdin, at its point of the life cycle, as runc
//! runs them (createRuntime, createContainer and startContainer also run
//! on the host: the vkernel has no namespaces to enter).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

/// Errors of running a hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook could not be started.
    #[error("{point} hook {path}: cannot start it: {source} (check the path in config.json)")]
    Start {
        /// Which point.
        point: &'static str,
        /// The hook's path.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The hook failed.
    #[error("{point} hook {path} failed: {why}")]
    Failed {
        /// Which point.
        point: &'static str,
        /// The hook's path.
        path: String,
        /// Its exit status, or the timeout.
        why: String,
    },
}

/// The points of the life cycle where hooks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// `prestart` (deprecated; with createRuntime, during create).
    Prestart,
    /// `createRuntime`: during create, after the vkernel process exists.
    CreateRuntime,
    /// `createContainer`: during create, after createRuntime.
    CreateContainer,
    /// `startContainer`: when `start` runs, before the program.
    StartContainer,
    /// `poststart`: after `start` let the program run.
    Poststart,
    /// `poststop`: in `delete`.
    Poststop,
}

impl Point {
    /// The spec's name of the point.
    pub fn name(self) -> &'static str {
        match self {
            Point::Prestart => "prestart",
            Point::CreateRuntime => "createRuntime",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        }
    }

    /// The hooks of this point in `hooks`.
    pub fn of(self, hooks: &Hooks) -> Vec<Hook> {
        #[allow(deprecated)]
        let list = match self {
            Point::Prestart => hooks.prestart(),
            Point::CreateRuntime => hooks.create_runtime(),
            Point::CreateContainer => hooks.create_container(),
            Point::StartContainer => hooks.start_container(),
            Point::Poststart => hooks.poststart(),
            Point::Poststop => hooks.poststop(),
        };
        list.clone().unwrap_or_default()
    }
}

/// Run the hooks of `point` in order, each with `state` (JSON) on stdin;
/// the first failure stops them.
pub fn run(point: Point, hooks: Option<&Hooks>, state: &[u8]) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for hook in point.of(hooks) {
        run_one(point, &hook, state)?;
    }
    Ok(())
}

fn run_one(point: Point, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let failed = |why: String| HookError::Failed {
        point: point.name(),
        path: path.clone(),
        why,
    };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|source| HookError::Start {
            point: point.name(),
            path: path.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state is not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(failed(st.to_string())),
            Ok(None) => {}
            Err(e) => return Err(failed(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: &str) -> Hooks {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hooks_get_the_state_and_their_failures_stop_the_rest() {
        let dir = std::env::temp_dir().join(format!("vkoci-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let h = hooks(&format!(
            r#"{{"poststart":[{{"path":"/bin/sh","args":["sh","-c","cat > {0}; echo $X >> {0}"],"env":["X=7"]}}],
               "poststop":[{{"path":"/bin/false"}},{{"path":"/bin/sh","args":["sh","-c","touch {0}.2"]}}],
               "startContainer":[{{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}}]}}"#,
            out.display()
        ));
        run(Point::Poststart, Some(&h), b"{\"id\":\"c\"}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"c\"}\n7\n"
        );
        assert!(matches!(
            run(Point::Poststop, Some(&h), b""),
            Err(HookError::Failed { .. })
        ));
        assert!(!dir.join("out.2").exists());
        let t = Instant::now();
        let e = run(Point::StartContainer, Some(&h), b"").unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
        run(Point::Prestart, Some(&h), b"").unwrap();
        run(Point::Prestart, None, b"").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
