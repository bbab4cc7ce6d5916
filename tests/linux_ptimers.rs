//! POSIX timers (issue 23, part): `tests/guests/ptimers.c` prints the same
//! natively and under vkernel, for each compiler, on one and two vCPUs:
//! one-shot and periodic SIGEV_SIGNAL timers with SI_TIMER siginfo and
//! si_value, overruns while blocked, SIGEV_NONE, SIGEV_THREAD, absolute
//! expiry, delete and the errors. No wake-up is lost.

mod common;

use common::{guest, kvm_guests, native, vk_watched, what};

#[test]
fn posix_timers_match_native() {
    for (cc, prog) in kvm_guests("posix_timers_match_native", "ptimers") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        for cpus in [1, 2] {
            let r = vk_watched(&what(&prog, &[], cpus), 120, guest(&prog, &[], cpus));
            assert_eq!(r.out().shown(), n.shown(), "{cc} on {cpus} vCPUs");
        }
    }
}
