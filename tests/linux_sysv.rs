//! System V semaphores and message queues (issue 23):
//! `tests/guests/sysv.c` prints the same natively and under vkernel, on
//! one and two vCPUs: SETVAL/GETVAL, all-or-nothing semop, a waiter woken
//! by another process, GETNCNT/GETPID, SEM_UNDO at exit, semtimedop's
//! timeout, GETALL/IPC_STAT, IPC_RMID waking a waiter with EIDRM (EINVAL
//! after), keys with IPC_EXCL; messages picked by type (0, >0, <0,
//! MSG_EXCEPT), E2BIG and MSG_NOERROR, a blocked receiver, IPC_RMID.
//! POSIX message queues too (`tests/guests/mqueue.c`).

mod common;

use common::{guest, kvm_guests, native, vk_watched, what};

#[test]
fn sysv_ipc_matches_native() {
    for (cc, prog) in kvm_guests("sysv_ipc_matches_native", "sysv") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        for cpus in [1, 2] {
            let r = vk_watched(&what(&prog, &[], cpus), 120, guest(&prog, &[], cpus));
            assert_eq!(r.out().shown(), n.shown(), "{cc} on {cpus} vCPUs");
        }
    }
}

/// POSIX message queues (tests/guests/mqueue.c): attributes and their
/// errors, priority order, EMSGSIZE, EAGAIN, absolute timeouts
/// (ETIMEDOUT), poll, a receiver blocked in another process woken by a
/// send, mq_notify's signal (SI_MESGQ with the value) used up after one
/// message, the status line read from the fd, unlink, as natively.
#[test]
fn posix_message_queues_match_native() {
    for (cc, prog) in kvm_guests("posix_message_queues_match_native", "mqueue") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = vk_watched(&what(&prog, &[], 2), 60, guest(&prog, &[], 2));
        assert_eq!(r.out().shown(), n.shown(), "{cc}: {}", r.stderr);
    }
}
