//! Processes and scheduling in the Linux personality: one static program
//! (tests/guests/schedbench.c, built with `gcc -static` at run time) run
//! natively and as vprocs of the example's virtual kernel (one vCPU) in
//! the same run. It measures itself:
//!
//! - `ctx_switch_ns`: two processes ping-pong a byte through two pipes
//!   (natively pinned to one CPU); half a round trip.
//! - `fork_exit_wait_us`: fork, the child exits, the parent waits (under
//!   vkernel: a copy-on-write vpagetable copy, a vmspace, two reschedules).
//! - `unix_pingpong_ns`: a byte's round trip over an AF_UNIX socketpair
//!   between two processes.
//! - `unix_stream_mib_s`: 32 MiB in 1 MiB writes over a socketpair.
//!
//! - the fork+exec loop figures of [`super::lifecycle`].
//!
//! Figures that cannot be measured here (no gcc, no /dev/kvm) are NaN.

use super::personality;

use std::path::{Path, PathBuf};
use std::process::Command;

use personality::launch::Launch;
use personality::stdio::BufferStdio;

fn build() -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/schedbench.c");
    let dir = std::env::temp_dir().join(format!("vkbench-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join("schedbench");
    let st = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| format!("cannot run gcc: {e} (install gcc)"))?;
    if !st.success() {
        return Err(format!("gcc exited with {st}"));
    }
    Ok(out)
}

fn parse(out: &str) -> Result<[f64; 5], String> {
    let get = |k: &str| {
        out.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(k))
                .then(|| w.next().and_then(|v| v.parse::<f64>().ok()))
                .flatten()
        })
    };
    match (
        get("ctx_switch_ns"),
        get("fork_exit_wait_us"),
        get("unix_pingpong_ns"),
        get("unix_stream_mib_s"),
        get("unix_evloop_ns"),
    ) {
        (Some(c), Some(f), Some(p), Some(t), Some(e)) => Ok([c, f, p, t, e]),
        _ => Err(format!("unexpected output: {out:?}")),
    }
}

fn run_native(bin: &Path, args: &[String]) -> Result<[f64; 5], String> {
    let o = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("exited with {}", o.status));
    }
    parse(&String::from_utf8_lossy(&o.stdout))
}

fn run_vk(image: &[u8], args: &[String]) -> Result<[f64; 5], String> {
    let stdio = BufferStdio::new(b"");
    let out = stdio.stdout.clone();
    let r = Launch::bytes(image.to_vec(), "/schedbench")
        .argv0("schedbench")
        .args(args)
        .ram(256 << 20)
        .run(Box::new(stdio))
        .map_err(|e| e.to_string())?;
    if r.status.code() != 0 {
        return Err(format!("exit status {}", r.status.code()));
    }
    let s = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    parse(&s)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Run the suite.
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let rounds = if quick { 3 } else { 5 };
    let args: Vec<String> = if quick {
        vec!["500".into(), "50".into()]
    } else {
        vec!["3000".into(), "300".into()]
    };
    let (mut vk, mut native) = (Vec::new(), Vec::new());
    match build() {
        Ok(bin) => {
            eprintln!(
                "vkbench sched: {rounds} rounds of {} ping-pongs and {} forks",
                args[0], args[1]
            );
            for _ in 0..rounds {
                match run_native(&bin, &args) {
                    Ok(x) => native.push(x),
                    Err(e) => {
                        eprintln!("vkbench sched: native: {e}");
                        break;
                    }
                }
            }
            if Path::new("/dev/kvm").exists() {
                let image = std::fs::read(&bin).unwrap_or_default();
                for _ in 0..rounds {
                    match run_vk(&image, &args) {
                        Ok(x) => vk.push(x),
                        Err(e) => {
                            eprintln!("vkbench sched: vkernel: {e}");
                            break;
                        }
                    }
                }
            } else {
                eprintln!("vkbench sched: /dev/kvm is absent: no vkernel figures");
            }
            if let Some(d) = bin.parent() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        Err(e) => eprintln!("vkbench sched: {e}"),
    }
    let col = |v: &[[f64; 5]], i: usize| median(v.iter().map(|x| x[i]).collect());
    let mut figures = vec![
        ("ctx_switch_ns".into(), col(&vk, 0)),
        ("fork_exit_wait_us".into(), col(&vk, 1)),
        ("unix_pingpong_ns".into(), col(&vk, 2)),
        ("unix_stream_mib_s".into(), col(&vk, 3)),
        ("unix_evloop_ns".into(), col(&vk, 4)),
        ("native_ctx_switch_ns".into(), col(&native, 0)),
        ("native_fork_exit_wait_us".into(), col(&native, 1)),
        ("native_unix_pingpong_ns".into(), col(&native, 2)),
        ("native_unix_stream_mib_s".into(), col(&native, 3)),
        ("native_unix_evloop_ns".into(), col(&native, 4)),
    ];
    figures.extend(super::lifecycle::measure(quick));
    figures
}
