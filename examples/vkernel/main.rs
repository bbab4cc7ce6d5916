//! vkernel: a virtual kernel with a Linux-ABI personality that runs x86-64
//! Linux programs (static or dynamically linked) as vprocs on KVM.
//!
//! ```text
//! cargo run --release --example vkernel                  # built-in demo
//! cargo run --release --example vkernel -- run PROGRAM [ARGS...]
//! cargo run --release --example vkernel -- run --disk fs.tar /bin/busybox ls /
//! cargo run --release --example vkernel -- mkimage DIR fs.tar
//! cargo run --release --example vkernel -- run --cpus 2 /bin/busybox sh -c 'echo a b | wc -w'
//! ```
//!
//! Programs may fork, execve, wait, kill and talk through pipes: they are
//! vprocs of one virtual kernel, scheduled (CFS, nice, real-time classes)
//! on `--cpus` vCPU threads with timer preemption; `--max-procs` bounds
//! their number (fork beyond it fails with EAGAIN).
//!
//! Options go before PROGRAM: everything after it is the program's own
//! arguments, options included (`vkernel run /usr/bin/perl -e 'print 1'`
//! gives perl its `-e`), as with `env`, `nice` or `qemu-x86_64`.
//!
//! PROGRAM is a path in the vproc's root (with `--disk`: a host path, else
//! a path in the image). Only its ELF headers and loaded segments are read.
//! Like a shell, vkernel exits 127 when PROGRAM is missing and 126 when it
//! cannot run it (a directory, not a regular file, no execute bit,
//! unreadable, not an x86-64 ELF). The vproc sees the host's `/`
//! read-only (`--root DIR` picks another directory, `--disk fs.tar` a tar
//! image) under an in-memory writable overlay: what it writes never reaches
//! the host, except in directories exposed with `--bind HOST[:GUEST]:rw`.
//! `/dev` and `/proc` are synthetic. Build an image with
//! `tar -cf fs.tar -C DIR .` or with `mkimage`. Standard input and output go through the Console driver;
//! Ctrl-C drops into a small debugger prompt (`help` lists its commands)
//! when stdin is a terminal; otherwise SIGINT goes to the vprocs, as to a
//! native foreground job. SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and
//! SIGWINCH sent to vkernel go to the first vproc (as a container runtime
//! forwards them to its first process); vkernel ends when that vproc
//! ends, or on a SIGTERM `--term-grace` seconds or more after the first
//! (every vproc is killed: status 137). A closed stdin, stdout or stderr
//! (`>&-`) is /dev/null for the vprocs. A panic in any vkernel thread
//! exits 70.
//! The exit status is the program's, or 128 + signal when a signal killed
//! it.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use vkernel::core::prelude::*;
use vkernel::devices::Disk;
use vkernel::linux;
use vkernel::linux::{vk_eprint, vk_eprintln};

use linux::exec::Image;
use linux::fs::Fs;
use linux::kernel::Options as KernelOptions;
use linux::launch::Launch;
use linux::stdio::ConsoleStdio;
use linux::ExitStatus;

