//! Edge cases of the Linux personality (issue 12, items 12 and 17), each
//! compared with a native run of the same binary (tests/guests/edges.c):
//! Linux's argument checks of mmap/munmap/mprotect/madvise/mremap/brk,
//! `int $0x80`, syscalls with a kernel-half RSP, a kernel-half GS base,
//! reads and writes straddling an unmapped page, bad buffers on /dev/null,
//! mprotect on mapped pages, readlink, and ENOSPC from the host. Tests SKIP loudly without /dev/kvm or a C
//! compiler.

mod common;

use common::{have_kvm, scratch, shell_status, Native};

use std::path::Path;
use std::process::{Command, Stdio};

/// Run natively with stdout in a regular file (Linux's partial-write rule
/// is the generic one there). Returns (stdout, status).
fn native(test: &str, prog: &Path, args: &[&str]) -> (String, i32) {
    let n = Native::new(prog)
        .args(args)
        .stdout_file(scratch(test).join("stdout"))
        .run();
    (n.stdout, n.status)
}

/// Run alone in a fresh virtual kernel. Returns (stdout, status).
fn vk(prog: &Path, args: &[&str]) -> (String, i32) {
    let r = common::vk(common::program(prog).args(args).ram(256 << 20), b"");
    let status = r.status();
    (r.stdout, status)
}

/// `edges MODE` prints the same and exits the same natively and under
/// vkernel, for each compiler found.
fn same(test: &str, mode: &str) {
    for (cc, p) in common::kvm_guests(test, "edges") {
        let n = native(test, &p, &[mode]);
        assert_eq!(
            n.1,
            if mode == "int80" { 7 } else { 0 },
            "native {mode} ({cc})"
        );
        let v = vk(&p, &[mode]);
        assert_eq!(
            v, n,
            "edges {mode} ({cc}): vkernel (left) vs native (right)"
        );
    }
}

#[test]
fn linux_mm_calls_check_arguments_like_linux() {
    same("linux_mm_calls_check_arguments_like_linux", "mm");
}

#[test]
fn linux_int80_serves_i386_calls() {
    same("linux_int80_serves_i386_calls", "int80");
}

#[test]
fn linux_syscall_with_a_kernel_half_rsp() {
    same("linux_syscall_with_a_kernel_half_rsp", "rsp");
}

#[test]
fn linux_kernel_half_gs_base() {
    same("linux_kernel_half_gs_base", "gs");
}

#[test]
fn linux_straddling_reads_and_writes_are_partial() {
    same("linux_straddling_reads_and_writes_are_partial", "straddle");
}

#[test]
fn linux_dev_null_ignores_the_buffer() {
    same("linux_dev_null_ignores_the_buffer", "null");
}

/// mprotect on pages already mapped: RW -> R keeps reads and faults every
/// write (the hardware entries are write-protected, not dropped), R -> RW
/// lets writes through, NONE faults reads, RX faults writes.
#[test]
fn linux_mprotect_takes_effect_on_mapped_pages() {
    same("linux_mprotect_takes_effect_on_mapped_pages", "protect");
}

/// readlink and readlinkat of a link of the tree, of /proc/self/exe (which
/// the exitless server answers), of what is no link, with a short buffer
/// and a zero size, as natively.
#[test]
fn linux_readlink_matches_native() {
    same("linux_readlink_matches_native", "links");
}

/// A host ENOSPC (stdout on /dev/full) reaches the vproc as ENOSPC.
#[test]
fn linux_host_enospc_is_enospc() {
    let test = "linux_host_enospc_is_enospc";
    if !have_kvm(test) || !Path::new("/dev/full").exists() {
        return;
    }
    let Some(p) = common::compile(test, "edges", "musl-gcc") else {
        return;
    };
    let run = |cmd: &mut Command| {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = cmd
            .stdin(Stdio::null())
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&o.stderr).into_owned(),
            shell_status(o.status),
        )
    };
    let n = run(Command::new(&p).arg("enospc"));
    assert!(n.0.contains("errno 28"), "native: {n:?}");
    let v = run(Command::new(common::example_binary("vkernel"))
        .arg("run")
        .arg(&p)
        .arg("enospc"));
    assert_eq!(v, n, "vkernel (left) vs native (right)");
}
