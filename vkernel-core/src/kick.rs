//! Kicking a vCPU out of the guest from any thread.
//!
//! A [`Kicker`] sets the `immediate_exit` byte of the vCPU's `kvm_run` page
//! and sends the thread inside `KVM_RUN` a real-time signal whose handler
//! does nothing, so `KVM_RUN` returns `EINTR`. Each kick is counted under
//! the kick lock: the vCPU thread clears `immediate_exit` only if no kick
//! came after the exit it is answering (`KickState::clear_immediate_exit`),
//! so a kick is never lost. How an interrupted run is told apart from one
//! that ran guest code is the run loop's business (`crate::cpu`'s exit classifier).

use std::sync::atomic::{fence, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuFd;

use crate::machine::MachineError;

/// Shared state between a vCPU and its kickers.
pub(crate) struct KickState {
    inner: Mutex<KickInner>,
}

struct KickInner {
    /// The vCPU's kvm_run page; null once the Cpu (and its mapping) is gone.
    run: *mut kvm_run,
    /// The thread inside `Cpu::run`, if any.
    thread: Option<libc::pthread_t>,
    /// Kicks so far: the vCPU thread clears `immediate_exit` only if no
    /// kick came after the exit it is answering.
    kicks: u64,
}

// SAFETY: `run` is only dereferenced under the mutex, and the Cpu nulls it
// under the same mutex before its VcpuFd (which owns the mapping) is
// dropped; only the `immediate_exit` byte is accessed through it, and only
// as an AtomicU8 (see `immediate_exit`).
unsafe impl Send for KickState {}
// SAFETY: as above.
unsafe impl Sync for KickState {}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the kick signal's handler once per process; every later call
/// returns the first call's outcome (as an errno).
fn install_kick_handler() -> Result<(), MachineError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = *INSTALLED.get_or_init(|| {
        // SAFETY: installs a handler that does nothing for a real-time
        // signal reserved for vkernel; without SA_RESTART so KVM_RUN returns
        // EINTR. `sa` is fully initialised (zeroed, then the fields set).
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL))
        }
    });
    r.map_err(|errno| MachineError::KickSignal {
        signo: kick_signal(),
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// The `immediate_exit` byte of a vCPU's `kvm_run` page as an atomic, so
/// the vCPU thread and kicking threads never race on a plain byte.
///
/// # Safety
///
/// `run` must point to a live `kvm_run` mapping that outlives the returned
/// reference.
unsafe fn immediate_exit<'a>(run: *mut kvm_run) -> &'a AtomicU8 {
    // SAFETY: the caller guarantees the mapping is live for 'a; AtomicU8
    // has the size and alignment (1) of u8, so any u8 field is a valid
    // AtomicU8, and every access to this byte from Rust goes through an
    // atomic (KVM itself only reads it).
    unsafe { AtomicU8::from_ptr(std::ptr::addr_of_mut!((*run).immediate_exit)) }
}

impl KickState {
    pub(crate) fn new(fd: &mut VcpuFd) -> Result<KickState, MachineError> {
        install_kick_handler()?;
        Ok(KickState {
            inner: Mutex::new(KickInner {
                run: fd.get_kvm_run() as *mut kvm_run,
                thread: None,
                kicks: 0,
            }),
        })
    }

    pub(crate) fn set_thread(&self, t: Option<libc::pthread_t>) {
        self.inner.lock().unwrap().thread = t;
    }

    /// Kicks so far.
    pub(crate) fn kicks(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).kicks
    }

    /// Clear `immediate_exit` after a kick was seen (the vCPU thread's
    /// side of the same atomic byte the kickers set), unless another kick
    /// came after the count `seen` (read when KVM_RUN returned): that one
    /// must make the next entry exit too, or it would be lost.
    pub(crate) fn clear_immediate_exit(&self, seen: u64) {
        let k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !k.run.is_null() && k.kicks == seen {
            // SAFETY: non-null under the lock: the mapping is alive while
            // the lock is held (see KickState).
            unsafe { immediate_exit(k.run) }.store(0, Ordering::SeqCst);
        }
    }

    /// The vCPU is going away: kicks become no-ops.
    pub(crate) fn detach(&self) {
        let mut k = self.inner.lock().unwrap();
        k.run = std::ptr::null_mut();
        k.thread = None;
    }
}

/// Forces a vCPU out of `KVM_RUN` from any thread; [`crate::cpu::Cpu::run`] then
/// returns [`crate::trap::Trap::Interrupted`]. A kick that arrives while the vCPU is not
/// in the guest makes the next run return at once: no wakeup is lost. A
/// kick after the [`crate::cpu::Cpu`] was dropped does nothing.
#[derive(Clone)]
pub struct Kicker(Arc<KickState>);

impl Kicker {
    pub(crate) fn new(k: Arc<KickState>) -> Kicker {
        Kicker(k)
    }

    /// Kick the vCPU.
    pub fn kick(&self) {
        let mut k = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        if k.run.is_null() {
            return;
        }
        k.kicks += 1;
        // SAFETY: non-null under the lock means the Cpu and its kvm_run
        // mapping are alive (see KickState), and the lock is held for the
        // reference's whole use.
        unsafe { immediate_exit(k.run) }.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(t) = k.thread {
            // SAFETY: `t` is the thread inside Cpu::run, which clears it
            // under this lock before returning, so the thread is alive.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }
}

impl std::fmt::Debug for Kicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kicker")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_handler_is_installed_and_checked() {
        install_kick_handler().expect("installing the kick handler succeeds");
        // Twice is fine: the first outcome is kept.
        install_kick_handler().expect("a second call reports the first outcome");
        // SAFETY: queries (does not change) the disposition into a zeroed
        // sigaction.
        let old = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(
                libc::sigaction(kick_signal(), std::ptr::null(), &mut old),
                0
            );
            old
        };
        // Without the handler the first kick would kill the process.
        // (Not compared with `on_kick`'s address: function addresses are
        // not unique in optimised builds.)
        assert_ne!(old.sa_sigaction, libc::SIG_DFL);
        assert_ne!(old.sa_sigaction, libc::SIG_IGN);
        assert_eq!(old.sa_flags & libc::SA_RESTART, 0, "KVM_RUN must see EINTR");
    }

    #[test]
    fn kick_signal_error_says_what_failed() {
        let e = MachineError::KickSignal {
            signo: 37,
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        };
        let s = e.to_string();
        assert!(s.contains("kick signal handler") && s.contains("37"), "{s}");
    }

    #[test]
    fn immediate_exit_view_is_the_kvm_run_byte() {
        // SAFETY: kvm_run is plain data; all zeroes is a valid value.
        let mut run: Box<kvm_run> = Box::new(unsafe { std::mem::zeroed() });
        let p: *mut kvm_run = &mut *run;
        // Several threads set the byte while this one clears it: every
        // access is atomic, and the byte ends as the last store left it.
        std::thread::scope(|s| {
            let addr = p as usize;
            for _ in 0..3 {
                s.spawn(move || {
                    for _ in 0..10_000 {
                        // SAFETY: `run` outlives the scope.
                        unsafe { immediate_exit(addr as *mut kvm_run) }.store(1, Ordering::SeqCst);
                    }
                });
            }
            for _ in 0..10_000 {
                // SAFETY: as above.
                unsafe { immediate_exit(p) }.store(0, Ordering::SeqCst);
            }
        });
        // SAFETY: as above; no other thread is left.
        unsafe { immediate_exit(p) }.store(1, Ordering::SeqCst);
        assert_eq!(run.immediate_exit, 1);
        assert_eq!(run.request_interrupt_window, 0, "only its own byte changes");
        // SAFETY: as above.
        unsafe { immediate_exit(p) }.store(0, Ordering::SeqCst);
        assert_eq!(run.immediate_exit, 0);
    }
}
