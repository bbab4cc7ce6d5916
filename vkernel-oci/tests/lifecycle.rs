//! The runtime's own command line on a hand-made bundle, as conmon and the
//! containerd shim drive it (no podman needed): create leaves the
//! container created (its vkernel waits before the first instruction),
//! state reports each status with the vkernel's pid, start runs it, the
//! hooks run at their points with the state on stdin, kill signals it,
//! delete cleans up; run and exec; errors say what to do.
//!
//! Skips loudly without /dev/kvm or busybox-static.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNTIME: &str = env!("CARGO_BIN_EXE_vkernel-oci");

struct Bundle {
    dir: PathBuf,
    root: PathBuf,
}

impl Bundle {
    /// A bundle whose rootfs holds busybox, running `args`, with hooks
    /// that append their point and the state's status to `hooks.log`.
    fn new(test: &str, args: &[&str]) -> Option<Bundle> {
        if !common::have_kvm(test) {
            return None;
        }
        if !Path::new("/bin/busybox").exists() {
            common::skip(
                test,
                "/bin/busybox is missing (apt-get install busybox-static)",
            );
            return None;
        }
        let dir = common::scratch(test);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for a in ["sh", "echo", "cat", "sleep", "hostname", "ls", "id"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(dir.join("greeting"), "hello from the host\n").unwrap();
        let log = dir.join("hooks.log");
        let hook = |point: &str| {
            serde_json::json!({
                "path": "/bin/sh",
                "args": ["sh", "-c", format!(
                    "s=$(cat); case $s in *'\"status\":\"'*) ;; *) exit 1;; esac; \
                     echo {point} $(echo \"$s\" | grep -o '\"status\":\"[a-z]*\"') >> {}",
                    log.display()
                )]
            })
        };
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "args": args,
                "env": ["PATH=/bin", "GREETING=hi"],
                "cwd": "/",
                "user": {"uid": 0, "gid": 0},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]
            },
            "root": {"path": "rootfs"},
            "hostname": "vkoci-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]},
                {"destination": "/etc/greeting", "type": "bind", "source": dir.join("greeting"), "options": ["bind", "ro"]},
                {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"}
            ],
            "hooks": {
                "createRuntime": [hook("createRuntime")],
                "startContainer": [hook("startContainer")],
                "poststart": [hook("poststart")],
                "poststop": [hook("poststop")]
            },
            "annotations": {"org.example": "yes"},
            "linux": {"resources": {"memory": {"limit": 268435456}, "pids": {"limit": 32}},
                      "namespaces": [{"type": "pid"}, {"type": "network"}]}
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        Some(Bundle {
            root: dir.join("state"),
            dir,
        })
    }

    /// `vkernel-oci --root STATE ARGS`, its stdout and stderr to files
    /// (the container inherits them: a pipe would stay open while it runs).
    fn rt(&self, args: &[&str]) -> Output {
        let mut c = Command::new(RUNTIME);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(self.dir.join("runtime.log"));
        c.arg("--log-format").arg("json").args(args);
        common::hang::output_or_report(
            c,
            &format!("vkernel-oci {args:?}"),
            Duration::from_secs(60),
            &|| String::new(),
        )
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let o = self.rt(&["state", id]);
        assert!(
            o.status.success(),
            "state: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn hooks(&self) -> String {
        std::fs::read_to_string(self.dir.join("hooks.log")).unwrap_or_default()
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_start_state_kill_delete() {
    let Some(b) = Bundle::new(
        "create_start_state_kill_delete",
        &[
            "sh",
            "-c",
            "echo $GREETING $(hostname) $(cat /etc/greeting) $(ulimit -n) > /data/out; \
         mkdir -p /scratch/x; trap 'echo term >> /data/out; exit 9' TERM; \
         while true; do sleep 0.05; done",
        ],
    ) else {
        return;
    };
    let bundle = b.dir.to_str().unwrap();
    // The container's stdio: the runtime's (files here, not pipes).
    let out = std::fs::File::create(b.dir.join("stdout")).unwrap();
    let mut c = Command::new(RUNTIME);
    c.arg("--root")
        .arg(&b.root)
        .args(["create", "--bundle", bundle, "--pid-file"])
        .arg(b.dir.join("pid"))
        .arg("c1")
        .stdin(Stdio::null())
        .stdout(out);
    let st = c.status().unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(b.dir.join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    let s = b.state("c1");
    assert_eq!(s["status"], "created");
    assert_eq!(s["pid"], pid);
    assert_eq!(s["id"], "c1");
    assert_eq!(s["ociVersion"], "1.0.2");
    assert_eq!(s["annotations"]["org.example"], "yes");
    assert_eq!(
        Path::new(s["bundle"].as_str().unwrap()),
        std::fs::canonicalize(&b.dir).unwrap()
    );
    assert_eq!(b.hooks(), "createRuntime \"status\":\"created\"\n");
    // Created: nothing ran yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!b.dir.join("data/out").exists());
    let again = b.rt(&["create", "--bundle", bundle, "c1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    assert!(b.rt(&["start", "c1"]).status.success());
    wait_for("the container's output", || {
        std::fs::read_to_string(b.dir.join("data/out")).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        std::fs::read_to_string(b.dir.join("data/out")).unwrap(),
        "hi vkoci-test hello from the host 256\n"
    );
    assert_eq!(b.state("c1")["status"], "running");
    assert_eq!(
        b.hooks(),
        "createRuntime \"status\":\"created\"\nstartContainer \"status\":\"created\"\n\
         poststart \"status\":\"running\"\n"
    );
    let o = b.rt(&["start", "c1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("only a created container"));
    let o = b.rt(&["delete", "c1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    let o = b.rt(&["ps", "--format", "json", "c1"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("[{pid}]")
    );

    assert!(b.rt(&["kill", "c1", "TERM"]).status.success());
    wait_for("stopped", || b.state("c1")["status"] == "stopped");
    // The vkernel is our grandchild's: its status is in the output file.
    assert!(std::fs::read_to_string(b.dir.join("data/out"))
        .unwrap()
        .ends_with("term\n"));
    let o = b.rt(&["kill", "c1", "KILL"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
    assert!(b.rt(&["delete", "c1"]).status.success());
    assert!(b.hooks().ends_with("poststop \"status\":\"stopped\"\n"));
    let o = b.rt(&["state", "c1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    // conmon reads the last error from the JSON log.
    let log = std::fs::read_to_string(b.dir.join("runtime.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn run_exec_and_force_delete() {
    let Some(b) = Bundle::new(
        "run_exec_and_force_delete",
        &["sh", "-c", "echo ran; exit 6"],
    ) else {
        return;
    };
    let bundle = b.dir.to_str().unwrap();
    let o = b.rt(&["run", "--bundle", bundle, "r1"]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, b"ran\n");
    assert!(
        !b.root.join("r1").exists(),
        "run deletes the container it ran"
    );

    // A long-running container that writes a file in its overlay, then
    // exec into it: the same vkernel, which sees that file.
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.dir.join("config.json")).unwrap()).unwrap();
    cfg["process"]["args"] =
        serde_json::json!(["sh", "-c", "echo from-init >/tmp/mark; sleep 100"]);
    std::fs::write(b.dir.join("config.json"), cfg.to_string()).unwrap();
    let null = || std::fs::File::create("/dev/null").unwrap();
    let st = Command::new(RUNTIME)
        .arg("--root")
        .arg(&b.root)
        .args(["run", "--detach", "--bundle", bundle, "r2"])
        .stdin(Stdio::null())
        .stdout(null())
        .stderr(null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(b.state("r2")["status"], "running");
    let o = b.rt(&[
        "exec",
        "--user",
        "7:8",
        "r2",
        "sh",
        "-c",
        "while [ ! -e /tmp/mark ]; do sleep 0.05; done; cat /tmp/mark; \
         echo in-exec $(hostname) $(id -u):$(id -g); exit 4",
    ]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // One identity per vkernel: --user does not change the ids it shows.
    assert_eq!(o.stdout, b"from-init\nin-exec vkoci-test 0:0\n");
    // A missing program: 127, as runc.
    let o = b.rt(&["exec", "r2", "no-such-program"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"));
    let process = b.dir.join("process.json");
    std::fs::write(
        &process,
        r#"{"args": ["cat", "/etc/greeting"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
    )
    .unwrap();
    let o = b.rt(&["exec", "--process", process.to_str().unwrap(), "r2"]);
    assert_eq!(o.stdout, b"hello from the host\n");
    let pid = b.state("r2")["pid"].as_i64().unwrap();
    assert!(b.rt(&["delete", "--force", "r2"]).status.success());
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || b.state_gone("r2"));
    assert!(
        b.rt(&["delete", "--force", "r2"]).status.success(),
        "force on a missing one"
    );
    let o = b.rt(&["features"]);
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ociVersionMax"], "1.0.2");
    let o = Command::new(RUNTIME).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("vkernel-oci"));
}

impl Bundle {
    fn state_gone(&self, id: &str) -> bool {
        !self.root.join(id).exists()
    }
}

#[test]
fn a_created_container_is_deleted_without_running() {
    let Some(b) = Bundle::new(
        "a_created_container_is_deleted_without_running",
        &["sh", "-c", "echo ran > /data/out"],
    ) else {
        return;
    };
    let bundle = b.dir.to_str().unwrap();
    let null = || std::fs::File::create("/dev/null").unwrap();
    let st = Command::new(RUNTIME)
        .arg("--root")
        .arg(&b.root)
        .args(["create", "--bundle", bundle, "d1"])
        .stdin(Stdio::null())
        .stdout(null())
        .stderr(null())
        .status()
        .unwrap();
    assert!(st.success());
    let pid = b.state("d1")["pid"].as_i64().unwrap();
    // As runc: a created container goes without --force.
    assert!(b.rt(&["delete", "d1"]).status.success());
    assert!(b.state_gone("d1"));
    wait_for("the vkernel's end", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
    assert!(!b.dir.join("data/out").exists(), "nothing ran");
    assert_eq!(
        b.hooks(),
        "createRuntime \"status\":\"created\"\npoststop \"status\":\"stopped\"\n"
    );
}
