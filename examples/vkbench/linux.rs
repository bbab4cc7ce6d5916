//! The Linux personality: one static program (tests/guests/bench.c, built
//! with `gcc -static` at run time) run natively, under vkernel and under
//! qemu-x86_64 (when installed) in the same run. The program measures
//! itself: a getppid round trip, a first-touch anonymous write fault per
//! page, and `first_touch_large_ns`: per 4 KiB page of a 64 MiB sweep of
//! fresh anonymous memory aligned to 2 MiB (where vkernel maps large
//! pages). `raw_exit_ns` is the floor: a bare KVM_RUN exit round trip.
//! vkernel runs the program inside this process, round after round, so
//! guest RAM the host already faulted in may be reused: its first-touch
//! figures are named `vk_warm_...`; `vkbench memory` times whole programs
//! in fresh processes, as a user runs them.
//!
//! Exitless syscalls (`vkernel_core::exitless`): `vk_getppid_ns` runs with
//! the server on and syscall patching (the defaults: the getppid site
//! reaches the server without the `syscall` instruction),
//! `vk_getppid_unpatched_ns` with the server on but no patching (each call
//! takes `syscall` into the trampoline), `vk_getppid_exit_ns` with the
//! server off (every syscall exits); `cpu_ns_per_syscall` is the whole vkernel process's
//! user and system CPU time (server thread included) per getppid with the
//! server on: the difference of two runs (N and 2N calls) over N, so
//! start-up costs cancel. `xcore_round_trip_ns` is their floor: a value
//! handed between two host threads and back through one cache line.
//!
//! Figures that cannot be measured here (no gcc, no qemu-x86_64, no
//! /dev/kvm) are NaN and reported as null.

use super::personality;

use std::path::{Path, PathBuf};
use std::process::Command;

use personality::kernel;
use personality::launch::Launch;
use personality::stdio::BufferStdio;

/// Errors of this benchmark (reported, then the figures are NaN).
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("cannot build the guest: {0} (install gcc)")]
    Build(String),
    #[error("{0}")]
    Run(String),
    #[error("unexpected output from the guest: {0:?}")]
    Output(String),
}

fn build() -> Result<PathBuf, BenchError> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/bench.c");
    let dir = std::env::temp_dir().join(format!("vkbench-linux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Build(e.to_string()))?;
    let out = dir.join("bench");
    let st = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| BenchError::Build(e.to_string()))?;
    if !st.success() {
        return Err(BenchError::Build(format!("gcc exited with {st}")));
    }
    Ok(out)
}

/// One run's figures: getppid, first touch, first touch of a large sweep.
type Figures = (f64, f64, f64);

/// Parse "getppid_ns X\nfirst_touch_ns Y\nfirst_touch_large_ns Z\n".
fn parse(out: &str) -> Result<Figures, BenchError> {
    let mut g = None;
    let mut t = None;
    let mut l = None;
    for line in out.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next().and_then(|v| v.parse::<f64>().ok())) {
            (Some("getppid_ns"), Some(v)) => g = Some(v),
            (Some("first_touch_ns"), Some(v)) => t = Some(v),
            (Some("first_touch_large_ns"), Some(v)) => l = Some(v),
            _ => {}
        }
    }
    match (g, t, l) {
        (Some(g), Some(t), Some(l)) => Ok((g, t, l)),
        _ => Err(BenchError::Output(out.to_string())),
    }
}

fn run_host(cmd: &mut Command) -> Result<Figures, BenchError> {
    let o = cmd.output().map_err(|e| BenchError::Run(e.to_string()))?;
    if !o.status.success() {
        return Err(BenchError::Run(format!("exited with {}", o.status)));
    }
    parse(&String::from_utf8_lossy(&o.stdout))
}

fn run_vk(
    image: &[u8],
    args: &[String],
    exitless: bool,
    patch_syscalls: bool,
) -> Result<Figures, BenchError> {
    let stdio = BufferStdio::new(b"");
    let out = stdio.stdout.clone();
    let opts = kernel::Options {
        exitless,
        patch_syscalls,
        ..Default::default()
    };
    let r = Launch::bytes(image.to_vec(), "/bench")
        .argv0("bench")
        .args(args)
        .ram(512 << 20)
        .options(opts)
        .run(Box::new(stdio))
        .map_err(|e| BenchError::Run(e.to_string()))?;
    if r.status.code() != 0 {
        return Err(BenchError::Run(format!("exit status {}", r.status.code())));
    }
    let s = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    parse(&s)
}

