//! Starting a virtual kernel: the layer above `kernel` and `syscalls` that
//! joins them. The kernel (process table, run loop, exitless server) never
//! imports the syscall layer; [`run`] hands it the syscall table's exitless
//! handlers.
//!
//! [`Launch`] is the builder the command line, vkbench and the tests use:
//! the program, its arguments and environment, the root filesystem, the
//! machine (RAM, vCPUs) and the kernel's [`Options`], then one call that
//! builds the machine, loads the program and runs it.
//!
//! ```no_run
//! use vkernel_linux::launch::Launch;
//! use vkernel_linux::stdio::BufferStdio;
//! # fn f() -> Result<(), vkernel_linux::launch::LaunchError> {
//! let stdio = BufferStdio::new(b"");
//! let out = stdio.stdout.clone();
//! let report = Launch::host_program("/bin/busybox")?
//!     .args(["echo", "hello"])
//!     .cpus(2)
//!     .run(Box::new(stdio))?;
//! assert_eq!(report.status.code(), 0);
//! assert_eq!(&out.lock().unwrap()[..], b"hello\n");
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::core::machine::{Machine, MachineError};
use crate::core::ram::RamBacking;
use crate::exec::Image;
use crate::fs::Fs;
use crate::kernel::{Options, Report, Spawner};
use crate::stdio::Stdio;
use crate::{Config, Vproc, VprocError};

/// Run `init` and everything it forks on `opts.cpus` vCPUs of `machine`
/// until `init` exits (see [`crate::kernel`]).
pub fn run(machine: &Machine, init: Vproc, opts: &Options) -> Result<Report, VprocError> {
    crate::kernel::run_with(
        machine,
        init,
        opts,
        &crate::syscalls::table::fast_calls(),
        None,
    )
}

/// [`run`], with `spawner` adding processes to the kernel from other host
/// threads while the run lasts ([`Spawner::spawn`]).
pub fn run_spawning(
    machine: &Machine,
    init: Vproc,
    opts: &Options,
    spawner: &Spawner,
) -> Result<Report, VprocError> {
    crate::kernel::run_with(
        machine,
        init,
        opts,
        &crate::syscalls::table::fast_calls(),
        Some(spawner),
    )
}

