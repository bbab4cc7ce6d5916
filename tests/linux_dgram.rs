//! AF_UNIX datagram and seqpacket sockets (issue 22): `tests/guests/dgram.c`
//! prints the same natively and under vkernel, on one and two vCPUs, for
//! each compiler: message boundaries, MSG_TRUNC/MSG_PEEK, sender names,
//! connect's default destination and sender filter, SCM_RIGHTS in a
//! datagram, SCM_CREDENTIALS and SO_PASSCRED, seqpacket listen/accept and
//! end of file, SO_RCVTIMEO, and the errors (bad buffers lose no message);
//! hostile use (many connections, a writer killed mid-transfer, bad
//! pointers). No wake-up is lost.

mod common;

use common::{guest, host_root, kvm_guests, native, scratch, vk_watched, what};

#[test]
fn dgram_and_seqpacket_match_native() {
    for (cc, prog) in kvm_guests("dgram_and_seqpacket_match_native", "dgram") {
        for mode in ["pair", "named", "seqpacket", "errors", "cred"] {
            let n = native(&prog, &[mode]);
            assert_eq!(n.status, 0, "{cc} {mode} natively:\n{}", n.stdout);
            for cpus in [1, 2] {
                let l = guest(&prog, &[mode], cpus);
                let r = vk_watched(&what(&prog, &[mode], cpus), 120, l);
                assert_eq!(r.out().shown(), n.shown(), "{cc} {mode} on {cpus} vCPUs");
            }
        }
    }
}

#[test]
fn dgram_bound_to_a_path_matches_native() {
    let test = "dgram_bound_to_a_path_matches_native";
    for (cc, prog) in kvm_guests(test, "dgram") {
        let d = scratch(test).display().to_string();
        let n = native(&prog, &["path", &d]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let dir = scratch(test);
        let args = ["path", dir.to_str().unwrap()];
        let l = guest(&prog, &args, 1).root(host_root());
        let r = vk_watched(&what(&prog, &args, 1), 120, l);
        assert_eq!(r.out().shown(), n.shown(), "{cc}");
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "the vproc's socket node stays in the overlay"
        );
    }
}

/// Hostile use matches native: 10,000 stream connections opened, used and
/// closed leak no fd (1,000 in the other runs), a writer killed while it
/// sends leaves the reader a prefix and then end of file, and bad
/// pointers in msghdr and cmsg are refused with nothing queued.
#[test]
fn hostile_socket_use_matches_native() {
    for (cc, prog) in kvm_guests("hostile_socket_use_matches_native", "dgram") {
        for cpus in [1, 2] {
            let conns = if cc == "gcc" && cpus == 1 {
                "10000"
            } else {
                "1000"
            };
            let args = ["hostile", conns];
            let n = native(&prog, &args);
            assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
            let r = vk_watched(&what(&prog, &args, cpus), 240, guest(&prog, &args, cpus));
            assert_eq!(r.out().shown(), n.shown(), "{cc} on {cpus} vCPUs");
        }
    }
}
