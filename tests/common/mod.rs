//! Shared helpers of the KVM integration tests.
#![allow(dead_code)]

use std::io::Write;

pub mod hang;

use vkernel::core::prelude::*;

/// Where code is mapped (linear, read+execute) in test vmspaces.
pub const CODE_VA: u64 = 0x40_0000;
/// First RAM frame handed to the frame allocator.
pub const FRAMES_START: u64 = 0x10_0000;

/// Iteration counts are multiplied by VKERNEL_TEST_SCALE (default 1.0):
/// the TCG guest of the SVM stage runs with a small scale.
// f64 -> u64 saturates; scaled counts are small and positive.
#[allow(clippy::cast_possible_truncation)]
pub fn scaled(n: u64) -> u64 {
    let s: f64 = std::env::var("VKERNEL_TEST_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as u64).max(1)
}

/// Print a loud SKIP and record it for .ci/run.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIP: {test}: {why}");
    eprintln!("\n*** {line} ***\n");
    if let Ok(path) = std::env::var("VKERNEL_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Is /dev/kvm there? Prints a loud SKIP for `test` when it is not.
pub fn have_kvm(test: &str) -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        true
    } else {
        skip(test, "/dev/kvm is not available");
        false
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(test: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "vkernel-test-{}-{}-{}",
        std::process::id(),
        test,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// How often a kick storm kicks: every 20 µs, or every 500 µs under QEMU
/// TCG (the SVM stage sets VKERNEL_TEST_TCG), where a nested guest can need
/// longer than 20 µs to enter at all, and a faster storm would interrupt
/// every entry before the vproc runs one instruction (a livelock the tests
/// would mistake for a hang).
pub fn storm_interval() -> std::time::Duration {
    if std::env::var_os("VKERNEL_TEST_TCG").is_some() {
        std::time::Duration::from_micros(500)
    } else {
        std::time::Duration::from_micros(20)
    }
}

/// Another thread kicking a vCPU every [`storm_interval`] until stopped.
pub struct KickStorm {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl KickStorm {
    /// Start kicking with `k`.
    pub fn start(k: vkernel::core::kick::Kicker) -> KickStorm {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut kicks = 0u64;
            while !s2.load(Ordering::Relaxed) {
                k.kick();
                kicks += 1;
                std::thread::sleep(storm_interval());
            }
            kicks
        });
        KickStorm { stop, thread }
    }

    /// Stop kicking: how many kicks were sent.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A machine, or None (after a loud SKIP) when /dev/kvm is absent.
pub fn machine(test: &str, ram: u64) -> Option<Machine> {
    if !std::path::Path::new("/dev/kvm").exists() {
        skip(test, "/dev/kvm is not available");
        return None;
    }
    Some(
        Machine::builder()
            .ram_size(ram)
            .build()
            .expect("build a machine on /dev/kvm"),
    )
}

/// Copy `code` to a fresh frame of `m` and map it read+execute (one
/// page, linear) at `va` in `vms`.
pub fn map_code(m: &Machine, frames: &mut FrameAlloc, vms: &Vmspace, va: u64, code: &[u8]) {
    let gpa = frames.alloc(m.ram()).unwrap();
    m.ram().write(gpa, code).unwrap();
    vms.mmap(
        va,
        0x1000,
        Backing::Linear {
            gpa,
            prot: Prot::RX,
        },
    )
    .unwrap();
}

/// A new vmspace of `m` running `code` at CODE_VA (copied to a fresh
/// frame).
pub fn code_vmspace(m: &Machine, frames: &mut FrameAlloc, code: &[u8]) -> Vmspace {
    let vms = m.vmspace_create().unwrap();
    map_code(m, frames, &vms, CODE_VA, code);
    vms
}

/// A vpagetable-governed region of `pages` pages at `va` in `vms`, each
/// mapped to a fresh frame with `flags`. Returns the table and the frames.
pub fn vpt_region(
    m: &Machine,
    frames: &mut FrameAlloc,
    vms: &Vmspace,
    va: u64,
    pages: u64,
    flags: u64,
) -> (VpTable, Vec<u64>) {
    let vpt = VpTable::new(m.ram(), frames).unwrap();
    let mut fr = Vec::new();
    for i in 0..pages {
        let f = frames.alloc(m.ram()).unwrap();
        vpt.map(m.ram(), frames, va + i * 4096, f, flags).unwrap();
        fr.push(f);
    }
    vms.mmap(va, pages * 4096, Backing::PageTable).unwrap();
    vms.mcontrol(va, pages * 4096, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    (vpt, fr)
}

/// Everything a single-vCPU test needs.
pub struct Env {
    /// The machine.
    pub m: Machine,
    /// Its vCPU 0.
    pub cpu: Cpu,
    /// Frames from FRAMES_START to the end of RAM.
    pub frames: FrameAlloc,
}

impl Env {
    /// 64 MiB of RAM, or None (after a loud SKIP) without /dev/kvm.
    pub fn new(test: &str) -> Option<Env> {
        Env::with_ram(test, 64 << 20)
    }

    /// [`Env::new`] with `ram` bytes of RAM.
    pub fn with_ram(test: &str, ram: u64) -> Option<Env> {
        let m = machine(test, ram)?;
        let cpu = m.take_cpu(0).unwrap();
        let frames = FrameAlloc::new(FRAMES_START, ram).unwrap();
        Some(Env { m, cpu, frames })
    }

    /// A vmspace running `code` at CODE_VA (copied to a fresh frame).
    pub fn vmspace_with(&mut self, code: &[u8]) -> Vmspace {
        code_vmspace(&self.m, &mut self.frames, code)
    }

    /// A vpagetable-governed region of `pages` pages at `va`, each mapped to
    /// a fresh frame with `flags`. Returns the table and the frames.
    pub fn vpt_region(
        &mut self,
        vms: &Vmspace,
        va: u64,
        pages: u64,
        flags: u64,
    ) -> (VpTable, Vec<u64>) {
        vpt_region(&self.m, &mut self.frames, vms, va, pages, flags)
    }

    /// Run `vms` from `f` until the next trap.
    pub fn run(&mut self, vms: &Vmspace, f: &mut TrapFrame) -> Trap {
        self.cpu.run(vms, f).expect("run")
    }

    /// Run until the next trap, which must be a page fault: its address,
    /// access and reason.
    pub fn run_to_fault(&mut self, vms: &Vmspace, f: &mut TrapFrame) -> (u64, Access, FaultReason) {
        match self.run(vms, f) {
            Trap::PageFault {
                addr,
                access,
                reason,
            } => (addr, access, reason),
            other => panic!("expected a page fault, got {other:?} at rip {:#x}", f.rip),
        }
    }

    /// Run until the program exits (syscall 60); returns rdi.
    pub fn run_to_exit(&mut self, vms: &Vmspace, f: &mut TrapFrame) -> u64 {
        match self.run(vms, f) {
            Trap::Syscall if f.rax == vkernel::guest::programs::SYS_EXIT => f.rdi,
            other => panic!("expected exit, got {other:?} at rip {:#x}", f.rip),
        }
    }
}

/// A frame entering CODE_VA with a stack at 0x7000_0000 and these
/// arguments.
pub fn frame(rdi: u64, rsi: u64, rdx: u64) -> TrapFrame {
    let mut f = TrapFrame::new(CODE_VA, 0x7000_0000);
    f.rdi = rdi;
    f.rsi = rsi;
    f.rdx = rdx;
    f
}

/// The example `name` next to this test's build (target/<profile>/examples),
/// built first with cargo so that it matches the sources under test (`cargo
/// test --test X` alone does not build examples; a no-op when current).
/// Builds each example once per test binary.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static BUILT: Mutex<Option<HashMap<String, std::path::PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get_or_insert_with(HashMap::new).get(name) {
        return p.clone();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/TEST-HASH -> target/<profile>
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("a target/<profile> directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = std::process::Command::new(cargo);
    c.args(["build", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.ends_with("release") {
        c.arg("--release");
    }
    let st = c.status().expect("run cargo");
    assert!(st.success(), "cargo build --example {name} failed");
    let bin = dir.join("examples").join(name);
    assert!(bin.exists(), "{} is missing after the build", bin.display());
    built
        .get_or_insert_with(HashMap::new)
        .insert(name.into(), bin.clone());
    bin
}

/// Run one vkbench suite as a process (`vkbench --quick --json SUITE`) and
/// return its figures (by name, also printed to stderr); a JSON `null`
/// (not measured here) becomes NaN.
pub fn vkbench_quick(suite: &str) -> Vec<(String, f64)> {
    let out = std::process::Command::new(example_binary("vkbench"))
        .args(["--quick", "--json", suite])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run vkbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vkbench {suite}: {:?}\n{stdout}",
        out.status
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("vkbench {suite} printed no JSON object ({e}): {stdout}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("vkbench {suite}: not a JSON object: {stdout}"));
    let figures: Vec<(String, f64)> = obj
        .iter()
        .map(|(k, v)| {
            let f = match v {
                serde_json::Value::Null => f64::NAN,
                v => v
                    .as_f64()
                    .unwrap_or_else(|| panic!("vkbench {suite}: {k} is not a number: {v}")),
            };
            (k.clone(), f)
        })
        .collect();
    for (k, v) in &figures {
        eprintln!("{k:28} {v:>12.1}");
    }
    figures
}

/// [`vkbench_quick`] when /dev/kvm is there; None after a loud SKIP.
pub fn kvm_vkbench(test: &str, suite: &str) -> Option<Vec<(String, f64)>> {
    have_kvm(test).then(|| vkbench_quick(suite))
}

/// `s` with each run of digits (and each hex number, `0x` included) as
/// `N`: pids, addresses and counts differ between runs.
pub fn numbers_as_n(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
            }
            while chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out
}

/// Is the C compiler `cc` installed (and not hidden by
/// `VKERNEL_TEST_NO_MUSL=1` for musl-gcc, which lets a machine with
/// musl-tools test the fallback a fresh machine takes)?
pub fn have_cc(cc: &str) -> bool {
    if cc == "musl-gcc" && std::env::var_os("VKERNEL_TEST_NO_MUSL").is_some_and(|v| v == "1") {
        return false;
    }
    std::process::Command::new(cc)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The compilers a test that compares libcs loops over: musl-gcc and gcc
/// when both exist; without musl-tools just gcc (glibc), so the test still
/// runs once instead of twice with the same compiler.
pub fn compilers() -> Vec<&'static str> {
    if have_cc("musl-gcc") {
        vec!["musl-gcc", "gcc"]
    } else {
        vec!["gcc"]
    }
}

/// Compile tests/guests/NAME.c statically with `cc` (`musl-gcc` or `gcc`)
/// into the test's scratch directory.
///
/// The fallback rule: a fresh machine has Rust's prerequisites (a C
/// compiler and glibc) but not musl-tools, so when `cc` is missing the
/// guest is built with `cc -static` (glibc) instead, with a note on
/// stderr, and the test runs. Only when no C compiler is found at all is
/// the test skipped (a loud SKIP line) and None returned. A compiler that
/// fails on the source is a test failure.
pub fn compile(test: &str, name: &str, cc: &str) -> Option<std::path::PathBuf> {
    compile_linked(test, name, cc, "-static")
}

/// [`compile`] with another link mode (`-static-pie`).
pub fn compile_linked(test: &str, name: &str, cc: &str, link: &str) -> Option<std::path::PathBuf> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{name}.c"));
    let used = if have_cc(cc) {
        cc
    } else if let Some(alt) = ["cc", "gcc"].into_iter().find(|c| *c != cc && have_cc(c)) {
        eprintln!(
            "{test}: {cc} not found (install musl-tools for musl guests); building {name}.c \
             with {alt} {link} (glibc) instead"
        );
        alt
    } else {
        skip(
            test,
            &format!("no C compiler ({cc}, cc or gcc) found; install gcc (and musl-tools)"),
        );
        return None;
    };
    let out = scratch(test).join(format!("{name}-{used}{link}"));
    let st = std::process::Command::new(used)
        .args([link, "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {used}: {e}"));
    assert!(
        st.success(),
        "{used} {link} failed ({st}) on {}",
        src.display()
    );
    Some(out)
}

/// The ELF header of a static x86-64 executable (ET_EXEC) entered at
/// `entry`, followed by its PT_LOAD program headers, each (flags, file
/// offset, address, file size, memory size), aligned to 4 KiB.
pub fn elf_headers(entry: u64, loads: &[(u32, u64, u64, u64, u64)]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&entry.to_le_bytes());
    f.extend_from_slice(&64u64.to_le_bytes()); // phoff
    f.extend_from_slice(&0u64.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    for h in [
        64u16,
        56,
        u16::try_from(loads.len()).expect("few segments"),
        0,
        0,
        0,
    ] {
        f.extend_from_slice(&h.to_le_bytes());
    }
    for &(flags, off, va, filesz, memsz) in loads {
        f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f.extend_from_slice(&flags.to_le_bytes());
        for v in [off, va, va, filesz, memsz, 0x1000] {
            f.extend_from_slice(&v.to_le_bytes());
        }
    }
    f
}

/// A static ELF with a code segment and a data segment of 10 file bytes
/// (7, then zeros) followed in the file by 0xaa garbage in the same page,
/// and a 2 GiB memory size. The program exits with data[0] + data[10] (must
/// be zero: the partial page is zeroed past the file bytes) + the last BSS
/// byte (zero) + the same byte after writing 1 to it: 8.
pub fn bss_elf() -> Vec<u8> {
    let code: &[u8] = &[
        0x0f, 0xb6, 0x3c, 0x25, 0x00, 0x00, 0x60, 0x00, // movzx edi, byte [0x600000]
        0x0f, 0xb6, 0x04, 0x25, 0x0a, 0x00, 0x60, 0x00, // movzx eax, byte [0x60000a]
        0x01, 0xc7, // add edi, eax
        0x48, 0xbb, 0xff, 0xff, 0x5f, 0x80, 0, 0, 0, 0, // mov rbx, 0x805fffff
        0x0f, 0xb6, 0x03, // movzx eax, byte [rbx]
        0x01, 0xc7, // add edi, eax
        0xc6, 0x03, 0x01, // mov byte [rbx], 1
        0x0f, 0xb6, 0x03, // movzx eax, byte [rbx]
        0x01, 0xc7, // add edi, eax
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
        0x0f, 0x05, // syscall
    ];
    let hdr = 64 + 2 * 56u64;
    let text = hdr + code.len() as u64;
    let mut f = elf_headers(
        0x40_0000 + hdr,
        &[
            (5, 0, 0x40_0000, text, text),
            (6, 0x1000, 0x60_0000, 10, 0x8000_0000),
        ],
    );
    f.extend_from_slice(code);
    f.resize(0x1000, 0);
    f.push(7);
    f.extend_from_slice(&[0; 9]);
    f.extend_from_slice(&[0xaa; 100]);
    f
}

// ---- the test kit: programs run natively and under a virtual kernel ----

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vkernel::linux::fs::Fs;
use vkernel::linux::kernel::Report;
use vkernel::linux::launch::{Launch, LaunchError};
use vkernel::linux::stdio::BufferStdio;
use vkernel::linux::VprocError;

/// The environment most comparisons give a program (natively and as a
/// vproc).
pub const PATH_BIN: &str = "PATH=/bin";

/// Where the tests expect Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";

/// Bytes as text (lossy UTF-8).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The status a shell shows: the exit code, or 128 + the signal.
pub fn shell_status(s: ExitStatus) -> i32 {
    s.code()
        .or_else(|| s.signal().map(|n| 128 + n))
        .expect("exited or signaled")
}

/// What a run printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Exit code, or 128 + the signal that ended it.
    pub status: i32,
}

impl Out {
    /// Standard output and status: what most comparisons look at.
    pub fn shown(&self) -> (&str, i32) {
        (&self.stdout, self.status)
    }
}

/// A program to run natively: an empty environment and stdin from
/// /dev/null unless told otherwise.
pub struct Native {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    stdout_file: Option<PathBuf>,
}

impl Native {
    /// `prog` with an empty environment.
    pub fn new(prog: impl AsRef<OsStr>) -> Native {
        let mut cmd = Command::new(prog);
        cmd.env_clear();
        Native {
            cmd,
            stdin: None,
            stdout_file: None,
        }
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, args: I) -> Native
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Add `NAME=value` strings to the environment.
    pub fn env<'a>(mut self, vars: impl IntoIterator<Item = &'a str>) -> Native {
        for v in vars {
            let (k, val) = v.split_once('=').expect("NAME=value");
            self.cmd.env(k, val);
        }
        self
    }

    /// Keep the host's whole environment instead of an empty one.
    pub fn host_env(mut self) -> Native {
        for (k, v) in std::env::vars_os() {
            self.cmd.env(k, v);
        }
        self
    }

    /// Stdin is a pipe holding `input` (then end of file).
    pub fn stdin(mut self, input: &[u8]) -> Native {
        self.stdin = Some(input.to_vec());
        self
    }

    /// Run in directory `dir`.
    pub fn cwd(mut self, dir: &Path) -> Native {
        self.cmd.current_dir(dir);
        self
    }

    /// Stdout goes to a regular file (`path`), read back after the run
    /// (Linux's partial-write rule is the generic one there).
    pub fn stdout_file(mut self, path: PathBuf) -> Native {
        self.stdout_file = Some(path);
        self
    }

    /// Run to the end.
    pub fn run(mut self) -> Out {
        use std::io::Write;
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        match &self.stdout_file {
            Some(p) => self.cmd.stdout(std::fs::File::create(p).unwrap()),
            None => self.cmd.stdout(Stdio::piped()),
        };
        let mut child = self.cmd.spawn().expect("run natively");
        if let Some(input) = &self.stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        let stdout = match &self.stdout_file {
            Some(p) => std::fs::read(p).unwrap(),
            None => o.stdout,
        };
        Out {
            stdout: text(&stdout),
            stderr: text(&o.stderr),
            status: shell_status(o.status),
        }
    }
}

/// `prog args` natively with [`PATH_BIN`] alone and stdin from /dev/null:
/// the usual side of a comparison.
pub fn native(prog: &Path, args: &[&str]) -> Out {
    Native::new(prog).args(args).env([PATH_BIN]).run()
}

/// The stdout of `prog args` run natively in the host's environment,
/// which must exit 0 (`what` names it in the failure).
pub fn native_stdout<S: AsRef<OsStr>>(what: &str, prog: &Path, args: &[S]) -> String {
    let n = Native::new(prog).args(args).host_env().run();
    assert_eq!(n.status, 0, "{what} native: {}", n.stdout);
    n.stdout
}

/// What a virtual kernel run printed, and its report.
pub struct Run {
    /// What the vprocs wrote to fd 1.
    pub stdout: String,
    /// What they wrote to fd 2.
    pub stderr: String,
    /// The kernel's report (init's status, counters, every vproc).
    pub report: Report,
    /// Wall time of loading and running.
    pub elapsed: Duration,
}

impl Run {
    /// Init's exit code, or 128 + the signal that ended it.
    pub fn status(&self) -> i32 {
        self.report.status.code()
    }

    /// The run as an [`Out`], to compare with a native one.
    pub fn out(&self) -> Out {
        Out {
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            status: self.status(),
        }
    }
}

/// The host program `prog` as the tests launch it: its bytes read now,
/// known by its canonical path (argv[0], AT_EXECFN, /proc/self/exe).
/// The defaults of [`Launch`] apply: 512 MiB, one vCPU, an empty root,
/// an empty environment.
pub fn program(prog: &Path) -> Launch {
    let path = std::fs::canonicalize(prog).unwrap_or_else(|e| panic!("{}: {e}", prog.display()));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", prog.display()));
    Launch::bytes(bytes, path.display().to_string())
}

/// The host's `/` as a vproc's root: read-only, under a writable overlay
/// (what a vproc creates stays out of the host).
pub fn host_root() -> Arc<Fs> {
    Arc::new(Fs::host(Path::new("/")).expect("the host's / as a root"))
}

/// The tar image `img`, mounted read-only as a root filesystem.
pub fn image_root(img: &Path) -> Arc<Fs> {
    let disk = vkernel::devices::Disk::open_read_only(img).unwrap();
    Arc::new(Fs::mount(disk).unwrap())
}

/// Run `launch` on `machine` with `stdin` as fd 0, capturing fds 1 and 2.
pub fn try_vk_on(
    machine: &vkernel::core::prelude::Machine,
    launch: Launch,
    stdin: &[u8],
) -> Result<Run, VprocError> {
    let stdio = BufferStdio::new(stdin);
    let (out, err) = (stdio.stdout.clone(), stdio.stderr.clone());
    let start = Instant::now();
    let report = launch.run_on(machine, Box::new(stdio))?;
    let elapsed = start.elapsed();
    let stdout = text(&out.lock().unwrap());
    let stderr = text(&err.lock().unwrap());
    Ok(Run {
        stdout,
        stderr,
        report,
        elapsed,
    })
}

/// Build the machine `launch` asks for and run it (see [`try_vk_on`]).
pub fn try_vk(launch: Launch, stdin: &[u8]) -> Result<Run, LaunchError> {
    let machine = launch.machine()?;
    Ok(try_vk_on(&machine, launch, stdin)?)
}

/// [`try_vk`], failing the test if the virtual kernel does not run.
pub fn vk(launch: Launch, stdin: &[u8]) -> Run {
    try_vk(launch, stdin).expect("the virtual kernel runs")
}

/// Run `f` on a thread of its own: a hang fails the test after `secs`
/// seconds instead of stalling the suite.
pub fn in_time<T: Send + 'static>(
    what: &str,
    secs: u64,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: no result in {secs} s (a hang, or a panic above)"))
}

/// [`vk`] with an empty stdin, in a thread of its own (see [`in_time`]).
pub fn vk_in_time(what: &str, secs: u64, launch: Launch) -> Run {
    in_time(what, secs, move || vk(launch, b""))
}

/// [`vk_in_time`], then [`assert_no_lost_wakeups`].
pub fn vk_watched(what: &str, secs: u64, launch: Launch) -> Run {
    let run = vk_in_time(what, secs, launch);
    assert_no_lost_wakeups(&run, what);
    run
}

/// `prog args` with [`PATH_BIN`] on `cpus` vCPUs (512 MiB, an empty
/// root): the usual launch of a comparison.
pub fn guest(prog: &Path, args: &[&str], cpus: usize) -> Launch {
    program(prog).args(args).env([PATH_BIN]).cpus(cpus)
}

/// What a run on `cpus` vCPUs of `prog args` is called in messages.
pub fn what(prog: &Path, args: &[&str], cpus: usize) -> String {
    format!("{} {args:?} on {cpus} vCPUs", prog.display())
}

/// Guest `name` (tests/guests/NAME.c) built by each of [`compilers`],
/// with the compiler's name; empty after a SKIP without any compiler.
pub fn guests(test: &str, name: &str) -> Vec<(&'static str, PathBuf)> {
    compilers()
        .into_iter()
        .filter_map(|cc| Some((cc, compile(test, name, cc)?)))
        .collect()
}

/// [`guests`] when /dev/kvm is there; empty after a loud SKIP when not.
pub fn kvm_guests(test: &str, name: &str) -> Vec<(&'static str, PathBuf)> {
    if !have_kvm(test) {
        return Vec::new();
    }
    guests(test, name)
}

/// Guest `name` built by `cc` ([`compile`]) when /dev/kvm is there; None
/// after a loud SKIP.
pub fn kvm_guest(test: &str, name: &str, cc: &str) -> Option<PathBuf> {
    if !have_kvm(test) {
        return None;
    }
    compile(test, name, cc)
}

/// /bin/busybox when /dev/kvm is there too; None after a loud SKIP.
pub fn kvm_busybox(test: &str) -> Option<PathBuf> {
    if !have_kvm(test) {
        return None;
    }
    busybox(test)
}

/// The native run `n` exited 0, and on each vCPU count of `cpus` the
/// virtual kernel run `vk(cpus)` prints the same and exits 0.
pub fn assert_same_as(what: &str, n: &Out, cpus: &[usize], vk: impl Fn(usize) -> Run) {
    assert_eq!(n.status, 0, "native {what}: {}", n.stdout);
    for &c in cpus {
        let r = vk(c);
        assert_eq!(r.stdout, n.stdout, "{what}, {c} vCPUs; stderr {}", r.stderr);
        assert_eq!(r.status(), 0, "{what}, {c} vCPUs");
    }
}

/// The lost-wake-up watchdog never had to end a wait in `run`.
pub fn assert_no_lost_wakeups(run: &Run, what: &str) {
    assert_eq!(
        run.report.lost_wakeups, 0,
        "{what}: the watchdog ended a wait that no wake-up ended; stderr: {}",
        run.stderr
    );
}

/// /bin/busybox, or None after a loud SKIP.
pub fn busybox(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from(BUSYBOX);
    if p.exists() {
        Some(p)
    } else {
        skip(
            test,
            "/bin/busybox not found (apt-get install busybox-static)",
        );
        None
    }
}

/// A tar image (made by the host's `tar`) holding `bb` as /bin/busybox,
/// for execve by path.
pub fn busybox_image(test: &str, bb: &Path) -> PathBuf {
    let dir = scratch(test);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(bb, root.join("bin/busybox")).unwrap();
    let image = dir.join("fs.tar");
    assert!(host_tar(&root, &image), "tar -cf {}", image.display());
    image
}

/// [`kvm_busybox`] and its [`busybox_image`].
pub fn kvm_busybox_image(test: &str) -> Option<(PathBuf, PathBuf)> {
    let bb = kvm_busybox(test)?;
    let image = busybox_image(test, &bb);
    Some((bb, image))
}

/// The host tool `path` when it and /dev/kvm are there; None after a loud
/// SKIP (`install` says how to get the tool).
pub fn kvm_tool(test: &str, path: &str, install: &str) -> Option<PathBuf> {
    if !have_kvm(test) {
        return None;
    }
    let p = PathBuf::from(path);
    if !p.exists() {
        skip(test, &format!("{path} not found{install}"));
        return None;
    }
    Some(p)
}

/// Append a plain ustar entry `path` holding `data` with `mode` to `b`.
pub fn append_ustar(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Pack the tree `root` into the tar image `image` with the host's `tar`;
/// false if that did not work.
pub fn host_tar(root: &Path, image: &Path) -> bool {
    let st = Command::new("tar")
        .arg("-cf")
        .arg(image)
        .arg("-C")
        .arg(root)
        .arg(".")
        .status();
    matches!(st, Ok(s) if s.success())
}

// ---- the kit: the `vkernel` command line as a process ----

/// The `vkernel` example binary, built to match the sources, or None
/// (after a loud SKIP) without /dev/kvm.
pub fn vkernel_binary(test: &str) -> Option<PathBuf> {
    have_kvm(test).then(|| example_binary("vkernel"))
}

/// The `vkernel` binary when /dev/kvm and busybox are there (else None,
/// after a loud SKIP).
pub fn vkernel_and_busybox(test: &str) -> Option<PathBuf> {
    if !have_kvm(test) {
        return None;
    }
    busybox(test)?;
    Some(example_binary("vkernel"))
}

/// `vk run ARGS...`.
pub fn vk_cmd(vk: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(vk);
    c.arg("run").args(args);
    c
}

/// `ARGS[0] ARGS[1..]` (the host's environment).
pub fn native_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]);
    c
}

