//! config.json -> what the vkernel runs: [`Plan`], pure (no KVM, no
//! host changes), so every field's fate is unit-tested.
//!
//! Every field of the runtime spec is one of three things here:
//! honoured (it changes what the container sees), ignored with a note
//! (the vkernel gives the same isolation another way, or the field has no
//! meaning for it; the notes go to the runtime's log) or refused (a
//! [`PlanError`] that says what to change). `docs/OCI.md` lists them.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, PosixRlimitType, Process, Spec};
use serde::{Deserialize, Serialize};

/// Guest RAM when the spec sets no memory limit, as `vkernel run --mem`.
pub const DEFAULT_MEM: u64 = 1024 << 20;
/// The least guest RAM a container gets (a smaller limit is raised to it:
/// the vkernel's own tables need room).
pub const MIN_MEM: u64 = 32 << 20;
/// Processes when the spec sets no pids limit, as `vkernel run --max-procs`.
pub const DEFAULT_MAX_PROCS: usize = 1024;
/// Most vCPUs a container gets from a cpu limit.
pub const MAX_CPUS: usize = 64;

/// Why a config.json cannot run in a vkernel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The spec has no `process` (an OCI bundle to run needs one).
    #[error("config.json has no `process`: give the container a process to run")]
    NoProcess,
    /// `process.args` is missing or empty.
    #[error("config.json's process.args is empty: give the command to run")]
    NoArgs,
    /// The spec has no `root`.
    #[error("config.json has no `root`: give root.path, the container's root filesystem")]
    NoRoot,
    /// A mount of a kind the vkernel cannot give.
    #[error(
        "mount of type `{typ}` on {dest}: the vkernel can give bind, tmpfs, proc, sysfs, devpts, \
         mqueue and cgroup mounts only; remove it or use a bind mount of a host directory"
    )]
    Mount {
        /// The mount's type.
        typ: String,
        /// Where it was to be mounted.
        dest: String,
    },
    /// A mount whose destination is not absolute.
    #[error("mount destination `{0}` is not an absolute path: give an absolute path")]
    RelativeMount(String),
    /// The container was to join an existing network namespace (podman's
    /// bridge or slirp networks): only `--network none` is supported.
    #[error(
        "the container joins network namespace {0}: vkernel-oci supports only `--network none` \
         (the vprocs get the vkernel's own loopback network); run with --network none"
    )]
    Network(String),
}

/// One resource limit for the container's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The resource (`libc::RLIMIT_*`).
    pub resource: u32,
    /// Soft value.
    pub soft: u64,
    /// Hard value.
    pub hard: u64,
}

/// What a mount becomes in the vkernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountPlan {
    /// A host directory shown at `guest` (writes reach the host when
    /// `writable`).
    BindDir {
        /// The host directory.
        host: PathBuf,
        /// Where the vprocs see it.
        guest: String,
        /// Writes reach the host.
        writable: bool,
    },
    /// A host file copied into the in-memory overlay at `guest` when the
    /// container starts (/etc/hosts, /etc/hostname, /run/.containerenv).
    CopyFile {
        /// The host file.
        host: PathBuf,
        /// Where the vprocs see it.
        guest: String,
    },
    /// A directory made in the in-memory overlay (a tmpfs: it is in
    /// memory already).
    Dir {
        /// Where.
        guest: String,
    },
}

/// What the vkernel runs for one container (or one `exec`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The host directory that is the vprocs' `/`.
    pub root: PathBuf,
    /// argv (argv[0] is the program, looked up in PATH when it has no `/`).
    pub args: Vec<String>,
    /// The environment, `NAME=value`.
    pub env: Vec<String>,
    /// The directory the program starts in.
    pub cwd: String,
    /// Give the program a terminal (a pty whose master goes to
    /// `--console-socket`).
    pub terminal: bool,
    /// The terminal's size (rows, columns), when the spec gives one.
    pub console_size: Option<(u16, u16)>,
    /// The user id the vprocs see (`process.user.uid`).
    pub uid: u32,
    /// The group id the vprocs see (`process.user.gid`).
    pub gid: u32,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// The vkernel's host name.
    pub hostname: Option<String>,
    /// Mounts the vkernel gives, in order.
    pub mounts: Vec<MountPlan>,
    /// Guest RAM in bytes.
    pub mem: u64,
    /// vCPUs.
    pub cpus: usize,
    /// Most processes at once.
    pub max_procs: usize,
    /// The spec asks for a new network namespace: the vkernel process
    /// gets one of its own (empty: the vprocs' network is the vkernel's
    /// own loopback either way), so hooks that set up "the container's"
    /// network never touch the host's.
    pub new_netns: bool,
    /// What was ignored, and why (for the log).
    pub notes: Vec<String>,
}

