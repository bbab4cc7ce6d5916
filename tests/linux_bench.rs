//! Smoke test of vkbench's Linux suite (examples/vkbench/linux.rs) in quick
//! mode, run as the vkbench example process (`--quick --json linux`): every
//! figure that can be measured on this machine is a positive number, and
//! vkernel's figures exist whenever /dev/kvm does.

mod common;

#[test]
fn linux_bench_quick_reports_every_figure() {
    let test = "linux_bench_quick_reports_every_figure";
    let Some(r) = common::kvm_vkbench(test, "linux") else {
        return;
    };
    let get = |k: &str| {
        r.iter()
            .find(|(n, _)| n == k)
            .map(|x| x.1)
            .unwrap_or_else(|| panic!("vkbench linux reports no {k}: {r:?}"))
    };
    for k in [
        "vk_getppid_ns",
        "vk_getppid_exit_ns",
        "cpu_ns_per_syscall",
        "native_getppid_ns",
        "qemu_getppid_ns",
        "vk_warm_first_touch_ns",
        "native_first_touch_ns",
        "qemu_first_touch_ns",
        "vk_warm_first_touch_large_ns",
        "native_first_touch_large_ns",
        "qemu_first_touch_large_ns",
        "raw_exit_ns",
        "dyn_exec_ms",
        "native_dyn_exec_ms",
        "qemu_dyn_exec_ms",
    ] {
        let v = get(k);
        if k.starts_with("native") && v.is_nan() {
            common::skip(test, "gcc missing: no native figures");
            return;
        }
        if k.starts_with("qemu") && v.is_nan() {
            eprintln!("(qemu-x86_64 not installed: {k} is null)");
            continue;
        }
        assert!(v > 0.0, "{k} = {v}");
    }
}

/// vkbench's memory suite (examples/vkbench/memory.rs) in quick mode:
/// each program timed as a fresh vkernel process, natively and (when
/// installed) under qemu-user, with the exit floor beside them.
#[test]
fn memory_bench_quick_times_fresh_processes() {
    let test = "memory_bench_quick_times_fresh_processes";
    if !common::have_kvm(test) {
        return;
    }
    // The suite runs the vkernel example as a process.
    common::example_binary("vkernel");
    let r = common::vkbench_quick("memory");
    let get = |k: &str| r.iter().find(|(n, _)| n == k).map(|x| x.1);
    if get("native_pages_ms").is_none() {
        common::skip(test, "gcc missing: no memory figures");
        return;
    }
    for p in ["pages", "sieve", "sort"] {
        for k in [
            format!("native_{p}_ms"),
            format!("vk_{p}_ms"),
            format!("vk_{p}_cpu_ms"),
            format!("vk_{p}_x_native"),
        ] {
            let v = get(&k).unwrap_or_else(|| panic!("no {k}: {r:?}"));
            assert!(v > 0.0, "{k} = {v}");
        }
    }
    assert!(get("raw_exit_ns").is_some_and(|v| v > 0.0), "{r:?}");
}

/// Unknown flags are refused with clap's message, not silently ignored.
#[test]
fn vkbench_rejects_unknown_flags_and_suites() {
    for args in [&["--bogus"][..], &["nosuchsuite"][..]] {
        let out = std::process::Command::new(common::example_binary("vkbench"))
            .args(args)
            .output()
            .expect("run vkbench");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("error:"), "{args:?}: {err}");
        assert!(err.contains(args[0]), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} ran something");
    }
}