/// Wait for `child`, killing it (and failing) if it outlives `timeout`.
pub fn wait_within(child: &mut Child, what: &str, timeout: Duration) -> ExitStatus {
    if let Some(s) = hang::wait_or_none(child, timeout) {
        return s;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what}: still running after {timeout:?} (a hang)");
}

/// Run `cmd` (stdin from /dev/null) to its end within `timeout`,
/// collecting stdout and stderr; a hang kills it and fails with its
/// partial output and host stacks ([`hang::output_or_report`]).
pub fn output_within(cmd: Command, what: &str, timeout: Duration) -> Output {
    hang::output_or_report(cmd, what, timeout, &String::new)
}

/// Run `cmd` with stdin from /dev/null, stdout to `stdout` and stderr
/// read to its end, within `timeout`: (shell status, stderr).
pub fn stderr_within(
    mut cmd: Command,
    stdout: Stdio,
    what: &str,
    timeout: Duration,
) -> (i32, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (shell_status(wait_within(&mut child, what, timeout)), err)
}

/// Spawn `cmd` with stdout a pipe, and read its first line: the child,
/// the rest of its stdout and the line.
pub fn spawn_first_line(
    mut cmd: Command,
    stdin: Stdio,
    stderr: Stdio,
) -> (Child, std::io::BufReader<std::process::ChildStdout>, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("read a line");
    (child, out, line)
}

/// Spawn `cmd` (stderr to /dev/null) and read its stdout until it printed
/// `ready`; the rest is read in the background so it never blocks.
pub fn spawn_ready(cmd: Command, stdin: Stdio) -> Child {
    let (child, mut out, line) = spawn_first_line(cmd, stdin, Stdio::null());
    assert_eq!(line, "ready\n");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

/// Send signal `sig` to our child.
pub fn send_signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}