impl Plan {
    /// Translate `spec`, whose bundle is `bundle` (a relative root.path is
    /// taken from there).
    pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<Plan, PlanError> {
        let process = spec.process().as_ref().ok_or(PlanError::NoProcess)?;
        let root = spec.root().as_ref().ok_or(PlanError::NoRoot)?;
        let root_path = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };
        let mut notes = Vec::new();
        if root.readonly() == Some(true) {
            notes.push(
                "root.readonly: the root directory is never written (writes go to an in-memory \
                 overlay, gone when the container ends)"
                    .to_string(),
            );
        }
        let mut plan = Plan {
            root: root_path,
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            terminal: false,
            console_size: None,
            uid: 0,
            gid: 0,
            rlimits: Vec::new(),
            hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
            mounts: Vec::new(),
            mem: DEFAULT_MEM,
            cpus: 1,
            max_procs: DEFAULT_MAX_PROCS,
            new_netns: false,
            notes: Vec::new(),
        };
        plan.set_process(process, &mut notes)?;
        for m in spec.mounts().iter().flatten() {
            if let Some(mp) = mount_plan(m, &mut notes)? {
                plan.mounts.push(mp);
            }
        }
        if let Some(linux) = spec.linux() {
            plan.set_linux(linux, &mut notes)?;
        }
        if spec.hooks().is_some() {
            notes.push("hooks run on the host, in the runtime's namespaces".into());
        }
        plan.notes = notes;
        Ok(plan)
    }

    /// `process`: args, env, cwd, terminal, rlimits, user. Also what
    /// `exec --process` gives.
    pub fn set_process(
        &mut self,
        process: &Process,
        notes: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        self.args = process.args().clone().unwrap_or_default();
        if self.args.is_empty() {
            return Err(PlanError::NoArgs);
        }
        self.env = process.env().clone().unwrap_or_default();
        self.cwd = process.cwd().display().to_string();
        if self.cwd.is_empty() {
            self.cwd = "/".into();
        }
        self.terminal = process.terminal().unwrap_or(false);
        self.console_size = process.console_size().map(|b| {
            let fit = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
            (fit(b.height()), fit(b.width()))
        });
        self.rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| Rlimit {
                resource: rlimit_resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            })
            .collect();
        let user = process.user();
        self.uid = user.uid();
        self.gid = user.gid();
        if user
            .additional_gids()
            .as_ref()
            .is_some_and(|g| !g.is_empty())
            || user.umask().is_some()
        {
            notes.push(
                "process.user.additionalGids and umask: ignored (vprocs start with umask 022 and \
                 no supplementary groups)"
                    .into(),
            );
        }
        for (what, set) in [
            ("capabilities", process.capabilities().is_some()),
            ("apparmorProfile", process.apparmor_profile().is_some()),
            ("selinuxLabel", process.selinux_label().is_some()),
            ("oomScoreAdj", process.oom_score_adj().is_some()),
            ("noNewPrivileges", process.no_new_privileges().is_some()),
            ("ioPriority", process.io_priority().is_some()),
            ("scheduler", process.scheduler().is_some()),
        ] {
            if set {
                notes.push(format!(
                    "process.{what}: ignored (the vkernel is the boundary: no vproc reaches a \
                     host syscall)"
                ));
            }
        }
        Ok(())
    }

    /// `linux`: resources, namespaces, and what is ignored.
    fn set_linux(
        &mut self,
        linux: &oci_spec::runtime::Linux,
        notes: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        for ns in linux.namespaces().iter().flatten() {
            if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network {
                match ns.path() {
                    Some(p) => return Err(PlanError::Network(p.display().to_string())),
                    None => self.new_netns = true,
                }
            }
        }
        if linux.namespaces().is_some() {
            notes.push(
                "linux.namespaces: the vkernel is the container's own pid, mount, uts, ipc and \
                 network namespace (loopback only)"
                    .into(),
            );
        }
        if let Some(r) = linux.resources() {
            if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()) {
                if limit > 0 {
                    self.mem = u64::try_from(limit).unwrap_or(DEFAULT_MEM).max(MIN_MEM);
                }
            }
            if let Some(cpu) = r.cpu() {
                self.cpus = cpus_of(cpu.quota(), cpu.period(), cpu.cpus().as_deref());
                if cpu.shares().is_some() {
                    notes.push("linux.resources.cpu.shares: ignored (one vkernel per container: its vCPU threads are scheduled by the host)".into());
                }
            }
            if let Some(p) = r.pids() {
                if p.limit() > 0 {
                    self.max_procs = usize::try_from(p.limit()).unwrap_or(DEFAULT_MAX_PROCS);
                }
            }
            for (what, set) in [
                ("blockIO", r.block_io().is_some()),
                ("hugepageLimits", r.hugepage_limits().is_some()),
                ("network", r.network().is_some()),
                ("devices", r.devices().is_some()),
            ] {
                if set {
                    notes.push(format!("linux.resources.{what}: ignored"));
                }
            }
        }
        for (what, set) in [
            ("seccomp", linux.seccomp().is_some()),
            ("sysctl", linux.sysctl().is_some()),
            ("maskedPaths", linux.masked_paths().is_some()),
            ("readonlyPaths", linux.readonly_paths().is_some()),
            ("devices", linux.devices().is_some()),
            ("cgroupsPath", linux.cgroups_path().is_some()),
            ("uidMappings", linux.uid_mappings().is_some()),
        ] {
            if set {
                notes.push(format!(
                    "linux.{what}: ignored (the vkernel's own syscalls, /dev, /proc and /sys \
                     stand in for it)"
                ));
            }
        }
        Ok(())
    }
}