#[derive(Parser)]
#[command(
    name = "vkernel",
    version,
    about = "Run x86-64 Linux programs (static or dynamic) as vprocs of a virtual kernel on KVM"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an x86-64 Linux program (static, or dynamic with its loader in
    /// the root). Options go before PROGRAM; everything after PROGRAM is
    /// passed to it unparsed.
    Run(RunArgs),
    /// Run the built-in demo program.
    Demo(Opts),
    /// Build a filesystem image (tar) from a directory.
    Mkimage {
        /// Directory whose contents become the image's root.
        dir: PathBuf,
        /// Image file to write.
        image: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct Opts {
    /// Root filesystem image (a tar file: `tar -cf fs.tar -C DIR .`)
    /// instead of a host directory.
    #[arg(long, conflicts_with = "root")]
    disk: Option<PathBuf>,
    /// Host directory the vproc sees as `/` (read-only, with an in-memory
    /// writable overlay).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Expose a host directory: HOST[:GUEST][:rw] (GUEST defaults to HOST;
    /// without :rw read-only; with :rw writes reach the host). Repeatable.
    #[arg(long = "bind", value_name = "HOST[:GUEST][:rw]")]
    bind: Vec<String>,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 1024)]
    mem: u64,
    /// Pages mapped per first-touch page fault.
    #[arg(long, default_value_t = 16)]
    fault_around: u64,
    /// Log every syscall on stderr.
    #[arg(long)]
    trace: bool,
    /// Print trap counters at exit.
    #[arg(long)]
    stats: bool,
    /// Extra environment variables (NAME=VALUE), repeatable.
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// vCPU threads the vprocs are scheduled on.
    #[arg(long, default_value_t = 1)]
    cpus: usize,
    /// Most processes alive at once, zombies included (fork beyond gets
    /// EAGAIN); threads do not count (see --max-threads).
    #[arg(long, default_value_t = 64)]
    max_procs: usize,
    /// Most threads alive at once in all processes (clone beyond gets
    /// EAGAIN). 0: as Linux's threads-max, guest RAM / 128 KiB (8,192 with
    /// --mem 1024).
    #[arg(long, default_value_t = 0)]
    max_threads: usize,
    /// Scheduler tick in milliseconds (timer preemption).
    #[arg(long, default_value_t = 4)]
    tick_ms: u64,
    /// Real-time throttling period in microseconds (Linux's
    /// sched_rt_period_us).
    #[arg(long, default_value_t = 1_000_000)]
    rt_period_us: u64,
    /// Real-time runtime per period and vCPU in microseconds (Linux's
    /// sched_rt_runtime_us): SCHED_FIFO/SCHED_RR vprocs that used it up
    /// wait for the next period so others run; -1: no throttling.
    #[arg(long, default_value_t = 950_000, allow_hyphen_values = true)]
    rt_runtime_us: i64,
    /// Print memory statistics (RSS/PSS/USS) of all vprocs when the
    /// program exits.
    #[arg(long)]
    memstats: bool,
    /// With --memstats: print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print every vproc's exit and CPU time at the end.
    #[arg(long)]
    ps: bool,
    /// Every syscall exits to the vkernel (no exitless server: see
    /// `vkernel_core::exitless`).
    #[arg(long)]
    no_exitless: bool,
    /// The vprocs' network: `none` (the default) is the vkernel's own
    /// loopback network only (127.0.0.1 and ::1 between vprocs; nothing
    /// reaches the host). `tap:IFACE,ip=A/P[,gw=G][,dns=D][,host=A/P]` or
    /// `tap:IFACE,dhcp` adds a TCP/IP stack (smoltcp) on the host tap
    /// IFACE (created when allowed; `host=` gives its host side an
    /// address and brings it up). `host` carries the vprocs' Internet
    /// sockets on the host's own (less isolated: they reach what this
    /// process reaches and listen on the host's ports).
    #[arg(long, default_value = "none", value_parser = parse_net)]
    net: String,
    /// Leave syscall sites as they are: served calls still use the
    /// `syscall` instruction (on PVM hosts the fast path rewrites `mov eax,
    /// N; syscall` sites to reach the server without it).
    #[arg(long)]
    no_syscall_patching: bool,
    /// Leave `cpuid` sites as they are: every `cpuid` a vproc runs is
    /// emulated by KVM (otherwise, where KVM offers CPUID faulting, the
    /// first processes of each program answer theirs in the vkernel and
    /// later ones start with the sites rewritten to their answers).
    #[arg(long)]
    no_cpuid_patching: bool,
    /// What backs guest RAM: auto (probe the host for huge pages: hugetlb
    /// when reserved, else anonymous memory with MADV_HUGEPAGE where THP
    /// is enabled), anonymous, memfd or hugetlb.
    #[arg(long, value_enum, default_value = "auto")]
    ram_backing: RamBackingArg,
    /// Map first touches with 4 KiB pages only (no 2 MiB large pages).
    #[arg(long)]
    no_large_pages: bool,
    /// Debug the program with gdb: it starts stopped before its first
    /// instruction and the vkernel waits at ADDR (HOST:PORT, or a Unix
    /// socket path) for gdb's `target remote ADDR` (or `target
    /// extended-remote ADDR`). Its threads stop together (all-stop); the
    /// children it forks run freely; when gdb detaches it runs on.
    #[arg(long, value_name = "ADDR")]
    gdb: Option<linux::gdb_remote::GdbAddr>,
    /// Seconds after a first SIGTERM (forwarded to the first vproc) from
    /// which another SIGTERM kills every vproc.
    #[arg(long, default_value_t = 10)]
    term_grace: u64,
    /// Write the vkernel's diagnostics (unimplemented syscalls, warnings)
    /// to FILE, each line with the vproc's pid and command. By default
    /// they are dropped: the program's stderr is the program's.
    #[arg(long, value_name = "FILE", env = "VKERNEL_LOG")]
    log: Option<PathBuf>,
    /// Also write the vkernel's diagnostics to stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
}

