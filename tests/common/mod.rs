//! Shared helpers of the KVM integration tests.
#![allow(dead_code)]

use std::io::Write;

use vkernel::core::prelude::*;

/// Where code is mapped (linear, read+execute) in test vmspaces.
pub const CODE_VA: u64 = 0x40_0000;
/// First RAM frame handed to the frame allocator.
pub const FRAMES_START: u64 = 0x10_0000;

/// Iteration counts are multiplied by VKERNEL_TEST_SCALE (default 1.0):
/// the TCG guest of the SVM stage runs with a small scale.
pub fn scaled(n: u64) -> u64 {
    let s: f64 = std::env::var("VKERNEL_TEST_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as u64).max(1)
}

/// Print a loud SKIP and record it for .ci/run.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIP: {test}: {why}");
    eprintln!("\n*** {line} ***\n");
    if let Ok(path) = std::env::var("VKERNEL_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Is /dev/kvm there? Prints a loud SKIP for `test` when it is not.
pub fn have_kvm(test: &str) -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        true
    } else {
        skip(test, "/dev/kvm is not available");
        false
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(test: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "vkernel-test-{}-{}-{}",
        std::process::id(),
        test,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A machine, or None (after a loud SKIP) when /dev/kvm is absent.
pub fn machine(test: &str, ram: u64) -> Option<Machine> {
    if !std::path::Path::new("/dev/kvm").exists() {
        skip(test, "/dev/kvm is not available");
        return None;
    }
    Some(
        Machine::builder()
            .ram_size(ram)
            .build()
            .expect("build a machine on /dev/kvm"),
    )
}

/// Everything a single-vCPU test needs.
pub struct Env {
    pub m: Machine,
    pub cpu: Cpu,
    pub frames: FrameAlloc,
}

impl Env {
    pub fn new(test: &str) -> Option<Env> {
        Env::with_ram(test, 64 << 20)
    }

    pub fn with_ram(test: &str, ram: u64) -> Option<Env> {
        let m = machine(test, ram)?;
        let cpu = m.take_cpu(0).unwrap();
        let frames = FrameAlloc::new(FRAMES_START, ram).unwrap();
        Some(Env { m, cpu, frames })
    }

    /// A vmspace running `code` at CODE_VA (copied to a fresh frame).
    pub fn vmspace_with(&mut self, code: &[u8]) -> Vmspace {
        let gpa = self.frames.alloc(self.m.ram()).unwrap();
        self.m.ram().write(gpa, code).unwrap();
        let vms = self.m.vmspace_create().unwrap();
        vms.mmap(
            CODE_VA,
            0x1000,
            Backing::Linear {
                gpa,
                prot: Prot::RX,
            },
        )
        .unwrap();
        vms
    }

    /// A vpagetable-governed region of `pages` pages at `va`, each mapped to
    /// a fresh frame with `flags`. Returns the table and the frames.
    pub fn vpt_region(
        &mut self,
        vms: &Vmspace,
        va: u64,
        pages: u64,
        flags: u64,
    ) -> (VpTable, Vec<u64>) {
        let vpt = VpTable::new(self.m.ram(), &mut self.frames).unwrap();
        let mut fr = Vec::new();
        for i in 0..pages {
            let f = self.frames.alloc(self.m.ram()).unwrap();
            vpt.map(self.m.ram(), &mut self.frames, va + i * 4096, f, flags)
                .unwrap();
            fr.push(f);
        }
        vms.mmap(va, pages * 4096, Backing::PageTable).unwrap();
        vms.mcontrol(va, pages * 4096, Mcontrol::SetMap { root: vpt.root() })
            .unwrap();
        (vpt, fr)
    }

    pub fn run(&mut self, vms: &Vmspace, f: &mut TrapFrame) -> Trap {
        self.cpu.run(vms, f).expect("run")
    }

    /// Run until the program exits (syscall 60); returns rdi.
    pub fn run_to_exit(&mut self, vms: &Vmspace, f: &mut TrapFrame) -> u64 {
        match self.run(vms, f) {
            Trap::Syscall if f.rax == vkernel::guest::programs::SYS_EXIT => f.rdi,
            other => panic!("expected exit, got {other:?} at rip {:#x}", f.rip),
        }
    }
}

pub fn frame(rdi: u64, rsi: u64, rdx: u64) -> TrapFrame {
    let mut f = TrapFrame::new(CODE_VA, 0x7000_0000);
    f.rdi = rdi;
    f.rsi = rsi;
    f.rdx = rdx;
    f
}
