//! Smoke test of vkbench's sched suite (examples/vkbench/sched.rs) in quick
//! mode: every figure that can be measured here is a positive number.

mod common;

use vkernel::linux as personality;

#[path = "../examples/vkbench/sched.rs"]
mod sched;

#[test]
fn linux_sched_bench_quick_reports_every_figure() {
    let test = "linux_sched_bench_quick_reports_every_figure";
    if !std::path::Path::new("/dev/kvm").exists() {
        common::skip(test, "/dev/kvm is not available");
        return;
    }
    let r = sched::measure(true);
    for (k, v) in &r {
        eprintln!("{k:28} {v:>12.1}");
    }
    for (k, v) in &r {
        if k.starts_with("native") && v.is_nan() {
            common::skip(test, "gcc missing: no figures");
            return;
        }
        assert!(*v > 0.0, "{k} = {v}");
    }
}
