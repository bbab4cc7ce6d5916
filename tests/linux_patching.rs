//! Syscall patching (`linux::mm::patch`) against programs that do what a
//! native program may do to their own code, memory and GS: each check of
//! `tests/guests/patch_hostile.c` runs natively and under a virtual kernel
//! with the default options (exitless syscalls and patching on), and the
//! outputs must be equal. The checks (issue 20, item 6):
//! - (a) a program rewrites the immediate of a patched `mov eax, N` site
//!   through mprotect (in a JIT page and in its own text);
//! - (b) `b8 N 0f 05` that is the tail of a longer instruction (a `lea`,
//!   and a store whose displacement ends in `b8`);
//! - (c) a JIT page with a patched site is unmapped, data mapped at the
//!   same address, then ARCH_SET_GS (which puts sites back);
//! - (d) MAP_FIXED over the space below the text, where the stub page is;
//! - (e) a GS selector reload, then patched calls; `%gs:0`, `%gs:0x50`
//!   and `%gs:0x1000` fault as natively;
//! - (f) sites whose number is in a register, rewritten through a hop in
//!   the padding after them (issue 25, `linux::mm::hop`): live data in the
//!   red zone survives the call, a branch to the `syscall` itself still
//!   makes the call, and one-byte reads through the C library's `read`
//!   (glibc's `xor eax, eax; syscall`) return the bytes written;
//! - (g) a `read` waiting at a hop site, woken by a child's byte and
//!   interrupted by its SIGCHLD at once, 300 times.

mod common;

use std::path::Path;
use std::sync::Arc;

use vkernel::linux;

use linux::fs::{Fs, RootSpec};
use linux::kernel::{Options, Report};
use linux::launch::Launch;

/// Calls per site and check.
const ITERS: &str = "1000";

/// Run `prog args` under a virtual kernel with default options on `cpus`
/// vCPUs: its stdout and report.
fn vk(prog: &Path, args: &[&str], cpus: usize) -> (String, Report) {
    let opts = Options {
        cpus,
        ..Default::default()
    };
    assert!(opts.exitless && opts.patch_syscalls, "the defaults");
    let fs = Fs::new(RootSpec::Empty, &[]).expect("an empty tree");
    let l = Launch::bytes(std::fs::read(prog).unwrap(), prog.display().to_string())
        .args(args)
        .ram(256 << 20)
        .root(Arc::new(fs))
        .options(opts);
    let r = common::vk_in_time("the virtual kernel", 180, l);
    (r.stdout, r.report)
}

/// Run check `which` of patch_hostile natively and under the vkernel on
/// each vCPU count of `cpus`, for each compiler: equal outputs, status 0,
/// and sites patched (so the check ran against patched code).
fn check(test: &str, which: &str, cpus: &[usize]) {
    for (cc, prog) in common::kvm_guests(test, "patch_hostile") {
        let want = common::native_stdout(cc, &prog, &[which, ITERS]);
        assert!(
            !want.contains("failed") && !want.contains("died"),
            "{cc} native: {want}"
        );
        for &n in cpus {
            let (out, report) = vk(&prog, &[which, ITERS], n);
            let what = format!(
                "{cc}, check {which}, {n} vCPUs (status {:?}, {:?})",
                report.status, report.death
            );
            eprintln!("{test}: {what}: {} sites patched", report.patched_sites);
            assert_eq!(out, want, "{what}");
            assert_eq!(report.status.code(), 0, "{what}");
            assert!(report.patched_sites > 0, "{what}: nothing patched");
        }
    }
}

/// (a) Rewriting the immediate of a patched site (mprotect to writable,
/// write, mprotect back) takes effect: making the page writable puts the
/// site's `mov` back first, so the program changes its own instruction,
/// and the new one is patched again later.
#[test]
fn rewritten_immediate_of_a_patched_site_takes_effect() {
    check(
        "rewritten_immediate_of_a_patched_site_takes_effect",
        "a",
        &[1],
    );
}

/// (b) `b8 N 0f 05` at the end of a longer instruction: a `lea` whose
/// ModRM is `b8` is never patched (the boundary rule), and a store whose
/// displacement ends in `b8`, which the rule cannot see, faults once when
/// patched; the site is put back and the store runs as written.
#[test]
fn tail_of_a_longer_instruction_runs_as_written() {
    check("tail_of_a_longer_instruction_runs_as_written", "b", &[1]);
}

/// (c) A JIT page with a patched site, unmapped and replaced by data:
/// ARCH_SET_GS (which puts every site back) leaves the data alone.
#[test]
fn unmapped_site_is_never_restored_over_new_data() {
    check("unmapped_site_is_never_restored_over_new_data", "c", &[1]);
}

/// (d) MAP_FIXED over the space below the program, where the vkernel keeps
/// the stub page: every site using it is put back first (the call that
/// maps returns to its own site), and patched calls keep working.
#[test]
fn map_fixed_over_the_stub_page_keeps_calls_working() {
    check(
        "map_fixed_over_the_stub_page_keeps_calls_working",
        "d",
        &[1],
    );
}

/// (e) Reloading the GS selector (Intel clears the base) does not break
/// patched calls (the patched entry's GS read faults and the call goes
/// through the stub's `syscall`), and the program's own `%gs:` reads fault
/// as natively (the base the vkernel gives is below 64 KiB), on vCPU 0
/// and the others.
#[test]
fn gs_reload_and_gs_reads_behave_as_native() {
    check("gs_reload_and_gs_reads_behave_as_native", "e", &[1, 2]);
}

