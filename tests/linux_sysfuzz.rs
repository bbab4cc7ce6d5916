//! Random system calls under the example personality (issue 12, item 20):
//! tests/guests/sysfuzz.c issues seeded random syscall numbers and
//! arguments (skipping those that would legitimately end or hang it) as
//! the first vproc of a virtual kernel. The vkernel must neither panic nor
//! fail, and the program must finish normally. CI runs a short budget;
//! `VKERNEL_FUZZ_CASES=N` (calls per seed) and `VKERNEL_FUZZ_SEEDS=N` run
//! longer. Tests SKIP loudly without /dev/kvm or a C compiler (musl-gcc, else
//! `cc -static`).

use vkernel::linux;

mod common;

use common::have_kvm;

use std::time::Duration;

use vkernel::core::prelude::*;

use linux::fs::Fs;
use linux::kernel::Options;
use linux::stdio::BufferStdio;
use linux::{Config, ExitStatus, Vproc};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn linux_random_syscalls_never_break_the_vkernel() {
    let test = "linux_random_syscalls_never_break_the_vkernel";
    if !have_kvm(test) {
        return;
    }
    let Some(prog) = common::compile(test, "sysfuzz", "musl-gcc") else {
        return;
    };
    let cases = env_or("VKERNEL_FUZZ_CASES", 2000);
    let seeds = env_or("VKERNEL_FUZZ_SEEDS", 4);
    let image = std::fs::read(&prog).unwrap();
    for seed in 1..=seeds {
        let image = image.clone();
        let path = prog.display().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let machine = Machine::builder()
                .ram_size(256 << 20)
                .build()
                .expect("a machine on /dev/kvm");
            let stdio = BufferStdio::new(b"");
            let out = stdio.stdout.clone();
            let argv = vec![
                path.clone().into_bytes(),
                seed.to_string().into_bytes(),
                cases.to_string().into_bytes(),
            ];
            let cfg = Config {
                image,
                path: path.clone(),
                exe: path,
                argv,
                envp: Vec::new(),
                fault_around: 16,
                trace: false,
            };
            let vp = Vproc::load(&machine, cfg, Fs::empty(), Box::new(stdio)).unwrap();
            let r = vkernel::linux::launch::run(&machine, vp, &Options::default());
            let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
            let _ = tx.send((r.map(|rep| (rep.status, rep.death)), stdout));
        });
        // Generous: a hang must fail the test, not stall it.
        let (r, stdout) = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| panic!("seed {seed}: no result in 300 s (hang or panic)"));
        let (status, death) = r.unwrap_or_else(|e| panic!("seed {seed}: the vkernel failed: {e}"));
        assert_eq!(
            status,
            ExitStatus::Exited(0),
            "seed {seed} ({cases} calls): {death:?}; stdout {stdout:?}"
        );
        assert!(stdout.contains("sysfuzz done"), "seed {seed}: {stdout:?}");
    }
}
