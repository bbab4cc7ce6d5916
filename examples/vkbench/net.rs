//! TCP over the loopback network: one static program
//! (tests/guests/netbench.c, built with `gcc -static` at run time) run
//! natively and as vprocs of the example's virtual kernel (one vCPU) in
//! the same run, beside the machine's exit floor (`raw_exit_ns`):
//!
//! - `vk_loopback_gbps` / `native_loopback_gbps`: 64 MiB from one process
//!   to another over 127.0.0.1, in 256 KiB writes.
//! - `vk_tcp_rr_ns` / `native_tcp_rr_ns`: a byte's round trip between two
//!   processes (TCP_NODELAY).
//! - `vk_tcp_conn_per_s` / `native_tcp_conn_per_s`: connect, accept and
//!   close both ends, in one process.
//!
//! - the tap figures (`vk_tap_gbps`, `vk_tap_rx_gbps`, `native_veth_gbps`):
//!   see [`super::tap`].

use super::sched::SelfTimed;

/// The figures of tests/guests/netbench.c.
const NET: SelfTimed = SelfTimed {
    source: "netbench.c",
    keys: &["loopback_gbps", "tcp_rr_ns", "tcp_conn_per_s"],
    suite: "netbench",
};

/// Run the suite.
pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let rounds = if quick { 3 } else { 5 };
    let args: Vec<String> = if quick {
        vec!["200".into(), "100".into()]
    } else {
        vec!["2000".into(), "500".into()]
    };
    eprintln!(
        "vkbench net: {rounds} rounds of 64 MiB, {} round trips, {} connections",
        args[0], args[1]
    );
    let mut out = NET.figures(&args, rounds, "vk_");
    let raw = if std::path::Path::new("/dev/kvm").exists() {
        super::raw::raw_exit_ns(if quick { 20_000 } else { 100_000 }, rounds)
    } else {
        f64::NAN
    };
    out.extend(super::tap::measure(rounds));
    out.push(("raw_exit_ns".into(), raw));
    out
}
