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
/// Bytes of the legacy FXSAVE area at the start of an XSAVE image.
pub const FXSAVE_LEN: usize = 512;
/// Byte offset of XSTATE_BV in the XSAVE header.
const XSTATE_BV_OFF: usize = 512;
/// XSTATE_BV bits of the x87 and SSE components.
const XSTATE_FP_SSE: u32 = 0b11;
/// Byte ranges of the legacy area that [`FpuContext::set_fxsave`] copies:
/// FCW/FSW/FTW, FOP/FIP/FDP/MXCSR, then ST0-7 and XMM0-15 (not MXCSR_MASK
/// nor the reserved tail).
const FXSAVE_FIELDS: [std::ops::Range<usize>; 3] = [0..5, 6..28, 32..416];

/// The legacy FXSAVE area of an XSAVE image (reserved tail zeroed).
pub(crate) fn legacy_of(x: &kvm_xsave) -> [u8; FXSAVE_LEN] {
    let mut b = [0u8; FXSAVE_LEN];
    for (i, w) in x.region[..416 / 4].iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// Write the legacy fields of `fx` into an XSAVE image and mark x87 and SSE
/// present; MXCSR's reserved bits are cleared (XRSTOR would fault).
pub(crate) fn put_legacy(x: &mut kvm_xsave, fx: &[u8; FXSAVE_LEN]) {
    let mut img = legacy_of(x);
    for r in FXSAVE_FIELDS {
        img[r.clone()].copy_from_slice(&fx[r]);
    }
    let mxcsr = u32::from_le_bytes(img[MXCSR_OFF..MXCSR_OFF + 4].try_into().unwrap()) & 0xFFFF;
    img[MXCSR_OFF..MXCSR_OFF + 4].copy_from_slice(&mxcsr.to_le_bytes());
    for (i, w) in x.region[..416 / 4].iter_mut().enumerate() {
        *w = u32::from_le_bytes(img[4 * i..4 * i + 4].try_into().unwrap());
    }
    x.region[XSTATE_BV_OFF / 4] |= XSTATE_FP_SSE;
}

impl FpuContext {
    /// A context in the reset state (FCW 0x37f, MXCSR 0x1f80, registers 0).
    pub fn new() -> FpuContext {
        let mut x: Box<kvm_xsave> = Box::default();
        x.region[0] = 0x037f; // FCW (FSW 0)
        x.region[MXCSR_OFF / 4] = 0x1f80;
        Self::from_image(x)
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

    /// The legacy FXSAVE area (the first 512 bytes of the saved image: x87,
    /// MXCSR, XMM0-15), as a Linux signal frame carries it. Its last 96
    /// bytes (reserved and software-available) read as zero.
    pub fn fxsave(&self) -> [u8; FXSAVE_LEN] {
        legacy_of(&self.0.state.lock().unwrap().xsave)
    }

    /// Replace the legacy FXSAVE area of the saved image (e.g. from a signal
    /// frame on `rt_sigreturn`): x87 control/status/tag, last instruction
    /// and operand, MXCSR (its reserved bits cleared), ST0-7 and XMM0-15.
    /// The x87 and SSE components are marked present in the XSAVE header so
    /// the next load uses them. Refused while the context is loaded on a
    /// vCPU: use [`crate::cpu::Cpu::write_fxsave`] there.
    pub fn set_fxsave(&self, fx: &[u8; FXSAVE_LEN]) -> Result<(), FpuError> {
        let mut s = self.0.state.lock().unwrap();
        if let Some(cpu) = s.owner {
            return Err(FpuError::Loaded { cpu });
        }
        put_legacy(&mut s.xsave, fx);
        Ok(())
    }

    /// A new context holding a copy of this one's saved state (fork: the
    /// child starts with the parent's registers). Sync the vCPU that holds
    /// it first, or use [`crate::cpu::Cpu::fork_fpu`].
    pub fn duplicate(&self) -> FpuContext {
        let mut img: Box<kvm_xsave> = Box::default();
        img.region = self.0.state.lock().unwrap().xsave.region;
        Self::from_image(img)
    }

    pub(crate) fn from_image(xsave: Box<kvm_xsave>) -> FpuContext {
        FpuContext(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(State { xsave, owner: None }),
        }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_state_reads_back_as_fxsave() {
        let c = FpuContext::new();
        let fx = c.fxsave();
        assert_eq!(u16::from_le_bytes([fx[0], fx[1]]), 0x037f);
        assert_eq!(u32::from_le_bytes(fx[24..28].try_into().unwrap()), 0x1f80);
        assert!(fx[416..].iter().all(|&b| b == 0));
    }

    #[test]
    fn set_fxsave_copies_registers_and_clears_reserved_mxcsr_bits() {
        let c = FpuContext::new();
        let mut fx = [0u8; FXSAVE_LEN];
        fx[0..2].copy_from_slice(&0x027fu16.to_le_bytes());
        fx[24..28].copy_from_slice(&0xdead_1f80u32.to_le_bytes());
        fx[28..32].copy_from_slice(&0x1234u32.to_le_bytes()); // MXCSR_MASK: kept
        fx[XMM_OFF..XMM_OFF + 16].copy_from_slice(&7u128.to_le_bytes());
        fx[500] = 9; // software-available: ignored
        c.set_fxsave(&fx).unwrap();
        let back = c.fxsave();
        assert_eq!(u16::from_le_bytes([back[0], back[1]]), 0x027f);
        assert_eq!(u32::from_le_bytes(back[24..28].try_into().unwrap()), 0x1f80);
        assert_eq!(u32::from_le_bytes(back[28..32].try_into().unwrap()), 0);
        assert_eq!(c.saved_xmm(0), 7);
        assert_eq!(back[500], 0);
        let img = c.xsave_image();
        assert_eq!(img[XSTATE_BV_OFF] & 3, 3);
        let d = c.duplicate();
        assert_ne!(d.id(), c.id());
        assert_eq!(d.saved_xmm(0), 7);
    }

    #[test]
    fn set_fxsave_is_refused_while_loaded() {
        let c = FpuContext::new();
        c.take_owner(1);
        assert_eq!(
            c.set_fxsave(&[0; FXSAVE_LEN]),
            Err(FpuError::Loaded { cpu: 1 })
        );
    }
}
