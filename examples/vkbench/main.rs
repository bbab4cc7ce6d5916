//! vkbench: vkernel's benchmarks. Every figure comes with a floor measured
//! in the same run, because these machines are noisy.
//!
//! ```text
//! cargo run --release --example vkbench -- [--json] [--quick] core|devices|all
//! ```

mod core_bench;
mod cpu_bench;
mod devices;
mod linux;
mod memstat;
/// The Linux personality, used by the linux and sched suites.
use vkernel::linux as personality;
mod raw;
mod sched;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let suites: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|s| s.as_str())
        .collect();
    let suites = if suites.is_empty() || suites.contains(&"all") {
        vec!["core", "devices", "memstat", "linux", "sched"]
    } else {
        suites
    };
    let mut out: Vec<(String, f64)> = Vec::new();
    for s in suites {
        eprintln!("vkbench: running {s}...");
        match s {
            "core" => out.extend(core_bench::measure(quick)),
            "memstat" => out.extend(memstat::measure(quick)),
            "linux" => out.extend(linux::measure(quick)),
            "sched" => out.extend(sched::measure(quick)),
            "devices" => {
                out.extend(
                    devices::measure(quick)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v)),
                );
                out.extend(cpu_bench::measure(quick));
            }
            other => {
                eprintln!("vkbench: unknown suite '{other}' (expected core, devices, memstat, linux, sched or all)");
                std::process::exit(2);
            }
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
