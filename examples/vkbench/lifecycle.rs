//! Process lifecycle as a user meets it (issue "Process lifecycle"): a
//! `busybox sh` loop that forks and execs `busybox true` N times, timed as
//! a whole run under the vkernel, natively and under `qemu-x86_64` (when
//! installed) in the same run.
//!
//! - `fork_exec_loop_ms`: the whole vkernel run of the loop (machine and
//!   boot included), `native_fork_exec_loop_ms`, `qemu_fork_exec_loop_ms`.
//! - `exits_per_fork_exec`: VM exits (the vCPUs' `CpuStats`) of a long
//!   loop minus a short one, divided by the difference in iterations: what
//!   one fork+exec+exit+wait cycle costs in crossings.
//!
//! - `emulated_insns_per_fork_exec`: instructions KVM emulated for the
//!   vkernel process (the `kvm:kvm_emulate_insn` tracepoint, counted by
//!   `perf stat` for a child run of the loop), long loop minus short, per
//!   iteration. Where guest CPL0 code is emulated (PVM-derived hosts) this
//!   is the stub's work per cycle. Needs `perf` (Debian's linux-perf) and
//!   permission to read KVM's tracepoints (root); left out otherwise.
//!
//! Figures that cannot be measured here (no /bin/busybox, no /dev/kvm, no
//! qemu-x86_64) are left out.

use super::personality;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use vkernel::devices::Disk;

use personality::fs::Fs;
use personality::launch::Launch;
use personality::stdio::BufferStdio;

const BUSYBOX: &str = "/bin/busybox";

fn script(n: u64) -> String {
    format!("for i in $(busybox seq {n}); do busybox true; done")
}

/// A tar image holding /bin/busybox, for execve by path.
fn image(dir: &Path) -> Result<PathBuf, String> {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    let tar = dir.join("fs.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !st.success() {
        return Err(format!("tar exited with {st}"));
    }
    Ok(tar)
}

/// One vkernel run of the loop: (wall ms, VM exits of all vCPUs).
fn run_vk(tar: &Path, n: u64) -> Result<(f64, u64), String> {
    let t0 = Instant::now();
    let fs = Fs::mount(Disk::open_read_only(tar).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let image = std::fs::read(BUSYBOX).map_err(|e| e.to_string())?;
    let r = Launch::bytes(image, BUSYBOX)
        .argv0("busybox")
        .args(["sh", "-c", &script(n)])
        .env(["PATH=/bin"])
        .root(Arc::new(fs))
        .ram(256 << 20)
        .run(Box::new(BufferStdio::new(b"")))
        .map_err(|e| e.to_string())?;
    if r.status.code() != 0 {
        return Err(format!("exit status {}", r.status.code()));
    }
    let exits = r.cpu_stats.iter().map(|s| s.exits).sum();
    Ok((t0.elapsed().as_secs_f64() * 1e3, exits))
}

/// One run of the loop as a host process (natively, or under `runner`).
fn run_host(runner: Option<&str>, n: u64) -> Result<f64, String> {
    let mut c = match runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(BUSYBOX);
            c
        }
        None => Command::new(BUSYBOX),
    };
    c.args(["sh", "-c", &script(n)]).env("PATH", "/bin");
    let t0 = Instant::now();
    let st = c.status().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("exited with {st}"));
    }
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// Environment variable that makes vkbench run one vkernel loop and exit:
/// `TAR:N` (the image and the iterations).
pub const CHILD_ENV: &str = "VKBENCH_LIFECYCLE_CHILD";

/// The child run: the loop of `spec` (`TAR:N`); returns the exit status.
pub fn child(spec: &std::ffi::OsStr) -> i32 {
    let spec = spec.to_string_lossy();
    let Some((tar, n)) = spec.rsplit_once(':') else {
        eprintln!("{CHILD_ENV}: expected TAR:N, got {spec}");
        return 2;
    };
    match n.parse() {
        Ok(n) => match run_vk(Path::new(tar), n) {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("vkbench loop child: {e}");
                1
            }
        },
        Err(_) => {
            eprintln!("{CHILD_ENV}: bad iteration count {n}");
            2
        }
    }
}

/// Instructions KVM emulated for one child run of `n` iterations, counted
/// by `perf stat` (None where perf or the tracepoint is unavailable).
fn emulated_insns(tar: &Path, n: u64) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", "kvm:kvm_emulate_insn", "--"])
        .arg(exe)
        .env(CHILD_ENV, format!("{}:{n}", tar.display()))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.contains("kvm:kvm_emulate_insn"))
        .and_then(|l| l.split(',').next())
        .and_then(|c| c.trim().parse().ok())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Run the loop figures: `n` iterations (100 in the table; fewer
/// with --quick), `rounds` runs each.
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let (n, short, rounds) = if quick { (20, 5, 1) } else { (100, 10, 3) };
    let mut out = Vec::new();
    if !Path::new(BUSYBOX).exists() {
        eprintln!("vkbench sched: {BUSYBOX} is missing (apt-get install busybox-static): no fork+exec loop figures");
        return out;
    }
    eprintln!(
        "vkbench sched: fork+exec loop of {n} `busybox true` from `busybox sh`, {rounds} rounds"
    );
    let native: Vec<f64> = (0..rounds).filter_map(|_| run_host(None, n).ok()).collect();
    if let Some(m) = median(native) {
        out.push(("native_fork_exec_loop_ms".into(), m));
    }
    if super::have("qemu-x86_64") {
        let q: Vec<f64> = (0..rounds)
            .filter_map(|_| run_host(Some("qemu-x86_64"), n).ok())
            .collect();
        if let Some(m) = median(q) {
            out.push(("qemu_fork_exec_loop_ms".into(), m));
        }
    }
    if !Path::new("/dev/kvm").exists() {
        return out;
    }
    let dir = std::env::temp_dir().join(format!("vkbench-lifecycle-{}", std::process::id()));
    let tar = match image(&dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vkbench sched: fork+exec loop image: {e}");
            return out;
        }
    };
    let mut wall = Vec::new();
    let mut per = Vec::new();
    for _ in 0..rounds {
        match (run_vk(&tar, n), run_vk(&tar, short)) {
            (Ok((ms, long)), Ok((_, few))) => {
                wall.push(ms);
                per.push(long.saturating_sub(few) as f64 / (n - short) as f64);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("vkbench sched: fork+exec loop under vkernel: {e}");
                break;
            }
        }
    }
    let emulated: Vec<f64> = (0..rounds)
        .filter_map(|_| {
            let (long, few) = (emulated_insns(&tar, n)?, emulated_insns(&tar, short)?);
            Some(long.saturating_sub(few) as f64 / (n - short) as f64)
        })
        .collect();
    if emulated.is_empty() {
        eprintln!(
            "vkbench sched: no emulated_insns_per_fork_exec (needs perf from linux-perf and \
             access to KVM's tracepoints)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(m) = median(emulated) {
        out.push(("emulated_insns_per_fork_exec".into(), m));
    }
    if let Some(m) = median(wall) {
        out.push(("fork_exec_loop_ms".into(), m));
    }
    if let Some(m) = median(per) {
        out.push(("exits_per_fork_exec".into(), m));
    }
    out
}