/// Why a [`Launch`] did not run.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program could not be opened on the host.
    #[error("{path}: {source}")]
    Program {
        /// The host path.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The machine could not be built (no /dev/kvm, RAM or vCPUs out of
    /// range).
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The program could not be loaded, or the virtual kernel failed.
    #[error(transparent)]
    Vproc(#[from] VprocError),
}

/// A virtual kernel to start: one program as init, its root filesystem,
/// the machine it runs on and the kernel's options.
///
/// Defaults: the root is an empty filesystem (the program is handed over
/// as a file, not looked up in it), no arguments beyond argv[0], an empty
/// environment, 512 MiB of RAM, one vCPU, fault-around of 16 pages, large
/// pages on, and [`Options::default`].
pub struct Launch {
    image: Image,
    cfg: Config,
    root: Arc<Fs>,
    ram: u64,
    ram_backing: Option<RamBacking>,
    large_pages: bool,
    cwd: Option<Vec<u8>>,
    opts: Options,
    spawner: Option<Spawner>,
}

impl Launch {
    /// Run `image`, known to the program as `path` (argv[0], AT_EXECFN and
    /// `/proc/self/exe`).
    pub fn program(image: Image, path: impl Into<String>) -> Launch {
        let path = path.into();
        Launch {
            image,
            cfg: Config {
                argv: vec![path.clone().into_bytes()],
                exe: path.clone(),
                path,
                ..Config::default()
            },
            root: Arc::new(Fs::empty()),
            ram: 512 << 20,
            ram_backing: None,
            large_pages: true,
            cwd: None,
            opts: Options::default(),
            spawner: None,
        }
    }

    /// Run the ELF file `bytes`, known to the program as `path`.
    pub fn bytes(bytes: Vec<u8>, path: impl Into<String>) -> Launch {
        Launch::program(Image::Bytes(Arc::new(bytes)), path)
    }

    /// Run the host file `path`, known to the program by its canonical
    /// path. The file is opened now and kept open.
    pub fn host_program(path: impl AsRef<Path>) -> Result<Launch, LaunchError> {
        let p = path.as_ref();
        let err = |source| LaunchError::Program {
            path: p.display().to_string(),
            source,
        };
        let canon = std::fs::canonicalize(p).map_err(err)?;
        let file = std::fs::File::open(&canon).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let image = Image::Host {
            file: Arc::new(file),
            size,
        };
        Ok(Launch::program(image, canon.display().to_string()))
    }

    /// Append arguments after argv[0].
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.cfg
            .argv
            .extend(args.into_iter().map(|a| a.as_ref().to_vec()));
        self
    }

    /// Replace argv[0] (the program's path stays what it was given as).
    pub fn argv0(mut self, argv0: impl AsRef<[u8]>) -> Launch {
        self.cfg.argv[0] = argv0.as_ref().to_vec();
        self
    }

    /// Add `NAME=value` strings to the environment.
    pub fn env<I, S>(mut self, vars: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.cfg
            .envp
            .extend(vars.into_iter().map(|v| v.as_ref().to_vec()));
        self
    }

    /// What `/proc/self/exe` names (default: the program's path).
    pub fn exe(mut self, exe: impl Into<String>) -> Launch {
        self.cfg.exe = exe.into();
        self
    }

    /// The root filesystem every vproc sees.
    pub fn root(mut self, fs: Arc<Fs>) -> Launch {
        self.root = fs;
        self
    }

    /// The directory init starts in, a path in the root filesystem
    /// (default `/`; one that is not a directory there is ignored).
    pub fn cwd(mut self, path: impl AsRef<[u8]>) -> Launch {
        self.cwd = Some(path.as_ref().to_vec());
        self
    }

    /// vCPUs: the machine gets this many and the kernel runs one thread on
    /// each.
    pub fn cpus(mut self, n: usize) -> Launch {
        self.opts.cpus = n;
        self
    }

    /// Guest RAM in bytes.
    pub fn ram(mut self, bytes: u64) -> Launch {
        self.ram = bytes;
        self
    }

    /// How guest RAM is backed on the host (default: the machine's
    /// [`RamBacking`] choice).
    pub fn ram_backing(mut self, backing: RamBacking) -> Launch {
        self.ram_backing = Some(backing);
        self
    }

    /// Exitless syscalls on the machine and in the kernel (default on).
    pub fn exitless(mut self, on: bool) -> Launch {
        self.opts.exitless = on;
        self
    }

    /// The scheduler tick.
    pub fn tick(mut self, tick: Duration) -> Launch {
        self.opts.tick = tick;
        self
    }

    /// The user and group ids the vprocs see (getuid, getgid and their
    /// kin; default 0, 0): see [`Options::uid`].
    pub fn user(mut self, uid: u32, gid: u32) -> Launch {
        self.opts.uid = uid;
        self.opts.gid = gid;
        self
    }

    /// Every kernel option at once (`cpus` and `exitless` included).
    pub fn options(mut self, opts: Options) -> Launch {
        self.opts = opts;
        self
    }

    /// Let `spawner` add processes to the kernel from other host threads
    /// while it runs (see [`Spawner`]).
    pub fn spawner(mut self, spawner: &Spawner) -> Launch {
        self.spawner = Some(spawner.clone());
        self
    }

    /// Pages mapped per first-touch fault (default 16).
    pub fn fault_around(mut self, pages: u64) -> Launch {
        self.cfg.fault_around = pages;
        self
    }

    /// 2 MiB pages for anonymous memory (default on).
    pub fn large_pages(mut self, on: bool) -> Launch {
        self.large_pages = on;
        self
    }

    /// Log every syscall to the host's stderr.
    pub fn trace(mut self, on: bool) -> Launch {
        self.cfg.trace = on;
        self
    }

    /// The kernel options as they stand.
    pub fn kernel_options(&self) -> &Options {
        &self.opts
    }

    /// Build the machine this launch needs (its RAM, its vCPUs, exitless
    /// syscalls as asked).
    pub fn machine(&self) -> Result<Machine, MachineError> {
        let mut b = Machine::builder()
            .ram_size(self.ram)
            .vcpus(self.opts.cpus.max(1))
            .exitless(self.opts.exitless);
        if let Some(backing) = &self.ram_backing {
            b = b.ram_backing(backing.clone());
        }
        b.build()
    }

    /// Load the program into `machine` as init, with `stdio` as fds 0-2,
    /// without running it.
    pub fn load(&self, machine: &Machine, stdio: Box<dyn Stdio>) -> Result<Vproc, VprocError> {
        let mut vp = Vproc::load_from(
            machine,
            self.cfg.clone(),
            self.image.clone(),
            self.root.clone(),
            stdio,
        )?;
        vp.mm.set_large_pages(self.large_pages);
        if let Some(cwd) = &self.cwd {
            if let Ok(d) = self.root.resolve(crate::fs::ROOT, cwd, true) {
                if self.root.is_dir_handle(d) {
                    vp.cwd = d;
                }
            }
        }
        Ok(vp)
    }

    /// Load and run on `machine` (built by [`Launch::machine`] or with at
    /// least as many vCPUs) until init exits.
    pub fn run_on(self, machine: &Machine, stdio: Box<dyn Stdio>) -> Result<Report, VprocError> {
        let vp = self.load(machine, stdio)?;
        match &self.spawner {
            Some(s) => run_spawning(machine, vp, &self.opts, s),
            None => run(machine, vp, &self.opts),
        }
    }

    /// Build the machine, load the program and run it until it exits.
    pub fn run(self, stdio: Box<dyn Stdio>) -> Result<Report, LaunchError> {
        let machine = self.machine()?;
        Ok(self.run_on(&machine, stdio)?)
    }
}
