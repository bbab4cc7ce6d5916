//! The vkernel's own diagnostics, kept out of the program's stderr.
//!
//! A vproc's standard error belongs to the program: scripts capture
//! `2>&1`, tests compare it with native. So the personality writes its
//! warnings (an unimplemented syscall, a refused option, a host resource
//! that could not be had) through the [`log`] crate (its own lines under
//! the target [`TARGET`]), never to stderr directly; the embedding program decides
//! where they go (the `vkernel` command line: nowhere by default, a file
//! with `--log FILE` or `VKERNEL_LOG=FILE`, stderr with `-v`). Only what
//! the user asked for (`--trace`, `--stats`, the vkdb prompt) and fatal
//! errors of the vkernel itself are written to stderr.
//!
//! [`Unimplemented`] counts the calls a run met that the personality does
//! not serve, for `--stats` and the log at exit: the list a user sends
//! with a bug report.
//!
//! ```
//! use vkernel_linux::diag::Unimplemented;
//!
//! let u = Unimplemented::default();
//! assert!(u.record(52, 100, "bash"));
//! assert!(!u.record(52, 101, "bash"));
//! let calls = u.calls();
//! assert_eq!(calls[0].name, "getpeername");
//! assert_eq!((calls[0].count, calls[0].first_pid), (2, 100));
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The `log` target of the vkernel's diagnostics.
pub const TARGET: &str = "vkernel";

/// One syscall number a run met and did not serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnimplementedCall {
    /// The syscall number.
    pub nr: u64,
    /// Its Linux name (`"unknown"` for a number x86-64 does not assign).
    pub name: &'static str,
    /// How many times vprocs made it.
    pub count: u64,
    /// The pid of the first vproc that made it.
    pub first_pid: i32,
    /// That vproc's command (`comm`).
    pub first_comm: String,
}

/// The unimplemented calls of one run, shared by all its vprocs.
#[derive(Debug, Default)]
pub struct Unimplemented {
    calls: Mutex<BTreeMap<u64, UnimplementedCall>>,
}

impl Unimplemented {
    /// Count call `nr` made by vproc `pid` (`comm`); true the first time
    /// the run meets `nr`, when the caller logs it.
    pub fn record(&self, nr: u64, pid: i32, comm: &str) -> bool {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        match calls.get_mut(&nr) {
            Some(c) => {
                c.count += 1;
                false
            }
            None => {
                calls.insert(
                    nr,
                    UnimplementedCall {
                        nr,
                        name: crate::abi::sysno::name_of(nr),
                        count: 1,
                        first_pid: pid,
                        first_comm: comm.to_string(),
                    },
                );
                true
            }
        }
    }

    /// The calls met so far, by number.
    pub fn calls(&self) -> Vec<UnimplementedCall> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.values().cloned().collect()
    }
}

/// Log an unimplemented call the first time a run meets it.
pub fn unimplemented(u: &Unimplemented, nr: u64, pid: i32, comm: &str) {
    if u.record(nr, pid, comm) {
        log::warn!(
            target: TARGET,
            "pid {pid} ({comm}): unimplemented syscall {nr} ({}) -> ENOSYS",
            crate::abi::sysno::name_of(nr)
        );
    }
}

/// The lines `--stats` and the log at exit show for `calls`: a header and
/// one line per call with its count and first caller; empty when there
/// are none.
pub fn report_lines(calls: &[UnimplementedCall]) -> Vec<String> {
    if calls.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "unimplemented syscalls met ({}; each returned ENOSYS):",
        calls.len()
    )];
    for c in calls {
        out.push(format!(
            "  {:>3} {:<20} {:>8} calls, first by pid {} ({})",
            c.nr, c.name, c.count, c.first_pid, c.first_comm
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_first_caller() {
        let u = Unimplemented::default();
        assert!(u.record(324, 100, "sh"));
        assert!(u.record(52, 101, "bash"));
        assert!(!u.record(324, 102, "cat"));
        let c = u.calls();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].nr, c[0].name, c[0].count), (52, "getpeername", 1));
        assert_eq!(
            (
                c[1].name,
                c[1].count,
                c[1].first_pid,
                c[1].first_comm.as_str()
            ),
            ("membarrier", 2, 100, "sh")
        );
        let lines = report_lines(&c);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].contains("membarrier") && lines[2].contains("pid 100 (sh)"));
        assert!(report_lines(&[]).is_empty());
    }
}
