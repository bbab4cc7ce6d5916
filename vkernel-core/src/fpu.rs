//! Per-vproc FPU/SSE state and its lazy handoff between vprocs.
//!
//! The seed's protocol (DragonFly's `PGEX_FPFAULT` / `FP_VIRTFP`): when the
//! virtual kernel switches vprocs on a vCPU, the incoming vproc's FPU state
//! is not loaded; CR0.TS is set so its first FPU instruction raises #NM, and
//! only then is the previous owner's state saved and the new one loaded. A
//! vproc that never touches the FPU never costs a save or a restore.
//!
//! Where the host does not honour CR0.TS for the guest (found by a probe
//! when the machine starts), vkernel falls back to eager switching: the
//! state is swapped on every switch of FPU owner.
//!
//! ```no_run
//! use vkernel_core::{fpu::FpuContext, prelude::*};
//! # let machine = Machine::builder().build()?;
//! # let mut cpu = machine.take_cpu(0).unwrap();
//! let a = FpuContext::new();
//! let b = FpuContext::new();
//! cpu.set_fpu(&a); // the next runs are vproc A's
//! // ... cpu.run(...) ...
//! cpu.set_fpu(&b); // B's FPU state is loaded only if B uses the FPU
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_xsave;

/// How FPU state moves between vprocs on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuMode {
    /// CR0.TS is honoured: state moves on first use (#NM).
    Lazy,
    /// CR0.TS is not honoured: state moves on every switch of owner.
    Eager,
}

struct Inner {
    id: u64,
    state: Mutex<Box<kvm_xsave>>,
}

/// One vproc's FPU/SSE register state (an XSAVE image). Cheap to clone:
/// clones share the state.
#[derive(Clone)]
pub struct FpuContext(Arc<Inner>);

impl std::fmt::Debug for FpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FpuContext")
            .field("id", &self.0.id)
            .finish()
    }
}

impl Default for FpuContext {
    fn default() -> Self {
        Self::new()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Byte offset of MXCSR in the legacy XSAVE region.
const MXCSR_OFF: usize = 24;
/// Byte offset of XMM0 in the legacy XSAVE region.
const XMM_OFF: usize = 160;

impl FpuContext {
    /// A context in the reset state (FCW 0x37f, MXCSR 0x1f80, registers 0).
    pub fn new() -> FpuContext {
        let mut x: Box<kvm_xsave> = Box::default();
        x.region[0] = 0x037f; // FCW (FSW 0)
        x.region[MXCSR_OFF / 4] = 0x1f80;
        FpuContext(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(x),
        }))
    }

    /// Unique id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// XMM register `i` as last saved (the live value may be in a vCPU
    /// while this context owns its FPU).
    pub fn saved_xmm(&self, i: usize) -> u128 {
        let s = self.0.state.lock().unwrap();
        let w = |k: usize| s.region[XMM_OFF / 4 + 4 * i + k] as u128;
        w(0) | (w(1) << 32) | (w(2) << 64) | (w(3) << 96)
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut kvm_xsave) -> R) -> R {
        f(&mut self.0.state.lock().unwrap())
    }

    pub(crate) fn same(&self, other: &FpuContext) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
