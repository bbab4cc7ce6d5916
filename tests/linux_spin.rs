//! Background busybox `ash` spinners beside a shell that keeps forking
//! survive (they used to die with SIGSEGV or "stack smashing detected"
//! after migrating between vCPUs: a vmspace switch by KVM_SET_SREGS alone
//! left stale translations on a PVM-derived KVM; `Cpu::run` now has the
//! guest reload CR3 itself on every switch), and the SIGTERM that ends a
//! spinner reaches it (a spinner alone on its vCPU that had entered the
//! guest less than half a tick before the kill was never kicked: the shell
//! waited forever; the ticker now kicks a vCPU whose vproc has a signal it
//! has not looked at). Runs the `vkernel` binary as a fresh process with
//! two vCPUs, as a user does, under `timeout` so a hang fails the test.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{example_binary, have_kvm, scratch, skip};

/// Two spinners, 200 forking pipelines, then both spinners must still be
/// alive and die of the SIGTERM the script sends them (status 143).
const SCRIPT: &str = r#"(while :; do :; done) & a=$!
(while :; do :; done) & b=$!
for i in $(seq 200); do echo $i | cat >/dev/null; done
kill -0 $a || echo "spinner a died"; kill -0 $b || echo "spinner b died"
kill $a $b; wait $a; echo "a status $?"; wait $b; echo "b status $?"
"#;

#[test]
fn ash_spinners_survive_a_forking_shell_on_two_vcpus() {
    let t = "ash_spinners_survive_a_forking_shell_on_two_vcpus";
    if !have_kvm(t) {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        return skip(
            t,
            "/bin/busybox is missing (apt-get install busybox-static)",
        );
    }
    let vk = example_binary("vkernel");
    let script = scratch(t).join("spin.sh");
    std::fs::write(&script, SCRIPT).expect("write the script");
    // Before the fixes about half of these runs lost a spinner, and one
    // in three hung.
    for round in 0..6 {
        let out = Command::new("timeout")
            .arg("120")
            .arg(&vk)
            .args(["run", "--cpus", "2", "/bin/busybox", "sh"])
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("run vkernel");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_ne!(
            out.status.code(),
            Some(124),
            "round {round}: hung (timeout after 120 s)"
        );
        assert_eq!(
            text,
            "a status 143\nb status 143\n",
            "round {round}: stdout {text:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
