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

/// A guest program that measures itself: its source under tests/guests,
/// the figures it prints (`KEY value` lines), and what it is called in
/// messages.
pub struct SelfTimed {
    /// The source file's name (tests/guests/NAME.c).
    pub source: &'static str,
    /// The keys it prints, in the order figures are returned.
    pub keys: &'static [&'static str],
    /// The suite's name, for messages.
    pub suite: &'static str,
}

impl SelfTimed {
    /// Build it with `gcc -static -O2` in a fresh directory.
    pub fn build(&self) -> Result<PathBuf, String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/guests")
            .join(self.source);
        let dir =
            std::env::temp_dir().join(format!("vkbench-{}-{}", self.suite, std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = dir.join(self.suite);
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

    /// Its figures in `out`, in the order of `keys`.
    fn parse(&self, out: &str) -> Result<Vec<f64>, String> {
        self.keys
            .iter()
            .map(|k| {
                out.lines()
                    .find_map(|l| {
                        let mut w = l.split_whitespace();
                        (w.next() == Some(*k))
                            .then(|| w.next().and_then(|v| v.parse::<f64>().ok()))
                            .flatten()
                    })
                    .ok_or_else(|| format!("no {k} in {out:?}"))
            })
            .collect()
    }

    fn run_native(&self, bin: &Path, args: &[String]) -> Result<Vec<f64>, String> {
        let o = Command::new(bin)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("exited with {}", o.status));
        }
        self.parse(&String::from_utf8_lossy(&o.stdout))
    }

    fn run_vk(&self, image: &[u8], args: &[String]) -> Result<Vec<f64>, String> {
        let stdio = BufferStdio::new(b"");
        let out = stdio.stdout.clone();
        let r = Launch::bytes(image.to_vec(), format!("/{}", self.suite))
            .argv0(self.suite)
            .args(args)
            .ram(256 << 20)
            .run(Box::new(stdio))
            .map_err(|e| e.to_string())?;
        if r.status.code() != 0 {
            return Err(format!("exit status {}", r.status.code()));
        }
        let s = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        self.parse(&s)
    }

    /// `rounds` runs natively and as a vproc (one vCPU): the median of
    /// each figure, as `(vkernel, native)` lists in the order of `keys`
    /// (NaN where a side could not run).
    pub fn medians(&self, args: &[String], rounds: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut vk, mut native) = (Vec::new(), Vec::new());
        match self.build() {
            Ok(bin) => {
                for _ in 0..rounds {
                    match self.run_native(&bin, args) {
                        Ok(x) => native.push(x),
                        Err(e) => {
                            eprintln!("vkbench {}: native: {e}", self.suite);
                            break;
                        }
                    }
                }
                if Path::new("/dev/kvm").exists() {
                    let image = std::fs::read(&bin).unwrap_or_default();
                    for _ in 0..rounds {
                        match self.run_vk(&image, args) {
                            Ok(x) => vk.push(x),
                            Err(e) => {
                                eprintln!("vkbench {}: vkernel: {e}", self.suite);
                                break;
                            }
                        }
                    }
                } else {
                    eprintln!(
                        "vkbench {}: /dev/kvm is absent: no vkernel figures",
                        self.suite
                    );
                }
                if let Some(d) = bin.parent() {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
            Err(e) => eprintln!("vkbench {}: {e}", self.suite),
        }
        let cols = |v: &[Vec<f64>]| {
            (0..self.keys.len())
                .map(|i| median(v.iter().map(|x| x[i]).collect()))
                .collect()
        };
        (cols(&vk), cols(&native))
    }

    /// [`SelfTimed::medians`] as named figures: `{vk_prefix}KEY` for the
    /// vkernel, and `native_KEY`.
    pub fn figures(&self, args: &[String], rounds: usize, vk_prefix: &str) -> Vec<(String, f64)> {
        let (vk, native) = self.medians(args, rounds);
        let mut out: Vec<(String, f64)> = self
            .keys
            .iter()
            .zip(vk)
            .map(|(k, v)| (format!("{vk_prefix}{k}"), v))
            .collect();
        out.extend(
            self.keys
                .iter()
                .zip(native)
                .map(|(k, v)| (format!("native_{k}"), v)),
        );
        out
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The scheduling figures of tests/guests/schedbench.c.
const SCHED: SelfTimed = SelfTimed {
    source: "schedbench.c",
    keys: &[
        "ctx_switch_ns",
        "fork_exit_wait_us",
        "unix_pingpong_ns",
        "unix_stream_mib_s",
        "unix_evloop_ns",
    ],
    suite: "schedbench",
};

/// Run the suite.
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let rounds = if quick { 3 } else { 5 };
    let args: Vec<String> = if quick {
        vec!["500".into(), "50".into()]
    } else {
        vec!["3000".into(), "300".into()]
    };
    eprintln!(
        "vkbench sched: {rounds} rounds of {} ping-pongs and {} forks",
        args[0], args[1]
    );
    let mut figures = SCHED.figures(&args, rounds, "");
    figures.extend(super::lifecycle::measure(quick));
    figures
}
