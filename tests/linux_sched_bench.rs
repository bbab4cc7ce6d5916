//! Smoke tests of vkbench's sched and net suites (examples/vkbench/sched.rs,
//! net.rs) in quick mode, run as the vkbench example process (`--quick
//! --json SUITE`): every figure that can be measured here is a positive
//! number, and the net suite names its figures as issue 24 asks.

mod common;

/// Run `suite` quickly: every figure positive, each of `keys` present.
fn reports_every_figure(test: &str, suite: &str, keys: &[&str]) {
    let Some(r) = common::kvm_vkbench(test, suite) else {
        return;
    };
    assert!(!r.is_empty(), "vkbench {suite} reported nothing");
    for k in keys {
        assert!(
            r.iter().any(|(n, _)| n == k),
            "vkbench {suite} reports no {k}: {r:?}"
        );
    }
    for (k, v) in &r {
        if k.starts_with("native") && v.is_nan() {
            common::skip(test, "gcc missing: no figures");
            return;
        }
        assert!(*v > 0.0, "{k} = {v}");
    }
}

#[test]
fn linux_sched_bench_quick_reports_every_figure() {
    reports_every_figure(
        "linux_sched_bench_quick_reports_every_figure",
        "sched",
        &["unix_evloop_ns", "native_unix_evloop_ns"],
    );
}

#[test]
fn linux_net_bench_quick_reports_every_figure() {
    reports_every_figure(
        "linux_net_bench_quick_reports_every_figure",
        "net",
        &[
            "vk_loopback_gbps",
            "native_loopback_gbps",
            "vk_tcp_rr_ns",
            "native_tcp_rr_ns",
            "vk_tcp_conn_per_s",
            "native_tcp_conn_per_s",
            "raw_exit_ns",
        ],
    );
}
