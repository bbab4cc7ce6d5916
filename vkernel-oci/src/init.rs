//! The vkernel process of a container: the runtime's child (`vkernel-oci
//! init`, hidden). It gets its [`Plan`] from the runtime, waits on the
//! exec FIFO until `start` (after `create`), applies the rlimits and runs
//! the container's process as the first vproc through the library's
//! [`Launch`], in this process: its pid is the container's pid, its exit
//! status the container's.

use std::io::Write;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;

use vkernel::linux::files::Wake;
use vkernel::linux::kernel::{Options, Spawner};
use vkernel::linux::launch::Launch;
use vkernel::linux::stdio::{ConsoleStdio, Stdio};

use crate::execsock::{self, ExecSockError};
use crate::plan::Plan;
use crate::rootfs::{self, RootfsError};

/// The environment variable the runtime hands the plan (JSON) over in.
pub const PLAN_ENV: &str = "VKERNEL_OCI_PLAN";

/// Errors of the vkernel process.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// No plan, or a damaged one.
    #[error(
        "no valid {PLAN_ENV}: `init` is the runtime's own child, not a command to run by hand"
    )]
    NoPlan,
    /// The exec FIFO failed.
    #[error("exec FIFO {path}: {source} (the state directory was removed?)")]
    Fifo {
        /// The FIFO.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The filesystem or the program.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The machine (KVM) could not be built.
    #[error("{0}")]
    Machine(#[from] vkernel::core::machine::MachineError),
    /// The console.
    #[error("{0}")]
    Stdio(#[from] vkernel::linux::stdio::StdioError),
    /// The program could not be loaded, or the virtual kernel failed.
    #[error("{0}")]
    Vproc(#[from] vkernel::linux::VprocError),
    /// The control socket could not be made.
    #[error(transparent)]
    ExecSock(#[from] ExecSockError),
}

impl InitError {
    /// The exit status to report, as a shell (and runc's users) expect.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::Rootfs(RootfsError::NotFound(_)) => 127,
            InitError::Rootfs(RootfsError::CannotRun { .. }) => 126,
            InitError::Vproc(vkernel::linux::VprocError::Elf { .. }) => 126,
            _ => 1,
        }
    }
}

/// Limits the vkernel process does not take on itself: they would bound
/// the vkernel's own guest RAM, stack and locked memory, not the vprocs'.
const HOST_ONLY: [u32; 5] = [
    libc::RLIMIT_AS,
    libc::RLIMIT_DATA,
    libc::RLIMIT_STACK,
    libc::RLIMIT_MEMLOCK,
    libc::RLIMIT_RSS,
];

/// Run the container: read the plan, wait for `start` on `fifo` (None for
/// `exec` and for `run`'s own), run. Returns the exit status.
pub fn main(fifo: Option<&Path>) -> Result<u8, InitError> {
    let plan: Plan = std::env::var(PLAN_ENV)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .ok_or(InitError::NoPlan)?;
    std::env::remove_var(PLAN_ENV);
    if let Some(f) = fifo {
        wait_for_start(f)?;
    }
    // The control socket goes beside the FIFO, in the state directory.
    let state_dir = fifo.and_then(Path::parent);
    for r in &plan.rlimits {
        if HOST_ONLY.contains(&r.resource) {
            log::info!(
                "rlimit {} not applied (it would bound the vkernel itself)",
                r.resource
            );
            continue;
        }
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: `lim` is a valid rlimit; a bad resource only fails.
        if unsafe { libc::setrlimit(r.resource, &lim) } != 0 {
            log::warn!("rlimit {}: {}", r.resource, std::io::Error::last_os_error());
        }
    }
    run(&plan, state_dir)
}

/// Block until `start` opens the FIFO, then tell it (one byte) that the
/// container runs.
fn wait_for_start(fifo: &Path) -> Result<(), InitError> {
    let err = |source| InitError::Fifo {
        path: fifo.display().to_string(),
        source,
    };
    // Opening for writing blocks until a reader (start) opens it.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .map_err(err)?;
    f.write_all(b"0").map_err(err)
}

/// Build the machine and run the plan's program as init until it exits;
/// with `state_dir`, serve the control socket there (`exec`).
fn run(plan: &Plan, state_dir: Option<&Path>) -> Result<u8, InitError> {
    let fs = rootfs::build(plan)?;
    let spawner = Spawner::new();
    let sock = match state_dir {
        Some(d) => Some(execsock::serve(
            d,
            spawner.clone(),
            plan.clone(),
            fs.clone(),
        )?),
        None => None,
    };
    let (image, path) = rootfs::find_program(&fs, plan)?;
    let opts = Options {
        cpus: plan.cpus,
        max_procs: plan.max_procs.max(1),
        forward_signals: true,
        hostname: plan.hostname.clone().map(String::into_bytes),
        uid: plan.uid,
        gid: plan.gid,
        ..Options::default()
    };
    let launch = Launch::program(image, path)
        .argv0(&plan.args[0])
        .args(&plan.args[1..])
        .env(&plan.env)
        .root(fs)
        .cwd(&plan.cwd)
        .ram(plan.mem)
        .options(opts)
        .spawner(&spawner);
    let machine = launch.machine()?;
    let console = ConsoleStdio::new(machine.kicker(0).expect("vCPU 0 exists"))?;
    let report = launch.run_on(&machine, Box::new(Container(console)));
    if let Some(s) = sock {
        let _ = std::fs::remove_file(s);
    }
    let report = report?;
    if let Some(d) = &report.death {
        log::info!("{}: {d}", plan.args[0]);
    }
    Ok(u8::try_from(report.status.code()).unwrap_or(255))
}

/// The console as a container's (its first process's, or an exec'd
/// one's): never interactive, so Ctrl-C on its
/// terminal (and SIGINT from `kill`) goes to the vprocs, as to a native
/// container's processes, instead of opening the vkernel's debugger.
pub struct Container(pub ConsoleStdio);

impl Stdio for Container {
    fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize, i64> {
        self.0.write(fd, data)
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i64> {
        self.0.read(buf)
    }
    fn host_fd(&self, fd: i32) -> Option<RawFd> {
        self.0.host_fd(fd)
    }
    fn readable(&self, waiter: Option<(i32, Arc<dyn Wake>)>) -> bool {
        self.0.readable(waiter)
    }
    fn take_interrupt(&mut self) -> bool {
        self.0.take_interrupt()
    }
    fn interrupt_pending(&self) -> bool {
        self.0.interrupt_pending()
    }
    fn interactive(&self) -> bool {
        false
    }
    fn flush(&mut self) {
        self.0.flush()
    }
    fn write_never_blocks(&self, fd: i32) -> bool {
        self.0.write_never_blocks(fd)
    }
}