/// `--net`: `none` or `tap:...` (checked here; started by `run`).
fn parse_net(s: &str) -> Result<String, String> {
    match s {
        "none" => Ok(s.to_string()),
        "host" => Ok(s.to_string()),
        t => linux::net::NetConfig::parse(t)
            .map(|_| t.to_string())
            .map_err(|e| e.to_string()),
    }
}

/// `--ram-backing` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RamBackingArg {
    Auto,
    Anonymous,
    Memfd,
    Hugetlb,
}

impl RamBackingArg {
    fn backing(self) -> vkernel::core::ram::RamBacking {
        use vkernel::core::ram::RamBacking;
        match self {
            RamBackingArg::Auto => RamBacking::Auto,
            RamBackingArg::Anonymous => RamBacking::Anonymous,
            RamBackingArg::Memfd => RamBacking::Memfd,
            RamBackingArg::Hugetlb => RamBacking::MemfdHugetlb,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    opts: Opts,
    /// PROGRAM [ARGS...]: the program (a path in the vproc's root; with
    /// --disk a host path, else a path in the image), then its arguments.
    /// Option parsing stops at PROGRAM: what follows is the program's,
    /// `-e` or `--help` included.
    #[arg(
        value_name = "PROGRAM [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    command: Vec<String>,
}

/// Errors of the command line tool.
#[derive(Debug, thiserror::Error)]
enum MainError {
    /// The machine could not be built; MachineError's messages say what to
    /// do (only a missing or inaccessible /dev/kvm is about permissions).
    #[error("{0}")]
    Machine(#[from] MachineError),
    #[error("{0}")]
    Disk(#[from] vkernel::devices::DiskError),
    #[error("{0}")]
    Fs(#[from] linux::fs::FsError),
    #[error("{0}")]
    Stdio(#[from] linux::stdio::StdioError),
    #[error("{0}")]
    Vproc(#[from] linux::VprocError),
    #[error("{path}: {why} (give a host path, or a path inside the --disk image)")]
    NotFound { path: String, why: String },
    #[error("{path}: {why}")]
    CannotRun { path: String, why: String },
    #[error("--net: {0}")]
    Net(#[from] linux::net::NetError),
    #[error("--net: cannot write /etc/hosts, /etc/resolv.conf or /sys/class/net in the vprocs' tree: errno {0}")]
    NetEtc(i64),
    #[error(
        "--gdb {addr}: {source} (give a free HOST:PORT, or a socket path in a writable directory)"
    )]
    Gdb {
        addr: String,
        source: std::io::Error,
    },
    #[error("--log {path}: {source} (give a writable file path)")]
    Log {
        path: String,
        source: std::io::Error,
    },
}

fn demo_image() -> Vec<u8> {
    let msg =
        b"Hello from a vproc! This static ELF ran in its own hardware-isolated address space,\n\
and every syscall it made was served by the vkernel personality.\n\
Try: cargo run --release --example vkernel -- run /bin/busybox echo hi\n";
    let mut code = vec![
        0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1 (write)
        0xbf, 0x01, 0x00, 0x00, 0x00, // mov edi, 1
        0x48, 0x8d, 0x35, 0x10, 0x00, 0x00, 0x00, // lea rsi, [rip+16]
        0xba, 0, 0, 0, 0, // mov edx, len
        0x0f, 0x05, // syscall
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
        0x31, 0xff, // xor edi, edi
        0x0f, 0x05, // syscall
    ];
    let len = u32::try_from(msg.len()).expect("the demo message is short");
    code[18..22].copy_from_slice(&len.to_le_bytes());
    code.extend_from_slice(msg);
    linux::elf::tiny_elf(&code)
}

/// Find PROGRAM: a host path first, else (when it is not there) a path in
/// the disk image. Like a shell: a missing program is `NotFound` (127); a
/// directory, a file that is not regular (a FIFO, a device), one without an
/// execute bit or one that cannot be read is `CannotRun` (126). Nothing is
/// read yet; the loader reads the ELF headers and segments on demand.
fn find_program(path: &str, fs: &Arc<Fs>) -> Result<(Image, String), MainError> {
    let cannot = |why: String| MainError::CannotRun {
        path: path.to_string(),
        why,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            check_host_program(path, &meta).map_err(cannot)?;
            // O_NONBLOCK: should the file have become a FIFO since the
            // check, opening it does not hang (fstat refuses it below).
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| cannot(format!("cannot read it: {e}; check its permissions")))?;
            let meta = file
                .metadata()
                .map_err(|e| cannot(format!("cannot stat it: {e}")))?;
            check_host_program(path, &meta).map_err(cannot)?;
            let exe = std::fs::canonicalize(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.to_string());
            let image = Image::Host {
                file: Arc::new(file),
                size: meta.len(),
            };
            Ok((image, exe))
        }
        Err(host_err) => {
            let host_errno = host_err.raw_os_error();
            if !matches!(host_errno, Some(libc::ENOENT | libc::ENOTDIR)) {
                return Err(cannot(format!("{host_err}; check its permissions")));
            }
            let in_image = fs.resolve(linux::fs::ROOT, path.as_bytes(), true);
            let ino = match in_image {
                Ok(ino) => ino,
                // As a shell: only "no such file" is 127 ("not a
                // directory" is 126).
                Err(e) if e == linux::fs::errno::ENOENT && host_errno == Some(libc::ENOENT) => {
                    return Err(MainError::NotFound {
                        path: path.to_string(),
                        why: host_err.to_string(),
                    })
                }
                Err(e) if e == linux::fs::errno::ENOTDIR => {
                    return Err(cannot(
                        "Not a directory in the disk image (a component of the path is a file)"
                            .into(),
                    ))
                }
                Err(e) if e == linux::fs::errno::ENOENT => {
                    return Err(cannot(format!(
                        "{host_err} (give a host path, or a path inside the --disk image)"
                    )))
                }
                Err(e) => {
                    return Err(cannot(format!(
                        "cannot look it up in the disk image (errno {e}, e.g. a symlink loop)"
                    )))
                }
            };
            let node = fs.inode(ino);
            match node.kind {
                linux::fs::Kind::File { .. } => {}
                linux::fs::Kind::Dir(_) => {
                    return Err(cannot(
                        "is a directory in the disk image; give the path of a program file".into(),
                    ))
                }
                _ => {
                    return Err(cannot(
                        "is not a regular file in the disk image; give the path of a program file"
                            .into(),
                    ))
                }
            }
            if node.mode & 0o111 == 0 {
                return Err(cannot(format!(
                    "permission denied: it has no execute bit in the disk image (mode {:o}); \
                     rebuild the image after `chmod +x` on the file",
                    node.mode & 0o7777
                )));
            }
            Ok((
                Image::Disk {
                    fs: fs.clone(),
                    ino,
                },
                path.to_string(),
            ))
        }
    }
}

/// Find PROGRAM (an absolute path) in the vproc's root, following its
/// symlinks there; a program that is not there is looked for on the host.
fn find_in_root(path: &str, fs: &Arc<Fs>) -> Result<(Image, String), MainError> {
    let cannot = |why: String| MainError::CannotRun {
        path: path.to_string(),
        why,
    };
    let ino = match fs.resolve(linux::fs::ROOT, path.as_bytes(), true) {
        Ok(ino) => ino,
        Err(e) if e == linux::fs::errno::ENOENT => return find_program(path, fs),
        Err(e) => {
            return Err(cannot(format!(
                "cannot look it up in the root ({})",
                std::io::Error::from_raw_os_error(i32::try_from(e).unwrap_or(libc::EIO))
            )))
        }
    };
    let node = fs.inode(ino);
    match node.kind {
        linux::fs::Kind::File { .. } => {}
        linux::fs::Kind::Dir(_) => {
            return Err(cannot(
                "is a directory; give the path of a program file".into(),
            ))
        }
        // Say what it is as the host's checks do.
        _ => return find_program(path, fs),
    }
    if node.mode & 0o111 == 0 {
        return Err(cannot(format!(
            "permission denied: the file is not executable (mode {:o}); make it executable \
             with `chmod +x`",
            node.mode & 0o7777
        )));
    }
    // A file the invoking user cannot read fails here, not in the loader.
    let mut probe = [0u8; 1];
    if let Err(e) = fs.read(ino, 0, &mut probe) {
        return Err(cannot(format!(
            "cannot read it: {}; check its permissions",
            std::io::Error::from_raw_os_error(i32::try_from(e).unwrap_or(libc::EIO))
        )));
    }
    let exe = String::from_utf8_lossy(&fs.path_of(ino)).into_owned();
    Ok((
        Image::Disk {
            fs: fs.clone(),
            ino,
        },
        exe,
    ))
}

/// Why the host file `path` with `meta` cannot be run, if so.
fn check_host_program(path: &str, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        return Err("is a directory; give the path of a program file".into());
    }
    if !t.is_file() {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "is {what}, not a regular file; vkernel runs programs from regular files"
        ));
    }
    let c = std::ffi::CString::new(path).map_err(|_| "the path contains a NUL byte".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // access() only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        let mode = meta.permissions().mode() & 0o7777;
        if e.raw_os_error() == Some(libc::EACCES) {
            return Err(format!(
                "permission denied: the file is not executable (mode {mode:o}); \
                 make it executable with `chmod +x {path}`"
            ));
        }
        return Err(format!("cannot execute it: {e} (mode {mode:o})"));
    }
    Ok(())
}

/// Start `--net`'s network (None for `none`) and write the vprocs'
/// /etc files for it.
fn start_net(net: &str, fs: &Fs) -> Result<Option<Arc<linux::net::Net>>, MainError> {
    let net = match net {
        "none" => None,
        "host" => Some(linux::net::Net::start_host()?),
        t => {
            let cfg = linux::net::NetConfig::parse(t).map_err(|e| MainError::CannotRun {
                path: "--net".into(),
                why: e.to_string(),
            })?;
            let dhcp = cfg.dhcp;
            let net = linux::net::Net::start(cfg)?;
            if dhcp {
                vk_eprintln!(
                    "vkernel: --net: asking DHCP for an address on {} ...",
                    net.tap()
                );
                match net.wait_address(std::time::Duration::from_secs(15)) {
                    Some(a) => vk_eprintln!("vkernel: --net: DHCP gave {a}"),
                    None => {
                        return Err(MainError::CannotRun {
                            path: "--net".into(),
                            why: format!(
                                "no DHCP answer on tap {} in 15 s: serve DHCP on its host side \
                                 (e.g. dnsmasq --interface={} --dhcp-range=...), or give ip=ADDR/PREFIX",
                                net.tap(),
                                net.tap()
                            ),
                        })
                    }
                }
            }
            net.install_etc(fs).map_err(MainError::NetEtc)?;
            Some(net)
        }
    };
    if net.as_ref().is_none_or(|n| !n.is_host()) {
        // The vprocs see their own interfaces, not the host's.
        linux::net::install_sys_class_net(fs, net.as_deref()).map_err(MainError::NetEtc)?;
    }
    Ok(net)
}

fn run(
    opts: Opts,
    path: String,
    image: Option<Vec<u8>>,
    args: Vec<String>,
) -> Result<ExitStatus, MainError> {
    let binds = opts
        .bind
        .iter()
        .map(|b| linux::fs::Bind::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let root = match &opts.disk {
        Some(p) => {
            vk_eprintln!("vkernel: mounting {} ...", p.display());
            linux::fs::RootSpec::Tar(Disk::open_read_only(p)?)
        }
        None => linux::fs::RootSpec::Host(opts.root.clone()),
    };
    let fs = Arc::new(Fs::new(root, &binds)?);
    let net = start_net(&opts.net, &fs)?;
    let (image, exe) = match image {
        Some(i) => (Image::Bytes(Arc::new(i)), path.clone()),
        None if opts.disk.is_none() && path.starts_with('/') => find_in_root(&path, &fs)?,
        None => find_program(&path, &fs)?,
    };
    let mut envp: Vec<Vec<u8>> = vec![
        b"PATH=/bin:/usr/bin:/sbin:/usr/sbin".to_vec(),
        b"HOME=/".to_vec(),
    ];
    if let Ok(t) = std::env::var("TERM") {
        envp.push(format!("TERM={t}").into_bytes());
    }
    envp.extend(opts.env.iter().map(|e| e.clone().into_bytes()));
    // Not clamped: Machine::builder reports a count out of range with the
    // number asked for and the host's maximum.
    let kopts = KernelOptions {
        cpus: opts.cpus,
        max_procs: opts.max_procs.max(1),
        max_threads: opts.max_threads,
        tick: std::time::Duration::from_millis(opts.tick_ms.max(1)),
        memstats: opts.memstats,
        memstats_json: opts.json,
        exitless: !opts.no_exitless,
        patch_syscalls: !opts.no_syscall_patching,
        patch_cpuid: !opts.no_cpuid_patching,
        rt_period_us: opts.rt_period_us,
        rt_runtime_us: opts.rt_runtime_us,
        forward_signals: true,
        term_grace: std::time::Duration::from_secs(opts.term_grace),
        net: net.clone(),
        debugger: match &opts.gdb {
            Some(a) => Some(linux::gdb_remote::debugger(a, |a| {
                vk_eprintln!("vkernel: the program is stopped before its first instruction; waiting for gdb on {a} (target remote {a})");
            }).map_err(|source| MainError::Gdb {
                addr: a.to_string(),
                source,
            })?),
            None => None,
        },
        ..KernelOptions::default()
    };
    let mut launch = Launch::program(image, path.clone())
        .exe(exe)
        .args(args)
        .env(envp)
        .root(fs)
        .ram(opts.mem << 20)
        .ram_backing(opts.ram_backing.backing())
        .options(kopts)
        .fault_around(opts.fault_around)
        .trace(opts.trace)
        .large_pages(!opts.no_large_pages);
    // With the host's own / as the root, the program starts where it was
    // started from (as it would natively).
    if opts.disk.is_none() && opts.root == std::path::Path::new("/") {
        if let Ok(d) = std::env::current_dir() {
            use std::os::unix::ffi::OsStrExt;
            launch = launch.cwd(d.as_os_str().as_bytes());
        }
    }
    let machine = launch.machine()?;
    let stdio = ConsoleStdio::new(machine.kicker(0).expect("vCPU 0 exists"))?;
    let report = launch.run_on(&machine, Box::new(stdio))?;
    if let Some(net) = &net {
        // What the vprocs wrote before they went still goes out.
        if !net.flush(std::time::Duration::from_secs(10)) {
            vk_eprintln!("vkernel: TCP connections still open after 10 s were dropped");
        }
    }
    let status = report.status;
    if opts.stats {
        print_stats(&report, &machine);
    }
    for line in linux::diag::report_lines(&report.unimplemented) {
        if opts.stats {
            vk_eprintln!("vkernel: {line}");
        }
        log::warn!(target: linux::diag::TARGET, "{line}");
    }
    if opts.ps {
        vk_eprintln!("  PID  PPID STATUS  RUNTIME_MS SYSCALLS POLICY          CMD");
        for p in &report.procs {
            vk_eprintln!(
                "{:5} {:5} {:6} {:11.1} {:8} {:15} {}",
                p.pid,
                p.ppid,
                p.status.code(),
                p.runtime_ns as f64 / 1e6,
                p.syscalls,
                format!("{:?}", p.policy),
                p.comm
            );
            if let Some(d) = &p.death {
                vk_eprintln!("      {}: {d}", p.pid);
            }
        }
    }
    if let Some(m) = &report.memstats {
        vk_eprint!("{m}");
    }
    if let (ExitStatus::Signaled(s), Some(d)) = (status, &report.death) {
        // Like a shell, say nothing about SIGPIPE (`vk run ... | head`)
        // and SIGINT (Ctrl-C, or kill -INT without a terminal).
        if s != linux::signal::SIGPIPE && s != linux::signal::SIGINT {
            vk_eprintln!("vkernel: {path}: {d}");
        }
    }
    Ok(status)
}

/// Where the vkernel's diagnostics go (`linux::diag`): a file with
/// `--log` (or `VKERNEL_LOG`), stderr with `-v` (both when both are given),
/// stderr when `RUST_LOG` is set (for developers), else nowhere. The level
/// is `warn` unless `RUST_LOG` says otherwise.
fn init_log(file: Option<&std::path::Path>, verbose: bool) -> Result<(), MainError> {
    let rust_log = std::env::var_os("RUST_LOG").is_some();
    let file = match file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| MainError::Log {
                    path: p.display().to_string(),
                    source: e,
                })?,
        ),
        None => None,
    };
    let to_stderr = verbose || (rust_log && file.is_none());
    if file.is_none() && !to_stderr {
        return Ok(());
    }
    // Log lines to a closed stderr are dropped: this target ignores write
    // errors (unlike eprint!, which panics).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Pipe(Box::new(LogSink {
            file,
            stderr: to_stderr,
        })))
        .init();
    Ok(())
}

