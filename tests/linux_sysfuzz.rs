//! Random system calls under the example personality (issue 12, item 20):
//! tests/guests/sysfuzz.c issues seeded random syscall numbers and
//! arguments (skipping those that would legitimately end or hang it) as
//! the first vproc of a virtual kernel. The vkernel must neither panic nor
//! fail, and the program must finish normally. CI runs a short budget;
//! `VKERNEL_FUZZ_CASES=N` (calls per seed) and `VKERNEL_FUZZ_SEEDS=N` run
//! longer. Tests SKIP loudly without /dev/kvm or a C compiler (musl-gcc, else
//! `cc -static`).

mod common;

use common::in_time;

use vkernel::linux::launch::Launch;
use vkernel::linux::ExitStatus;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn linux_random_syscalls_never_break_the_vkernel() {
    let test = "linux_random_syscalls_never_break_the_vkernel";
    let Some(prog) = common::kvm_guest(test, "sysfuzz", "musl-gcc") else {
        return;
    };
    let cases = env_or("VKERNEL_FUZZ_CASES", 2000);
    let seeds = env_or("VKERNEL_FUZZ_SEEDS", 4);
    let image = std::fs::read(&prog).unwrap();
    for seed in 1..=seeds {
        let l = Launch::bytes(image.clone(), prog.display().to_string())
            .args([seed.to_string(), cases.to_string()])
            .ram(256 << 20);
        // Generous: a hang must fail the test, not stall it.
        let (r, stdout) = in_time(&format!("seed {seed}"), 300, move || {
            match common::try_vk(l, b"") {
                Ok(r) => (Ok((r.report.status, r.report.death)), r.stdout),
                Err(e) => (Err(e), String::new()),
            }
        });
        let (status, death) = r.unwrap_or_else(|e| panic!("seed {seed}: the vkernel failed: {e}"));
        assert_eq!(
            status,
            ExitStatus::Exited(0),
            "seed {seed} ({cases} calls): {death:?}; stdout {stdout:?}"
        );
        assert!(stdout.contains("sysfuzz done"), "seed {seed}: {stdout:?}");
    }
}
