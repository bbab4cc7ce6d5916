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

/// Errors editing an FPU context.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum FpuError {
    /// The context is live on a vCPU.
    #[error("the FPU context is loaded on vCPU {cpu}: call Cpu::release_fpu there first")]
    Loaded {
        /// The vCPU.
        cpu: usize,
    },
    /// More than the 4 KiB image.
    #[error("{0} bytes is more than the 4096-byte XSAVE image")]
    TooLong(usize),
}

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
    state: Mutex<State>,
}

struct State {
    xsave: Box<kvm_xsave>,
    /// The vCPU whose registers hold the live state, if any.
    owner: Option<usize>,
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
            state: Mutex::new(State {
                xsave: x,
                owner: None,
            }),
        }))
    }

    /// Unique id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// XMM register `i` (0..16) as last saved (the live value may be in a
    /// vCPU while this context is loaded there: see
    /// [`crate::cpu::Cpu::sync_fpu`]).
    pub fn saved_xmm(&self, i: usize) -> u128 {
        let s = self.0.state.lock().unwrap();
        let w = |k: usize| s.xsave.region[XMM_OFF / 4 + 4 * (i % 16) + k] as u128;
        w(0) | (w(1) << 32) | (w(2) << 64) | (w(3) << 96)
    }

    /// The saved XSAVE image (4 KiB; its first 512 bytes are the FXSAVE
    /// layout a Linux signal frame carries).
    pub fn xsave_image(&self) -> Vec<u8> {
        let s = self.0.state.lock().unwrap();
        s.xsave
            .region
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    /// Replace the first `bytes.len()` bytes (at most 4 KiB) of the saved
    /// image, e.g. the FXSAVE area on sigreturn. Refused while the context is
    /// loaded on a vCPU (release it there first); the XSAVE header's
    /// reserved fields are kept valid.
    pub fn set_xsave_image(&self, bytes: &[u8]) -> Result<(), FpuError> {
        let mut s = self.0.state.lock().unwrap();
        if let Some(cpu) = s.owner {
            return Err(FpuError::Loaded { cpu });
        }
        if bytes.len() > 4096 {
            return Err(FpuError::TooLong(bytes.len()));
        }
        let mut img: Vec<u8> = s
            .xsave
            .region
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        img[..bytes.len()].copy_from_slice(bytes);
        // MXCSR reserved bits must be zero or XRSTOR faults.
        let mxcsr = u32::from_le_bytes(img[MXCSR_OFF..MXCSR_OFF + 4].try_into().unwrap()) & 0xFFFF;
        img[MXCSR_OFF..MXCSR_OFF + 4].copy_from_slice(&mxcsr.to_le_bytes());
        for (i, w) in s.xsave.region.iter_mut().enumerate() {
            *w = u32::from_le_bytes(img[4 * i..4 * i + 4].try_into().unwrap());
        }
        Ok(())
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut kvm_xsave) -> R) -> R {
        f(&mut self.0.state.lock().unwrap().xsave)
    }

    pub(crate) fn owner(&self) -> Option<usize> {
        self.0.state.lock().unwrap().owner
    }

    pub(crate) fn take_owner(&self, cpu: usize) {
        self.0.state.lock().unwrap().owner = Some(cpu);
    }

    pub(crate) fn release_owner(&self, cpu: usize) {
        let mut s = self.0.state.lock().unwrap();
        if s.owner == Some(cpu) {
            s.owner = None;
        }
    }

    /// Store a saved image, but only from the vCPU that holds the context.
    pub(crate) fn store_if_owner(&self, cpu: usize, x: &kvm_xsave) -> bool {
        let mut s = self.0.state.lock().unwrap();
        if s.owner == Some(cpu) {
            s.xsave.region = x.region;
            true
        } else {
            false
        }
    }

    pub(crate) fn same(&self, other: &FpuContext) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
