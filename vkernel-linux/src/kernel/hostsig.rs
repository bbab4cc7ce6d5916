//! The vkernel's own signals: SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2
//! and SIGWINCH sent to the vkernel process are forwarded to the init
//! vproc, as a container runtime forwards them to its first process, and
//! the vkernel ends when init ends ([`super::Options::forward_signals`]).
//! A SIGTERM that comes [`super::Options::term_grace`] or more after the
//! first forwarded one ends every vproc with SIGKILL (`docker stop` after
//! its grace period).
//!
//! SIGINT is not here: the console owns it (`vkernel_devices::Console`,
//! see [`crate::stdio::ConsoleStdio`]). With a terminal on stdin
//! it opens the debugger, also when it comes from `kill -INT` (the
//! console's handler cannot tell the two apart, and a person is there to
//! answer); without one it goes to init's process group, as a terminal's
//! SIGINT goes to the foreground job.
//!
//! The handlers only set a bit in [`PENDING`] (an atomic: async-signal
//! safe); the ticker thread takes the bits every tick
//! ([`Kernel::forward_host_signals`]) and posts the signals to init as
//! from outside the virtual kernel (SI_USER, si_pid 0).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::*;

/// The host signals forwarded to init.
pub const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Host signals caught and not forwarded yet (bit `sig`).
static PENDING: AtomicU64 = AtomicU64::new(0);
/// A run holds the handlers.
static CLAIMED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if (1..64).contains(&sig) {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

/// The handlers of one run; dropping it puts the previous dispositions
/// back.
pub(super) struct HostSignals {
    old: Vec<(i32, libc::sigaction)>,
}

impl HostSignals {
    /// Catch [`FORWARDED`]. None (with a warning) if another run in this
    /// process already does, or a handler cannot be installed.
    pub(super) fn install() -> Option<HostSignals> {
        if CLAIMED.swap(true, Ordering::SeqCst) {
            log::warn!("host signals are forwarded by another run already; not by this one");
            return None;
        }
        PENDING.store(0, Ordering::SeqCst);
        let mut old = Vec::new();
        for sig in FORWARDED {
            // SAFETY: a zeroed sigaction is a valid value; the handler
            // only does an atomic OR (async-signal safe); `prev` is a
            // valid place for the old disposition.
            let ok = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                let ok = libc::sigaction(sig, &sa, &mut prev) == 0;
                if ok {
                    old.push((sig, prev));
                }
                ok
            };
            if !ok {
                log::warn!(
                    "cannot catch host signal {sig}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        Some(HostSignals { old })
    }
}

impl Drop for HostSignals {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: puts back a disposition sigaction returned for the
            // same signal.
            unsafe { libc::sigaction(*sig, prev, std::ptr::null_mut()) };
        }
        CLAIMED.store(false, Ordering::SeqCst);
    }
}

/// What the ticker remembers between forwards.
#[derive(Default)]
pub(super) struct Forwarder {
    /// When the first SIGTERM was forwarded.
    first_term: Option<Instant>,
}

impl Kernel {
    /// Forward the host signals caught since the last call to init (see
    /// the module docs). Called by the ticker with the table held.
    pub(super) fn forward_host_signals(&self, t: &mut Table, f: &mut Forwarder) {
        let bits = PENDING.swap(0, Ordering::SeqCst);
        if bits == 0 {
            return;
        }
        let init = t.init;
        if !Self::process_alive(t, init) {
            return;
        }
        for sig in FORWARDED {
            if bits & (1 << sig) == 0 {
                continue;
            }
            if sig == libc::SIGTERM {
                match f.first_term {
                    Some(at) if at.elapsed() >= self.opts.term_grace => {
                        log::warn!(
                            "second SIGTERM {:?} after the first: killing every vproc",
                            at.elapsed()
                        );
                        self.kill_everything(t);
                        return;
                    }
                    Some(_) => {}
                    None => f.first_term = Some(Instant::now()),
                }
            }
            self.post_process_signal(
                t,
                init,
                SigInfo {
                    signo: sig,
                    code: signal::SI_USER,
                    ..Default::default()
                },
            );
        }
    }

    /// SIGKILL to every vproc; init's death says why.
    fn kill_everything(&self, t: &mut Table) {
        let init = t.init;
        if let Some(e) = t.procs.get_mut(&init) {
            e.death =
                Some("killed: the vkernel got a second SIGTERM after its grace period".into());
        }
        let pids: Vec<Pid> = t.procs.keys().copied().collect();
        for p in pids {
            self.post_signal(
                t,
                p,
                SigInfo {
                    signo: signal::SIGKILL,
                    ..Default::default()
                },
            );
        }
    }
}
