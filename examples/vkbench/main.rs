//! vkbench: vkernel's benchmarks. Every figure comes with a floor measured
//! in the same run, because these machines are noisy.
//!
//! ```text
//! cargo run --release --example vkbench -- [--json] [--quick] [core|devices|memstat|linux|memory|sched|net|all]...
//! ```

mod core_bench;
mod cpu_bench;
mod devices;
mod dynexec;
mod lifecycle;
mod linux;
mod memory;
mod memstat;
mod net;
/// The Linux personality, used by the linux and sched suites.
use vkernel::linux as personality;
mod raw;
mod sched;
mod tap;

/// Does `cmd --version` run (is the tool installed)?
fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// vkbench's command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "vkbench",
    about = "vkernel's benchmarks, each figure with a floor measured in the same run"
)]
struct Args {
    /// Print one JSON object (figure name -> value, null when not measured).
    #[arg(long)]
    json: bool,
    /// Fewer iterations: a smoke run, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Suites to run (all when none is given).
    #[arg(value_enum)]
    suites: Vec<Suite>,
}

/// A benchmark suite.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Suite {
    /// vmspaces, faults and traps of the core.
    Core,
    /// virtio devices and vCPU figures.
    Devices,
    /// pagemap/PSS snapshots.
    Memstat,
    /// The Linux personality against native Linux (and qemu-user).
    Linux,
    /// Whole programs' memory use (first touch, sieve, sort) as fresh
    /// processes against native Linux and qemu-user.
    Memory,
    /// The scheduler against native Linux.
    Sched,
    /// TCP over the loopback network against native loopback.
    Net,
    /// Every suite.
    All,
}

fn main() {
    // A child run of the fork+exec loop, counted by `perf stat` (see
    // lifecycle.rs): not a user-facing mode.
    if let Some(spec) = std::env::var_os(lifecycle::CHILD_ENV) {
        std::process::exit(lifecycle::child(&spec));
    }
    let args = <Args as clap::Parser>::parse();
    let (json, quick) = (args.json, args.quick);
    let suites = if args.suites.is_empty() || args.suites.contains(&Suite::All) {
        vec![
            Suite::Core,
            Suite::Devices,
            Suite::Memstat,
            Suite::Linux,
            Suite::Memory,
            Suite::Sched,
            Suite::Net,
        ]
    } else {
        args.suites
    };
    let mut out: Vec<(String, f64)> = Vec::new();
    for s in suites {
        let name = clap::ValueEnum::to_possible_value(&s).map(|v| v.get_name().to_string());
        eprintln!("vkbench: running {}...", name.unwrap_or_default());
        match s {
            Suite::Core => out.extend(core_bench::measure(quick)),
            Suite::Memstat => out.extend(memstat::measure(quick)),
            Suite::Linux => {
                out.extend(linux::measure(quick));
                out.extend(dynexec::measure(quick));
            }
            Suite::Memory => out.extend(memory::measure(quick)),
            Suite::Sched => out.extend(sched::measure(quick)),
            Suite::Net => out.extend(net::measure(quick)),
            Suite::Devices => {
                out.extend(
                    devices::measure(quick)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v)),
                );
                out.extend(cpu_bench::measure(quick));
            }
            Suite::All => unreachable!("expanded above"),
        }
    }
    if json {
        let body: Vec<String> = out
            .iter()
            .map(|(k, v)| {
                format!(
                    "\"{k}\": {}",
                    if v.is_finite() {
                        format!("{v:.3}")
                    } else {
                        "null".into()
                    }
                )
            })
            .collect();
        println!("{{{}}}", body.join(", "));
    } else {
        for (k, v) in &out {
            println!("{k:32} {v:>14.3}");
        }
    }
}
