//! A container's state directory (`<--root>/<id>/`): the record the
//! runtime keeps (`vkernel.json`), the exec FIFO `start` opens, and what
//! `state` reports (created, running, stopped) from the vkernel process's
//! life.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record's file name in the state directory.
const RECORD: &str = "vkernel.json";
/// The FIFO the created vkernel waits on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// The OCI runtime spec version this runtime follows.
pub const OCI_VERSION: &str = "1.0.2";

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No container of that id under --root.
    #[error("container {id} does not exist (no {dir}): check the id and --root")]
    NotFound {
        /// The id.
        id: String,
        /// Its state directory.
        dir: String,
    },
    /// A container of that id exists already.
    #[error("container {0} exists already: delete it first, or pick another id")]
    Exists(String),
    /// An id that cannot name a directory.
    #[error("invalid container id `{0}`: use letters, digits, `.`, `_` and `-` only")]
    BadId(String),
    /// The state directory or a file in it could not be read or written.
    #[error("{path}: {source} (check that --root is a writable directory)")]
    Io {
        /// The file.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The record is not valid JSON.
    #[error("{path}: {source} (the state was damaged: `delete --force` the container)")]
    Json {
        /// The file.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Where a container is in its life (the OCI spec's statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created: the vkernel waits on the exec FIFO for `start`.
    Created,
    /// Running: the vkernel process runs the container's process.
    Running,
    /// Stopped: the vkernel process has ended.
    Stopped,
}

impl Status {
    /// The spec's name.
    pub fn as_oci(self) -> oci_spec::runtime::ContainerState {
        use oci_spec::runtime::ContainerState as C;
        match self {
            Status::Created => C::Created,
            Status::Running => C::Running,
            Status::Stopped => C::Stopped,
        }
    }
}

/// What the runtime remembers of one container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The container id.
    pub id: String,
    /// The vkernel process (the container's pid as the host sees it).
    pub pid: i32,
    /// Its start time (field 22 of /proc/PID/stat), to tell it from a
    /// later process that got the same pid.
    pub start_time: u64,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// config.json's annotations.
    pub annotations: HashMap<String, String>,
    /// When it was created (seconds since the epoch).
    pub created: u64,
}

/// The state directory of container `id` under `root`, after checking the
/// id names one directory.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+:@".contains(&b));
    if !ok {
        return Err(StateError::BadId(id.to_string()));
    }
    Ok(root.join(id))
}

/// The default `--root`: `/run/vkernel-oci` for root, else
/// `$XDG_RUNTIME_DIR/vkernel-oci` (or `/tmp/vkernel-oci-UID`).
pub fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/vkernel-oci");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("vkernel-oci"),
        None => PathBuf::from(format!("/tmp/vkernel-oci-{uid}")),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Record {
    /// Write the record into `dir` (atomically: a reader sees the old or
    /// the new one).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let tmp = dir.join(format!("{RECORD}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|source| StateError::Json {
            path: tmp.display().to_string(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&text).map_err(io_err(&tmp))?;
        let path = dir.join(RECORD);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Read the record of the container whose state directory is `dir`.
    pub fn load(dir: &Path, id: &str) -> Result<Record, StateError> {
        let path = dir.join(RECORD);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound {
                    id: id.to_string(),
                    dir: dir.display().to_string(),
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&text).map_err(|source| StateError::Json {
            path: path.display().to_string(),
            source,
        })
    }

    /// Is the vkernel process still the one this record names, and alive
    /// (a zombie is not)?
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }

    /// The container's status now: stopped once its vkernel process is
    /// gone, created while the exec FIFO is still there, else running.
    pub fn status(&self, dir: &Path) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The OCI state document (`state`'s output, and the hooks' stdin).
    pub fn oci_state(&self, status: Status) -> oci_spec::runtime::State {
        let mut s = oci_spec::runtime::State::default();
        s.set_version(OCI_VERSION.to_string());
        s.set_id(self.id.clone());
        s.set_status(status.as_oci());
        s.set_pid((status != Status::Stopped).then_some(self.pid));
        s.set_bundle(self.bundle.clone());
        s.set_annotations(Some(self.annotations.clone()));
        s
    }
}

/// The state letter and start time of process `pid` (from /proc/PID/stat),
/// or None when there is no such process.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The state letter and start time (field 22) of a /proc/PID/stat line.
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    // The command may hold spaces and parentheses: fields follow the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; the start time is field 22: 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_name_one_directory() {
        let r = Path::new("/run/x");
        assert_eq!(container_dir(r, "abc-1_2.3").unwrap(), r.join("abc-1_2.3"));
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(container_dir(r, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stat_lines_with_odd_commands() {
        let line = "42 (a) b) (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 123456)));
        assert_eq!(parse_stat("garbage"), None);
        let me = proc_stat(i32::try_from(std::process::id()).unwrap()).unwrap();
        assert_ne!(me.0, 'Z');
    }

    #[test]
    fn records_round_trip_and_report_state() {
        let dir = std::env::temp_dir().join(format!("vkoci-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid = i32::try_from(std::process::id()).unwrap();
        let rec = Record {
            id: "c1".into(),
            pid,
            start_time: proc_stat(pid).unwrap().1,
            bundle: "/b".into(),
            annotations: HashMap::from([("k".into(), "v".into())]),
            created: 1,
        };
        rec.save(&dir).unwrap();
        assert_eq!(Record::load(&dir, "c1").unwrap(), rec);
        assert_eq!(rec.status(&dir), Status::Running);
        std::fs::write(dir.join(EXEC_FIFO), b"").unwrap();
        assert_eq!(rec.status(&dir), Status::Created);
        let gone = Record {
            start_time: rec.start_time + 1,
            ..rec.clone()
        };
        assert_eq!(gone.status(&dir), Status::Stopped);
        let json = serde_json::to_value(rec.oci_state(Status::Created)).unwrap();
        assert_eq!(json["status"], "created");
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["pid"], pid);
        assert_eq!(json["annotations"]["k"], "v");
        let json = serde_json::to_value(gone.oci_state(Status::Stopped)).unwrap();
        assert!(json.get("pid").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            Record::load(&dir, "c1"),
            Err(StateError::NotFound { .. })
        ));
    }
}
