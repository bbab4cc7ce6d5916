//! TCP over the tap network (issue 24's `vk_tap_gbps`), beside native
//! Linux between two network namespaces over a veth pair
//! (`native_veth_gbps`), in the same run. tests/guests/tcpblast.c (static)
//! sends 256 MiB in 256 KiB writes; the receiver times from its first
//! byte to end of file:
//!
//! - `vk_tap_gbps`: a vproc sends, the host side of the tap receives;
//! - `vk_tap_rx_gbps`: the host side sends, a vproc receives;
//! - `native_veth_gbps`: one namespace sends to another over a veth pair.
//!
//! The vkernel is the example binary next to vkbench, started fresh for
//! each round (`ip netns exec NS vkernel run --net tap:...`), in a network
//! namespace of its own, so nothing leaves the machine. Needs root (for
//! namespaces and taps) and `ip`; without them the figures are NaN, with
//! the reason on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::sched::SelfTimed;

const BLAST: SelfTimed = SelfTimed {
    source: "tcpblast.c",
    keys: &[],
    suite: "tcpblast",
};

/// MiB sent per round.
const MIB: &str = "256";

/// A network namespace, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(name: String) -> Result<Ns, String> {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("cannot create a network namespace (needs root and iproute2)".into());
        }
        let ns = Ns(name);
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let o = self.cmd(args).output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// One transfer: a receiver started in `rx_ns` with `rx` (argv), then a
/// sender in `tx_ns` with `tx`; the receiver's Gbit/s.
fn transfer(rx_ns: &Ns, rx: &[&str], tx_ns: &Ns, tx: &[&str]) -> Result<f64, String> {
    let r = rx_ns
        .cmd(rx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let sent = tx_ns.run(tx);
    let out = r.wait_with_output().map_err(|e| e.to_string())?;
    sent?;
    let text = String::from_utf8_lossy(&out.stdout);
    let gbps = text
        .lines()
        .find_map(|l| l.strip_prefix("gbps "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| {
            format!(
                "receiver said: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(gbps)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `vkernel` example next to this binary, or what to build.
pub(super) fn vkernel_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = exe.with_file_name("vkernel");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: cargo build --release --example vkernel",
            p.display()
        ))
    }
}

fn measure_all(rounds: usize) -> Result<[f64; 3], String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm is absent".into());
    }
    let blast = BLAST.build()?;
    let blast = blast.to_str().ok_or("a UTF-8 temp path")?;
    let vk = vkernel_binary()?;
    let vk = vk.to_str().ok_or("a UTF-8 target path")?;
    let id = std::process::id();
    let ns = Ns::new(format!("vkbench-tap-{id}"))?;
    let net = "tap:vkb0,ip=10.76.0.2/24,host=10.76.0.1/24";
    let (mut out, mut inn) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let port = (6000 + round * 2).to_string();
        out.push(transfer(
            &ns,
            &[blast, "recv", &port],
            &ns,
            &[
                vk,
                "run",
                "--net",
                net,
                blast,
                "send",
                "10.76.0.1",
                &port,
                MIB,
            ],
        )?);
        let port = (6001 + round * 2).to_string();
        inn.push(transfer(
            &ns,
            &[vk, "run", "--net", net, blast, "recv", &port],
            &ns,
            &[blast, "send", "10.76.0.2", &port, MIB],
        )?);
    }
    // Native: two namespaces joined by a veth pair.
    let (a, b) = (
        Ns::new(format!("vkbench-va-{id}"))?,
        Ns::new(format!("vkbench-vb-{id}"))?,
    );
    a.run(&[
        "ip", "link", "add", "vkva", "type", "veth", "peer", "name", "vkvb", "netns", &b.0,
    ])?;
    a.run(&["ip", "addr", "add", "10.75.0.1/24", "dev", "vkva"])?;
    b.run(&["ip", "addr", "add", "10.75.0.2/24", "dev", "vkvb"])?;
    a.run(&["ip", "link", "set", "vkva", "up"])?;
    b.run(&["ip", "link", "set", "vkvb", "up"])?;
    let mut veth = Vec::new();
    for round in 0..rounds {
        let port = (7000 + round).to_string();
        veth.push(transfer(
            &a,
            &[blast, "recv", &port],
            &b,
            &[blast, "send", "10.75.0.1", &port, MIB],
        )?);
    }
    Ok([median(out), median(inn), median(veth)])
}

/// The tap figures (NaN, with the reason on stderr, where they cannot be
/// measured here).
pub fn measure(rounds: usize) -> Vec<(String, f64)> {
    eprintln!("vkbench net: tap: {rounds} rounds of {MIB} MiB each way, and over a veth pair");
    let figs = measure_all(rounds).unwrap_or_else(|e| {
        eprintln!("vkbench net: tap figures not measured: {e}");
        [f64::NAN; 3]
    });
    ["vk_tap_gbps", "vk_tap_rx_gbps", "native_veth_gbps"]
        .iter()
        .zip(figs)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
