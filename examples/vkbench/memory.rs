//! Memory as a user sees it (issue 26): whole programs, each run as a
//! fresh process (`vkernel run ...`, not a warm loop in this process, so
//! the host's own faults on guest RAM are paid as a user pays them), side
//! by side with the same program natively and under qemu-x86_64 in the
//! same run, medians of a few rounds:
//!
//! - `pages`: tests/guests/largepages.c `pages N`, a first touch of N
//!   pages of one plain anonymous mmap (wherever it lands: not 2 MiB
//!   aligned), 40,000 pages (10,000 with `--quick`);
//! - `sieve`: the same program's `sieve N`, a sieve of Eratosthenes over
//!   a calloc'd array, 40M (10M);
//! - `sort`: the host's `/usr/bin/sort` of a generated text file of
//!   27 MB (6 MB) to /dev/null, with as many vCPUs as the host has cores
//!   (sort is threaded natively too).
//!
//! Figures: `{native,vk,qemu}_{pages,sieve,sort}_ms` (wall time of the
//! whole process), `vk_{...}_cpu_ms` (the vkernel process's user and
//! system CPU: its exitless server polls), `vk_{...}_x_native` (the ratio
//! the goals are stated in), and `raw_exit_ns`, the machine's
//! exit floor, so figures from different hosts can be told apart. The
//! warm, in-process figures stay in `vkbench linux`
//! (`vk_warm_first_touch_ns`, `vk_warm_first_touch_large_ns`).
//!
//! The vkernel figures need the `vkernel` example built next to this one
//! (`cargo build --release --examples`); without it, /dev/kvm, gcc or
//! qemu-x86_64 the figures concerned are left out, with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A program to time: its name in the figures, what runs, its arguments.
struct Prog {
    name: &'static str,
    path: PathBuf,
    args: Vec<String>,
}

/// A text file of `bytes` bytes of pseudo-random lines (the same every
/// run).
fn sort_input(dir: &Path, bytes: usize) -> Result<PathBuf, String> {
    let mut text = Vec::with_capacity(bytes + 64);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while text.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 5 + (x % 56) as usize;
        let mut y = x;
        for _ in 0..len {
            y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            text.push(b'a' + ((y >> 33) % 26) as u8);
        }
        text.push(b'\n');
    }
    let p = dir.join("sort-input.txt");
    std::fs::write(&p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// CPU time (user + system) of this process's waited-for children, ns.
fn children_cpu_ns() -> f64 {
    super::linux::rusage_ns(libc::RUSAGE_CHILDREN)
}

/// Run `cmd` to its end: (wall ms, CPU ms).
fn time(cmd: &mut Command) -> Result<(f64, f64), String> {
    let c0 = children_cpu_ns();
    let t0 = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    let wall = t0.elapsed().as_secs_f64() * 1e3;
    if !st.success() {
        return Err(format!("exited with {st}"));
    }
    Ok((wall, (children_cpu_ns() - c0) / 1e6))
}

/// `rounds` runs of what `cmd` makes: median wall and CPU ms (NaN after a
/// failure, reported).
fn rounds(what: &str, rounds: usize, cmd: &dyn Fn() -> Command) -> (f64, f64) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        match time(&mut cmd()) {
            Ok((w, c)) => {
                wall.push(w);
                cpu.push(c);
            }
            Err(e) => {
                eprintln!("vkbench memory: {what}: {e}");
                return (f64::NAN, f64::NAN);
            }
        }
    }
    (super::linux::med(&mut wall), super::linux::med(&mut cpu))
}

/// Run the suite.
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let n = if quick { 3 } else { 5 };
    let (pages, sieve, sort_bytes) = if quick {
        (10_000, 10_000_000, 6 << 20)
    } else {
        (40_000, 40_000_000, 27_000_000)
    };
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!("vkbench-memory-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("vkbench memory: {}: {e}", dir.display());
        return out;
    }
    let mut progs = Vec::new();
    let guest = super::sched::SelfTimed {
        source: "largepages.c",
        keys: &[],
        suite: "memory",
    };
    match guest.build() {
        Ok(lp) => {
            progs.push(Prog {
                name: "pages",
                path: lp.clone(),
                args: vec!["pages".into(), pages.to_string()],
            });
            progs.push(Prog {
                name: "sieve",
                path: lp,
                args: vec!["sieve".into(), sieve.to_string()],
            });
        }
        Err(e) => eprintln!("vkbench memory: {e}: no pages/sieve figures"),
    }
    match sort_input(&dir, sort_bytes) {
        Ok(f) if Path::new("/usr/bin/sort").exists() => progs.push(Prog {
            name: "sort",
            path: "/usr/bin/sort".into(),
            args: vec![f.display().to_string(), "-o".into(), "/dev/null".into()],
        }),
        Ok(_) => eprintln!("vkbench memory: no /usr/bin/sort: no sort figures"),
        Err(e) => eprintln!("vkbench memory: {e}: no sort figures"),
    }
    let vk = if Path::new("/dev/kvm").exists() {
        match super::tap::vkernel_binary() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("vkbench memory: {e}: no vk figures");
                None
            }
        }
    } else {
        eprintln!("vkbench memory: /dev/kvm is absent: no vk figures");
        None
    };
    let qemu = super::have("qemu-x86_64");
    if !qemu {
        eprintln!("vkbench memory: qemu-x86_64 not installed (apt-get install qemu-user)");
    }
    let cpus = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .to_string();
    for p in &progs {
        eprintln!(
            "vkbench memory: {} {}, whole processes, {n} rounds",
            p.path.display(),
            p.args.join(" ")
        );
        let (native, _) = rounds(&format!("native {}", p.name), n, &|| {
            let mut c = Command::new(&p.path);
            c.args(&p.args);
            c
        });
        out.push((format!("native_{}_ms", p.name), native));
        if let Some(vk) = &vk {
            let (wall, cpu) = rounds(&format!("vkernel {}", p.name), n, &|| {
                let mut c = Command::new(vk);
                c.args(["run", "--cpus", &cpus, "--"])
                    .arg(&p.path)
                    .args(&p.args);
                c
            });
            out.push((format!("vk_{}_ms", p.name), wall));
            out.push((format!("vk_{}_cpu_ms", p.name), cpu));
            out.push((format!("vk_{}_x_native", p.name), wall / native));
        }
        if qemu {
            let (wall, _) = rounds(&format!("qemu {}", p.name), n, &|| {
                let mut c = Command::new("qemu-x86_64");
                c.arg(&p.path).args(&p.args);
                c
            });
            out.push((format!("qemu_{}_ms", p.name), wall));
        }
    }
    // (The guest's build went into the same directory.)
    let _ = std::fs::remove_dir_all(&dir);
    if vk.is_some() {
        out.push((
            "raw_exit_ns".into(),
            super::raw::raw_exit_ns(if quick { 20_000 } else { 100_000 }, n),
        ));
    }
    out
}
