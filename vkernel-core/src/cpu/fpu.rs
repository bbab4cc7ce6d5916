//! The vCPU's side of the lazy FPU hand-over: whose FPU registers it holds,
//! and moving them between the vCPU and each vproc's [`FpuContext`].

use super::*;

impl Cpu {
    /// Make `ctx` the FPU state of the vproc the next runs execute (the seed's
    /// per-process FPU context). Its registers are loaded lazily, on the
    /// vproc's first FPU instruction, where the host honours CR0.TS
    /// ([`crate::machine::Machine::fpu_mode`]); eagerly otherwise.
    pub fn set_fpu(&mut self, ctx: &FpuContext) {
        self.fpu_current = ctx.clone();
    }

    /// Save the vCPU's live FPU registers into their owner's context, so
    /// [`FpuContext::saved_xmm`] and [`FpuContext::xsave_image`] show current
    /// values. The context stays loaded here.
    pub fn sync_fpu(&mut self) -> Result<(), RunError> {
        if let Some(owner) = self.fpu_loaded.clone() {
            let x = self.fd.get_xsave().map_err(kvm_io)?;
            if owner.store_if_owner(self.index, &x) {
                self.stats.fpu_saves += 1;
            }
        }
        Ok(())
    }

    /// Whether `ctx` is the context whose registers this vCPU holds.
    pub(super) fn holds_fpu(&self, ctx: &FpuContext) -> bool {
        self.fpu_loaded.as_ref().is_some_and(|l| l.same(ctx))
    }

    /// `ctx`'s current legacy FXSAVE area (a signal frame's FPU state): the
    /// live registers if this vCPU holds `ctx`, its saved image otherwise.
    /// Nothing moves.
    pub fn read_fxsave(&self, ctx: &FpuContext) -> Result<[u8; FXSAVE_LEN], RunError> {
        if self.holds_fpu(ctx) {
            let x = self.fd.get_xsave().map_err(kvm_io)?;
            Ok(crate::fpu::legacy_of(&x))
        } else {
            if let Some(cpu) = ctx.owner() {
                return Err(RunError::FpuBusy { cpu });
            }
            Ok(ctx.fxsave())
        }
    }

    /// Replace `ctx`'s legacy FXSAVE area (`rt_sigreturn`), see
    /// [`FpuContext::set_fxsave`]: in the live registers if this vCPU holds
    /// `ctx`, in its saved image otherwise.
    pub fn write_fxsave(&self, ctx: &FpuContext, fx: &[u8; FXSAVE_LEN]) -> Result<(), RunError> {
        if self.holds_fpu(ctx) {
            let mut x = self.fd.get_xsave().map_err(kvm_io)?;
            crate::fpu::put_legacy(&mut x, fx);
            // SAFETY: `x` is the complete image KVM_GET_XSAVE just returned
            // for this vCPU, with only its legacy fields and two XSTATE_BV
            // bits changed.
            unsafe { self.fd.set_xsave(&x) }.map_err(kvm_io)
        } else {
            ctx.set_fxsave(fx).map_err(|_| RunError::FpuBusy {
                cpu: ctx.owner().unwrap_or(usize::MAX),
            })
        }
    }

    /// A new context with `ctx`'s current state (fork): read from the live
    /// registers if this vCPU holds `ctx`. Nothing moves.
    pub fn fork_fpu(&self, ctx: &FpuContext) -> Result<FpuContext, RunError> {
        if self.holds_fpu(ctx) {
            let x = self.fd.get_xsave().map_err(kvm_io)?;
            Ok(FpuContext::from_image(Box::new(x)))
        } else if let Some(cpu) = ctx.owner() {
            Err(RunError::FpuBusy { cpu })
        } else {
            Ok(ctx.duplicate())
        }
    }

    /// Save the live FPU registers into their owner's context and give the
    /// context up, so that another vCPU can load it: call this before a vproc
    /// migrates to another vCPU, or before editing its context.
    pub fn release_fpu(&mut self) -> Result<(), RunError> {
        self.sync_fpu()?;
        if let Some(owner) = self.fpu_loaded.take() {
            owner.release_owner(self.index);
        }
        Ok(())
    }

    /// Move the FPU to `fpu_current`: save the owner's state, load the new.
    pub(super) fn swap_fpu(&mut self) -> Result<(), RunError> {
        let cur = self.fpu_current.clone();
        if let Some(other) = cur.owner().filter(|o| *o != self.index) {
            return Err(RunError::FpuBusy { cpu: other });
        }
        self.release_fpu()?;
        cur.with_state(|s| {
            // SAFETY: `s` is a complete 4 KiB kvm_xsave image, either built by
            // FpuContext::new in the reset layout or saved by KVM_GET_XSAVE
            // from this kind of vCPU.
            unsafe { self.fd.set_xsave(s) }
        })
        .map_err(kvm_io)?;
        cur.take_owner(self.index);
        self.stats.fpu_restores += 1;
        self.fpu_loaded = Some(cur);
        Ok(())
    }
}