/// vCPUs for a cpu quota/period and a cpuset: the quota rounded up, the
/// cpuset's size, the smaller of both, at least 1 and at most [`MAX_CPUS`].
pub fn cpus_of(quota: Option<i64>, period: Option<u64>, cpuset: Option<&str>) -> usize {
    let from_quota = match (quota, period) {
        (Some(q), Some(p)) if q > 0 && p > 0 => usize::try_from(q.unsigned_abs().div_ceil(p)).ok(),
        (Some(q), None) if q > 0 => usize::try_from(q.unsigned_abs().div_ceil(100_000)).ok(),
        _ => None,
    };
    let from_set = cpuset.and_then(cpuset_size);
    let n = match (from_quota, from_set) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 1,
    };
    n.clamp(1, MAX_CPUS)
}

/// How many CPUs a cpuset list (`0-3,6`) names; None when it is empty or
/// malformed.
pub fn cpuset_size(set: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// `libc::RLIMIT_*` of a spec's rlimit type.
pub fn rlimit_resource(t: PosixRlimitType) -> u32 {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// What one mount becomes (None: the vkernel gives it already, noted).
fn mount_plan(m: &Mount, notes: &mut Vec<String>) -> Result<Option<MountPlan>, PlanError> {
    let dest = m.destination().display().to_string();
    if !dest.starts_with('/') {
        return Err(PlanError::RelativeMount(dest));
    }
    let options = m.options().clone().unwrap_or_default();
    let has = |o: &str| options.iter().any(|x| x == o);
    let typ = m.typ().clone().unwrap_or_default();
    let is_bind = typ == "bind" || has("bind") || has("rbind");
    if is_bind {
        let Some(src) = m.source().clone() else {
            notes.push(format!("bind mount on {dest} without a source: ignored"));
            return Ok(None);
        };
        return Ok(Some(match std::fs::metadata(&src) {
            Ok(md) if md.is_dir() => MountPlan::BindDir {
                host: src,
                guest: dest,
                writable: !has("ro"),
            },
            Ok(md) if md.is_file() => MountPlan::CopyFile {
                host: src,
                guest: dest,
            },
            _ => {
                notes.push(format!(
                    "bind mount of {} on {dest}: not a directory or regular file: ignored",
                    src.display()
                ));
                return Ok(None);
            }
        }));
    }
    match typ.as_str() {
        "proc" | "sysfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2" => {
            notes.push(format!(
                "{typ} on {dest}: the vkernel's own synthetic /proc, /dev and /sys serve it"
            ));
            Ok(None)
        }
        "tmpfs" if dest == "/dev" => {
            notes.push("tmpfs on /dev: the vkernel's synthetic /dev serves it".into());
            Ok(None)
        }
        "tmpfs" => Ok(Some(MountPlan::Dir { guest: dest })),
        _ => Err(PlanError::Mount { typ, dest }),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
