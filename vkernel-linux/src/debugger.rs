//! A small debugger prompt, entered when SIGINT arrives on the console
//! (Ctrl-C): list vmspaces and areas, show registers, walk the vpagetable
//! for an address, continue or quit.

use std::sync::Arc;

use crate::core::prelude::*;

use super::kernel::Kernel;
use super::stdio::SharedStdio;
use super::Vproc;

/// What the user chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Resume the vproc.
    Continue,
    /// Kill it (the example exits 130, like a shell after SIGINT).
    Quit,
}

const HELP: &str = "commands: vms | maps | regs | walk ADDR | stats | ps | memstats [PID] [--json] | memrank [--json] | gdb [PID] ADDR | c[ontinue] | q[uit] | help\n";

/// `gdb [PID] ADDR`: stop process `pid` and serve gdb for it at ADDR
/// (HOST:PORT or a Unix socket path; see [`crate::gdb_remote`]).
fn gdb_cmd(k: &Arc<Kernel>, pid: Option<&str>, addr: &str) -> String {
    let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else {
        return "gdb: give the process id (see ps)\n".to_string();
    };
    let addr: crate::gdb_remote::GdbAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => return format!("gdb: {e}\n"),
    };
    let hook = match crate::gdb_remote::debugger(&addr, |a| {
        crate::vk_eprintln!("vkernel: waiting for gdb on {a} (target remote {a})");
    }) {
        Ok(h) => h,
        Err(e) => return format!("gdb {addr}: {e} (give a free HOST:PORT or a socket path)\n"),
    };
    if let Err(e) = k.debug_attach(pid) {
        return format!(
            "gdb: cannot trace process {pid} (errno {e}: no such process, or traced already)\n"
        );
    }
    // The stub thread runs on its own; the process stops once it runs.
    drop((hook.0)(k.clone(), pid));
    format!("gdb: process {pid} stops when it runs again; continue (c) and connect gdb\n")
}

/// `memstats [PID] [--json]` / `memrank [--json]`.
fn memstats_cmd(k: &Arc<Kernel>, args: &[&str], ranked: bool) -> String {
    let json = args.contains(&"--json");
    let pid = args.iter().find_map(|a| a.parse::<u32>().ok());
    k.memstats(if ranked { None } else { pid }, ranked, json)
}

fn out(vp: &mut Vproc, s: &str) {
    let _ = vp.stdio.write(2, s.as_bytes());
}

/// The prompt when no vproc is on the vCPU (all are blocked): process
/// and memory commands only.
pub fn prompt_kernel(k: &Arc<Kernel>, st: &SharedStdio) -> Outcome {
    let _ = st.write(2, HELP.as_bytes());
    loop {
        let _ = st.write(2, b"(vkdb) ");
        let Some(line) = st.read_line() else {
            let _ = st.write(2, b"\n");
            return Outcome::Continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let text = match words.as_slice() {
            [] => continue,
            ["c" | "continue"] => return Outcome::Continue,
            ["q" | "quit"] => return Outcome::Quit,
            ["ps"] => k.ps(),
            ["memstats", rest @ ..] => memstats_cmd(k, rest, false),
            ["memrank", rest @ ..] => memstats_cmd(k, rest, true),
            ["gdb", pid, addr] => gdb_cmd(k, Some(pid), addr),
            _ => format!("no vproc is on this vCPU; {HELP}"),
        };
        let _ = st.write(2, text.as_bytes());
    }
}

/// Run the prompt until the user continues or quits.
pub fn prompt(vp: &mut Vproc, cpu: &Cpu, k: &Arc<Kernel>) -> Outcome {
    out(
        vp,
        &format!(
            "\n[vkernel debugger] vproc {} ({}) stopped. ",
            vp.pid, vp.comm
        ),
    );
    out(vp, HELP);
    loop {
        out(vp, "(vkdb) ");
        let Some(line) = vp.stdio.read_line() else {
            out(vp, "\n");
            return Outcome::Continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let text = match words.as_slice() {
            [] => continue,
            ["c" | "continue"] => return Outcome::Continue,
            ["q" | "quit"] => return Outcome::Quit,
            ["help" | "h" | "?"] => HELP.to_string(),
            ["vms"] => vms(vp),
            ["maps"] => maps(vp),
            ["regs" | "r"] => regs(&vp.frame),
            ["stats"] => stats(vp, cpu),
            ["ps"] => k.ps(),
            [cmd @ ("memstats" | "memrank"), rest @ ..] => memstats_cmd(k, rest, *cmd == "memrank"),
            ["gdb", addr] => gdb_cmd(k, Some(&vp.thread.tgid.to_string()), addr),
            ["gdb", pid, addr] => gdb_cmd(k, Some(pid), addr),
            ["walk" | "w", a] => match parse(a) {
                Some(va) => walk(vp, va),
                None => format!("bad address '{a}' (use hex like 0x401000)\n"),
            },
            _ => format!("unknown command '{line}'; {HELP}"),
        };
        out(vp, &text);
    }
}

fn parse(a: &str) -> Option<u64> {
    let a = a.trim();
    match a.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => a.parse().ok().or_else(|| u64::from_str_radix(a, 16).ok()),
    }
}

fn vms(vp: &Vproc) -> String {
    let v = vp.mm.vmspace();
    let mut s = format!(
        "vmspace {} (vpagetable root {:#x}), {} resident pages\n",
        v.id(),
        vp.mm.vptable().root(),
        vp.mm.resident_pages()
    );
    for (start, end, b) in v.mappings() {
        s += &format!("  {start:#014x}-{end:#014x} {b:?}\n");
    }
    s
}

fn maps(vp: &Vproc) -> String {
    let mut s = String::new();
    for (start, v) in vp.mm.vmas() {
        let p = |b: u32, c: char| if v.prot & b != 0 { c } else { '-' };
        s += &format!(
            "{start:#014x}-{:#014x} {}{}{} {:?}\n",
            v.end,
            p(1, 'r'),
            p(2, 'w'),
            p(4, 'x'),
            v.kind
        );
    }
    s
}

/// Format registers.
pub fn regs(f: &TrapFrame) -> String {
    format!(
        "rip {:#018x} rsp {:#018x} rflags {:#x}\n\
         rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n\
         rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}\n\
         r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}\n\
         r13 {:#018x} r14 {:#018x} r15 {:#018x}\n\
         fs_base {:#x} gs_base {:#x}\n",
        f.rip,
        f.rsp,
        f.rflags,
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8,
        f.r9,
        f.r10,
        f.r11,
        f.r12,
        f.r13,
        f.r14,
        f.r15,
        f.fs_base,
        f.gs_base
    )
}

fn stats(vp: &Vproc, cpu: &Cpu) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\nsyscalls served {}\n",
        cpu.stats(),
        vp.mm.vmspace().stats(),
        vp.mm.stats,
        vp.syscalls
    )
}

fn walk(vp: &Vproc, va: u64) -> String {
    let area = match vp.mm.find(va) {
        Some((s, v)) => format!("area {s:#x}-{:#x} {:?} prot {}", v.end, v.kind, v.prot),
        None => "no area".to_string(),
    };
    match vp.mm.vmspace().walk(va) {
        Ok(t) => format!("{va:#x}: {area}; {t:?}\n"),
        Err(e) => format!("{va:#x}: {area}; not mapped: {e:?}\n"),
    }
}