/// (f) Hop sites (issue 25): the red zone below RSP is intact after a
/// patched call (nothing is pushed), a branch to the rewritten `syscall`
/// still makes the call, and one-byte reads through the C library's
/// `read` give the bytes written, with one and two vCPUs.
#[test]
fn hop_sites_keep_the_red_zone_branch_targets_and_reads() {
    check(
        "hop_sites_keep_the_red_zone_branch_targets_and_reads",
        "f",
        &[1, 2],
    );
}

/// (g) As a shell reading a command substitution, 300 times: a child
/// writes a byte and exits while the parent's `read` (glibc: a hop site)
/// waits; the byte wakes it and SIGCHLD (no SA_RESTART) interrupts it.
/// Two bugs met here: a retry stopped on its way through the hop's
/// `jmp`s got EINTR's "step over the `syscall`" applied at the stub
/// (a shell's SIGSEGV at `stub + 2`: `Vproc::back_at_pending_call`), and
/// the 64th fresh child faulting once at the same text address as its
/// siblings was taken for a fault loop and killed (`cpu::fault_streak`).
#[test]
fn blocked_read_woken_and_interrupted_by_sigchld() {
    check(
        "blocked_read_woken_and_interrupted_by_sigchld",
        "g",
        &[1, 2],
    );
}

/// Sites of a program file that earlier processes called (three calls in
/// all, `kernel::site_book`) are rewritten in each new process of that
/// file before it runs: in a fork+exec loop of busybox applets, each
/// fresh process starts with its known sites patched (so each exec adds
/// patched sites) and the loop computes what it does natively, on 1 and
/// 2 vCPUs.
#[test]
fn known_sites_are_rewritten_before_a_fresh_process_runs() {
    let test = "known_sites_are_rewritten_before_a_fresh_process_runs";
    let Some(bb) = common::kvm_busybox(test) else {
        return;
    };
    let bb = bb.display().to_string();
    let script =
        format!("s=0; for i in $(seq 40); do s=$({bb} expr $s + $i); {bb} true; done; echo $s");
    let args = ["sh", "-c", script.as_str()];
    let want = common::native_stdout("busybox", Path::new(&bb), &args);
    assert_eq!(want, "820\n", "native");
    for cpus in [1, 2] {
        let l = common::guest(Path::new(&bb), &args, cpus).root(common::host_root());
        let r = common::vk_watched(test, 180, l);
        let what = format!("{cpus} vCPUs ({:?}, {:?})", r.report.status, r.report.death);
        eprintln!(
            "{test}: {what}: {} sites patched, served {} through rewritten sites and {} through syscall",
            r.report.patched_sites, r.report.served_rewritten, r.report.served_syscall
        );
        assert_eq!(r.stdout, want, "{what}");
        assert_eq!(r.report.status.code(), 0, "{what}");
        // 80 fresh processes; all but the first few start with the
        // busybox sites the earlier ones called rewritten.
        assert!(
            r.report.patched_sites >= 70,
            "{what}: {} sites patched",
            r.report.patched_sites
        );
    }
}

/// `cpuid` sites (`linux::mm::patch::cpuid`): a program (its init process
/// runs with CPUID faulting off, so KVM answers it) fork+execs itself 6
/// times; the first children answer their `cpuid`s in the vkernel and
/// count the sites, the later ones start with the constant sites rewritten
/// to their answers. Every child prints what the parent got from KVM: the
/// three site forms, leaves past the last, the hypervisor's leaf, a loop
/// with the leaf in a register, and the flags around `cpuid`; on 1 and 2
/// vCPUs. Natively the same program prints the same summary line.
#[test]
fn cpuid_sites_answer_as_kvm_does() {
    let test = "cpuid_sites_answer_as_kvm_does";
    for (cc, prog) in common::kvm_guests(test, "cpuid") {
        let path = prog.display().to_string();
        let args = ["spawn", "6", path.as_str()];
        let want = common::native_stdout(cc, &prog, &args);
        assert_eq!(want, "children 6 same\n", "{cc} native");
        for cpus in [1, 2] {
            let l = common::guest(&prog, &args, cpus).root(common::host_root());
            let r = common::vk_watched(test, 120, l);
            let what = format!(
                "{cc}, {cpus} vCPUs ({:?}, {:?})",
                r.report.status, r.report.death
            );
            eprintln!(
                "{test}: {what}: {} cpuids answered by the vkernel, {} sites rewritten",
                r.report.cpuid_answered, r.report.cpuid_sites
            );
            assert_eq!(
                r.stdout, want,
                "{what}; the parent's answers:\n{}",
                r.stderr
            );
            assert_eq!(r.report.status.code(), 0, "{what}");
            if r.report.cpuid_answered == 0 {
                eprintln!("{test}: {what}: KVM offers no CPUID faulting here: nothing to rewrite");
                continue;
            }
            // 3 children learn; the 15 constant sites of the other 3 are
            // rewritten before they run (10 of the 17 forms in reach:
            // the hypervisor leaf is not).
            assert!(
                r.report.cpuid_sites >= 3 * 15,
                "{what}: {} sites rewritten",
                r.report.cpuid_sites
            );
        }
    }
}
