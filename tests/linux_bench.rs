//! Smoke test of vkbench's Linux suite (examples/vkbench/linux.rs) in quick
//! mode: every figure that can be measured on this machine is a positive
//! number, and vkernel's figures exist whenever /dev/kvm does.

mod common;

// The bench module expects its siblings `raw` and `median`, as in vkbench.
#[path = "../examples/vkbench/raw.rs"]
#[allow(dead_code)]
mod raw;

use vkernel::linux as personality;

#[path = "../examples/vkbench/linux.rs"]
mod linux;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn linux_bench_quick_reports_every_figure() {
    if !std::path::Path::new("/dev/kvm").exists() {
        common::skip(
            "linux_bench_quick_reports_every_figure",
            "/dev/kvm is not available",
        );
        return;
    }
    let r = linux::measure(true);
    for (k, v) in &r {
        eprintln!("{k:28} {v:>12.1}");
    }
    let get = |k: &str| r.iter().find(|(n, _)| n == k).map(|x| x.1).unwrap();
    for k in [
        "vk_getppid_ns",
        "native_getppid_ns",
        "qemu_getppid_ns",
        "vk_first_touch_ns",
        "native_first_touch_ns",
        "qemu_first_touch_ns",
        "raw_exit_ns",
    ] {
        let v = get(k);
        if k.starts_with("native") && v.is_nan() {
            common::skip(
                "linux_bench_quick_reports_every_figure",
                "gcc missing: no native figures",
            );
            return;
        }
        if k.starts_with("qemu") && v.is_nan() {
            eprintln!("(qemu-x86_64 not installed: {k} is null)");
            continue;
        }
        assert!(v > 0.0, "{k} = {v}");
    }
}
