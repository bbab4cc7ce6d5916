//! A dynamic program's exec as a user meets it (issue "Run the
//! distribution's own, dynamically linked programs"): the distribution's
//! dynamically linked `/bin/true`, timed as a whole run.
//!
//! - `dyn_exec_ms`: the whole vkernel run (machine built, tar image with
//!   the program, its loader and libraries mounted, program loaded, run to
//!   its exit), as `fork_exec_loop_ms` times its runs;
//! - `native_dyn_exec_ms`: spawning `/bin/true` and waiting for it;
//! - `qemu_dyn_exec_ms`: the same under `qemu-x86_64` (when installed).
//!
//! Medians of a few rounds. Figures that cannot be measured here (no
//! dynamic /bin/true or ldd, no /dev/kvm, no qemu-x86_64) are left out.

use super::personality;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use vkernel::devices::Disk;

use personality::exec::Image;
use personality::fs::Fs;
use personality::launch::Launch;
use personality::stdio::BufferStdio;

const PROG: &str = "/bin/true";

/// A tar image holding PROG, its loader and libraries at their host paths.
fn image(dir: &Path) -> Result<PathBuf, String> {
    let out = Command::new("ldd")
        .arg(PROG)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    if !out.status.success() {
        return Err(format!("{PROG} is not a dynamic program (ldd failed)"));
    }
    let root = dir.join("root");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let files = text.lines().filter_map(|l| {
        let p = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        p.filter(|p| p.starts_with('/'))
    });
    for f in files.chain([PROG]) {
        let dst = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().expect("a parent")).map_err(|e| e.to_string())?;
        std::fs::copy(f, &dst).map_err(|e| format!("copy {f}: {e}"))?;
    }
    let tar = dir.join("fs.tar");
    personality::fs::build_image(&root, &tar).map_err(|e| e.to_string())?;
    Ok(tar)
}

/// One whole vkernel run of PROG from the image: wall ms.
fn run_vk(tar: &Path) -> Result<f64, String> {
    let t0 = Instant::now();
    let fs = Arc::new(
        Fs::mount(Disk::open_read_only(tar).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
    );
    let ino = fs
        .resolve(personality::fs::ROOT, PROG.as_bytes(), true)
        .map_err(|e| format!("{PROG} is not in the image (errno {e})"))?;
    let img = Image::Disk {
        fs: fs.clone(),
        ino,
    };
    let r = Launch::program(img, PROG)
        .env(["PATH=/bin"])
        .root(fs)
        .ram(256 << 20)
        .run(Box::new(BufferStdio::new(b"")))
        .map_err(|e| e.to_string())?;
    if r.status.code() != 0 {
        return Err(format!("exit status {}", r.status.code()));
    }
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// One run of PROG as a host process (natively, or under `runner`).
fn run_host(runner: Option<&str>) -> Result<f64, String> {
    let mut c = match runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(PROG);
            c
        }
        None => Command::new(PROG),
    };
    let t0 = Instant::now();
    let st = c.status().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("exited with {st}"));
    }
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// The dynamic exec figures, `rounds` runs each (fewer with --quick).
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let rounds = if quick { 3 } else { 11 };
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!("vkbench-dynexec-{}", std::process::id()));
    let tar = match image(&dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vkbench linux: dynamic exec: {e}: no dyn_exec figures");
            let _ = std::fs::remove_dir_all(&dir);
            return out;
        }
    };
    eprintln!("vkbench linux: dynamic {PROG}, whole runs, {rounds} rounds");
    let native: Vec<f64> = (0..rounds).filter_map(|_| run_host(None).ok()).collect();
    if let Some(m) = median(native) {
        out.push(("native_dyn_exec_ms".into(), m));
    }
    if super::have("qemu-x86_64") {
        let q: Vec<f64> = (0..rounds)
            .filter_map(|_| run_host(Some("qemu-x86_64")).ok())
            .collect();
        if let Some(m) = median(q) {
            out.push(("qemu_dyn_exec_ms".into(), m));
        }
    }
    if Path::new("/dev/kvm").exists() {
        let mut v = Vec::new();
        for _ in 0..rounds {
            match run_vk(&tar) {
                Ok(ms) => v.push(ms),
                Err(e) => {
                    eprintln!("vkbench linux: dynamic {PROG} under vkernel: {e}");
                    break;
                }
            }
        }
        if let Some(m) = median(v) {
            out.push(("dyn_exec_ms".into(), m));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}