/// The log's writer: the `--log` file and/or stderr; write errors are
/// ignored (a full disk or a closed stderr never stops the vkernel).
struct LogSink {
    file: Option<std::fs::File>,
    stderr: bool,
}

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &mut self.file {
            let _ = f.write_all(buf);
        }
        if self.stderr {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `--stats`: the run's counters on stderr.
fn print_stats(report: &linux::kernel::Report, machine: &Machine) {
    vk_eprintln!(
        "vkernel: {} syscalls, {} forks ({} refused), {} context switches, at most {} vprocs, \
         {} lost wake-ups, {} syscall sites patched",
        report.syscalls,
        report.forks,
        report.fork_eagain,
        report.context_switches,
        report.max_alive,
        report.lost_wakeups,
        report.patched_sites
    );
    vk_eprintln!(
        "vkernel: calls: {} through exits ({} of them from rewritten sites), {} exitless \
         through rewritten sites, {} exitless through `syscall`",
        report.syscalls,
        report.exit_calls_rewritten,
        report.served_rewritten,
        report.served_syscall
    );
    vk_eprintln!(
        "vkernel: cpuid: {} answered by the vkernel (learning processes), {} sites \
         rewritten to their answers",
        report.cpuid_answered,
        report.cpuid_sites
    );
    for (i, s) in report.cpu_stats.iter().enumerate() {
        vk_eprintln!("vkernel: vCPU {i}: {s:?}");
    }
    vk_eprintln!("vkernel: {}", ram_line(machine));
}

/// What backs guest RAM, for `--stats`: the backing, whether the mapping
/// starts on a 2 MiB boundary in host memory (guest-physical 0 always
/// does), which the host needs to back it with huge pages and KVM to map
/// 2 MiB at once, and the host's transparent huge page modes.
fn ram_line(machine: &vkernel::core::machine::Machine) -> String {
    let ram = machine.ram();
    let host = ram.host_ptr(0, 0).map_or(0, |p| p as u64);
    let probe = vkernel::core::ram::HugeProbe::read();
    format!(
        "RAM: {} MiB, {:?}, host address {host:#x} ({}2 MiB aligned), THP anon '{}' shmem '{}'",
        ram.size() >> 20,
        machine.ram_backing(),
        if host.is_multiple_of(2 << 20) {
            ""
        } else {
            "not "
        },
        probe.thp_anon,
        probe.thp_shmem
    )
}

fn main() -> ExitCode {
    // First of all: a closed fd 0, 1 or 2 becomes /dev/null before any
    // file the vkernel opens can take its number.
    linux::stdio::fill_closed_stdio();
    linux::stdio::install_panic_hook();
    // One malloc arena for all threads: glibc otherwise reserves 64 MiB of
    // address space per thread's arena at its first allocation, and under a
    // tight `ulimit -v` that reservation fails in whichever thread comes
    // first (an abort, "memory allocation of N bytes failed"), after the
    // checks that give a clear error instead. The vkernel's threads
    // allocate little on their hot paths.
    // SAFETY: mallopt only sets a malloc parameter; called before any
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let cli = Cli::parse();
    let opts = match &cli.cmd {
        Some(Cmd::Run(r)) => Some(&r.opts),
        Some(Cmd::Demo(o)) => Some(o),
        _ => None,
    };
    if let Err(e) = init_log(
        opts.and_then(|o| o.log.as_deref()),
        opts.is_some_and(|o| o.verbose),
    ) {
        vk_eprintln!("vkernel: {e}");
        return ExitCode::from(1);
    }
    let result = match cli.cmd {
        None => run(
            Opts {
                disk: None,
                root: PathBuf::from("/"),
                bind: Vec::new(),
                mem: 64,
                fault_around: 16,
                trace: false,
                stats: false,
                env: Vec::new(),
                cpus: 1,
                max_procs: 64,
                max_threads: 0,
                tick_ms: 4,
                rt_period_us: 1_000_000,
                rt_runtime_us: 950_000,
                memstats: false,
                json: false,
                ps: false,
                no_exitless: false,
                net: "none".to_string(),
                no_syscall_patching: false,
                no_cpuid_patching: false,
                ram_backing: RamBackingArg::Auto,
                no_large_pages: false,
                gdb: None,
                term_grace: 10,
                log: std::env::var_os("VKERNEL_LOG").map(PathBuf::from),
                verbose: false,
            },
            "demo".into(),
            Some(demo_image()),
            Vec::new(),
        ),
        Some(Cmd::Demo(o)) => run(o, "demo".into(), Some(demo_image()), Vec::new()),
        Some(Cmd::Run(mut r)) => {
            let program = r.command.remove(0);
            run(r.opts, program, None, r.command)
        }
        Some(Cmd::Mkimage { dir, image }) => match linux::fs::build_image(&dir, &image) {
            Ok(n) => {
                vk_eprintln!("vkernel: wrote {} ({n} bytes)", image.display());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                vk_eprintln!("vkernel: {e}");
                return ExitCode::from(1);
            }
        },
    };
    match result {
        // code() is 0..=255 (an exit code, or 128 + a signal number).
        Ok(s) => ExitCode::from(u8::try_from(s.code()).unwrap_or(255)),
        Err(e) => {
            vk_eprintln!("vkernel: {e}");
            let code = match e {
                MainError::NotFound { .. } => 127,
                MainError::CannotRun { .. } => 126,
                MainError::Vproc(linux::VprocError::Elf { .. }) => 126,
                // As a shell: execve's ENOENT for a missing loader is 127.
                MainError::Vproc(linux::VprocError::Interp {
                    source: linux::load::InterpError::NotFound { .. },
                    ..
                }) => 127,
                MainError::Vproc(linux::VprocError::Interp { .. }) => 126,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}