/// User + system CPU time of `who` (RUSAGE_SELF, or RUSAGE_CHILDREN: the
/// children waited for), in ns.
pub(super) fn rusage_ns(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1e9 + tv.tv_usec as f64 * 1e3;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// This process's user + system CPU time, in ns.
fn cpu_ns() -> f64 {
    rusage_ns(libc::RUSAGE_SELF)
}

/// CPU time per getppid with the exitless server on (see the module docs).
fn cpu_per_syscall(image: &[u8], n: u32) -> Result<f64, BenchError> {
    let cost = |calls: u32| -> Result<f64, BenchError> {
        let c0 = cpu_ns();
        run_vk(
            image,
            &[calls.to_string(), "1".into(), "1".into()],
            true,
            true,
        )?;
        Ok(cpu_ns() - c0)
    };
    let one = cost(n)?;
    let two = cost(2 * n)?;
    // On a loaded machine the longer run may show less CPU than the
    // shorter (noise bigger than n calls): then the longer run's whole
    // CPU per call, start-up included, is the (upper-bound) figure.
    Ok(if two > one {
        (two - one) / n as f64
    } else {
        two / (2 * n) as f64
    })
}

pub(super) fn med(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        super::median(v)
    }
}

/// MiB swept by `first_touch_large_ns`.
const LARGE_MIB: u32 = 64;

/// Run the suite.
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let rounds = if quick { 3 } else { 5 };
    let (iters, pages) = if quick {
        (500u32, 1024u32)
    } else {
        (3000, 8192)
    };
    let args = vec![iters.to_string(), pages.to_string(), LARGE_MIB.to_string()];
    let mut res: Vec<(String, f64)> = Vec::new();
    let mut figures = |name: &str, r: Vec<Figures>| {
        let mut g: Vec<f64> = r.iter().map(|x| x.0).collect();
        let mut t: Vec<f64> = r.iter().map(|x| x.1).collect();
        let mut l: Vec<f64> = r.iter().map(|x| x.2).collect();
        res.push((format!("{name}_getppid_ns"), med(&mut g)));
        // vkernel's run in this process: its RAM may be warm (see the
        // module docs); `vkbench memory` times fresh processes.
        let warm = if name == "vk" { "_warm" } else { "" };
        res.push((format!("{name}{warm}_first_touch_ns"), med(&mut t)));
        res.push((format!("{name}{warm}_first_touch_large_ns"), med(&mut l)));
    };
    let bin = match build() {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("vkbench linux: {e}");
            None
        }
    };
    let collect = |label: &str, f: &mut dyn FnMut() -> Result<Figures, BenchError>| {
        let mut v = Vec::new();
        for _ in 0..rounds {
            match f() {
                Ok(x) => v.push(x),
                Err(e) => {
                    eprintln!("vkbench linux: {label}: {e}");
                    break;
                }
            }
        }
        v
    };
    let (mut vk, mut native, mut qemu) = (Vec::new(), Vec::new(), Vec::new());
    let (mut vk_exit, mut vk_unpatched, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(bin) = &bin {
        eprintln!(
            "vkbench linux: {rounds} rounds of {iters} getppid calls and {pages} first-touch pages"
        );
        native = collect("native", &mut || run_host(Command::new(bin).args(&args)));
        if Path::new("/dev/kvm").exists() {
            let image = std::fs::read(bin).unwrap_or_default();
            vk = collect("vkernel", &mut || run_vk(&image, &args, true, true));
            vk_unpatched = collect("vkernel --no-syscall-patching", &mut || {
                run_vk(&image, &args, true, false)
            });
            vk_exit = collect("vkernel --no-exitless", &mut || {
                run_vk(&image, &args, false, false)
            });
            for _ in 0..rounds {
                match cpu_per_syscall(&image, if quick { 5_000 } else { 50_000 }) {
                    Ok(c) => cpu.push(c),
                    Err(e) => {
                        eprintln!("vkbench linux: cpu_ns_per_syscall: {e}");
                        break;
                    }
                }
            }
        } else {
            eprintln!("vkbench linux: /dev/kvm is absent: no vkernel figures");
        }
        let have_qemu = Command::new("qemu-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if have_qemu {
            qemu = collect("qemu", &mut || {
                run_host(Command::new("qemu-x86_64").arg(bin).args(&args))
            });
        } else {
            eprintln!("vkbench linux: qemu-x86_64 not installed (apt-get install qemu-user): no qemu figures");
        }
        if let Some(d) = bin.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    figures("vk", vk);
    let mut g: Vec<f64> = vk_exit.into_iter().map(|f| f.0).collect();
    let (exit_ns, cpu_ns) = (med(&mut g), med(&mut cpu));
    figures("native", native);
    figures("qemu", qemu);
    res.push(("vk_getppid_exit_ns".into(), exit_ns));
    let mut u: Vec<f64> = vk_unpatched.into_iter().map(|f| f.0).collect();
    res.push(("vk_getppid_unpatched_ns".into(), med(&mut u)));
    res.push(("cpu_ns_per_syscall".into(), cpu_ns));
    let raw = if Path::new("/dev/kvm").exists() {
        super::raw::raw_exit_ns(if quick { 20_000 } else { 100_000 }, rounds)
    } else {
        f64::NAN
    };
    res.push(("raw_exit_ns".into(), raw));
    // The floor of `vk_getppid_ns`: a request and an answer between cores.
    let xcore =
        super::raw::cross_core_round_trip_ns(if quick { 100_000 } else { 1_000_000 }, rounds);
    res.push(("xcore_round_trip_ns".into(), xcore));
    res
}
