//! Smoke test of vkbench's sched suite (examples/vkbench/sched.rs) in quick
//! mode, run as the vkbench example process (`--quick --json sched`): every
//! figure that can be measured here is a positive number.

mod common;

#[test]
fn linux_sched_bench_quick_reports_every_figure() {
    let test = "linux_sched_bench_quick_reports_every_figure";
    let Some(r) = common::kvm_vkbench(test, "sched") else {
        return;
    };
    assert!(!r.is_empty(), "vkbench sched reported nothing");
    for (k, v) in &r {
        if k.starts_with("native") && v.is_nan() {
            common::skip(test, "gcc missing: no figures");
            return;
        }
        assert!(*v > 0.0, "{k} = {v}");
    }
}
