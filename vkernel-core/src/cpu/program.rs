//! The mailbox program: the queued guest commands ([`abi::cmd`]) as the
//! stub's ops run them (see [`abi::MB_CMDS`]).
//!
//! Every instruction the stub runs is emulated one at a time on a
//! PVM-derived KVM (about 1 µs each), so the host does the work a command
//! loop would: each command becomes the address of the op that applies it
//! followed by its operands, and every op ends by jumping to the next. The
//! host also orders them to need fewer ops:
//!
//! - every zap goes first, in one op: a zap drops a shadow MMU's copy of a
//!   table page the host already rewrote, so it commutes with the stores,
//!   touches and invalidations around it (whatever the order, the memory
//!   ends the same and the shadow is gone);
//! - with a flush anywhere, one flush goes last and no `invlpg` is kept
//!   (the vproc runs only after the whole program, and a full flush after
//!   every write covers each invalidation);
//! - without one, consecutive `invlpg`s share an op.
//!
//! Stores, touches and the CR0.TS commands keep their order.
//!
//! The `Cpu` methods here write the program into the vCPU's mailbox and
//! enter the stub at CPL0 from user mode to run it without a bounce exit
//! (see design/traps.md).

use vkernel_guest::abi::{
    self, CMD_CLTS, CMD_FLUSH, CMD_INVLPG, CMD_SET_TS, CMD_STORE, CMD_TOUCH, CMD_ZAP,
};
use vkernel_guest::stub::ProgramOps;

use vkernel_guest::abi::{MB_CMDS, MB_NCMDS};
use vkernel_guest::layout::{PROGRAM_RSP_BELOW_TOP, STUB_OFF, SYS_VA};
use vkernel_guest::x86;

use super::exit::Position;
use super::Cpu;
use crate::hwpt::Cmd;
use crate::ram::Ram;
use crate::trap::TrapFrame;

/// The program for `cmds` (at most [`abi::MB_MAX_CMDS`]), with op
/// addresses `base + offset` (`base`: where the stub runs). The first word
/// is the entry point, the rest what the stub reads from RSI on.
pub(crate) fn encode(cmds: &[Cmd], ops: &ProgramOps, base: u64) -> Vec<u64> {
    debug_assert!(cmds.len() <= abi::MB_MAX_CMDS);
    let addr = |c: &Cmd| c[0] & !7;
    let mut p = Vec::with_capacity(cmds.len() * 2 + 2);
    let zaps: Vec<u64> = cmds
        .iter()
        .filter(|c| c[0] & 7 == CMD_ZAP)
        .map(addr)
        .collect();
    if !zaps.is_empty() {
        p.push(base + ops.zap);
        p.push(zaps.len() as u64);
        p.extend(zaps);
    }
    // A kind no command has (7) costs a flush: the host would rather pay
    // for one than miss an invalidation.
    let flush = cmds.iter().any(|c| matches!(c[0] & 7, CMD_FLUSH | 7));
    let mut i = 0;
    while i < cmds.len() {
        let c = &cmds[i];
        i += 1;
        match c[0] & 7 {
            CMD_STORE => p.extend([base + ops.store, addr(c), c[1]]),
            CMD_TOUCH => p.extend([base + ops.touch, addr(c), c[1]]),
            CMD_SET_TS => p.push(base + ops.set_ts),
            CMD_CLTS => p.push(base + ops.clts),
            CMD_INVLPG if !flush => {
                let first = p.len();
                p.extend([base + ops.invlpg, 0, addr(c)]);
                while i < cmds.len() && cmds[i][0] & 7 == CMD_INVLPG {
                    p.push(addr(&cmds[i]));
                    i += 1;
                }
                p[first + 1] = (p.len() - first - 2) as u64;
            }
            // Zaps went first; a flush goes last.
            _ => {}
        }
    }
    if flush {
        p.push(base + ops.flush);
    }
    p.push(base + ops.done);
    debug_assert!(p.len() <= abi::MB_PROGRAM_WORDS);
    p
}

/// Write the program for `cmds` into the mailbox of the vCPU whose stack
/// top is `top` (system-region offset), entry op included, and its
/// command count: the RIP, RSP and RSI an entry into it takes. The
/// registers its ops use are the caller's to save below the iret frame.
pub(crate) fn write(sys: &Ram, top: u64, cmds: &[Cmd], ops: &ProgramOps) -> (u64, u64, u64) {
    let p = encode(cmds, ops, SYS_VA + STUB_OFF);
    let bytes: Vec<u8> = p.iter().flat_map(|w| w.to_le_bytes()).collect();
    sys.write(top + MB_CMDS, &bytes)
        .expect("mailbox inside the system region");
    sys.store(top + MB_NCMDS, cmds.len() as u64)
        .expect("mailbox inside the system region");
    (
        p[0],
        SYS_VA + top - PROGRAM_RSP_BELOW_TOP,
        SYS_VA + top + MB_CMDS + 8,
    )
}

impl Cpu {
    /// Write the mailbox program for the commands in `self.in_mailbox`
    /// ([`write`]) and save the registers its ops use (the vproc's, from
    /// `t`) below the iret frame: the entry's RIP, RSP and RSI.
    pub(super) fn write_program(&mut self, t: &TrapFrame) -> (u64, u64, u64) {
        let entry = write(&self.m.sys, self.top, &self.in_mailbox, &self.m.offsets.ops);
        if self.scrub_batch.is_some() {
            self.scrub_in_mailbox = true;
        }
        let saved = self.top - PROGRAM_RSP_BELOW_TOP;
        for (i, v) in [t.rax, t.rcx, t.rsi, t.rdi].into_iter().enumerate() {
            self.sys_store(saved + 8 * i as u64, v);
        }
        entry
    }

    /// Commands to apply while the vCPU rests in user mode (after a
    /// syscall's exit, where KVM keeps CPL3 across `syscall`): enter the
    /// stub at CPL0 by the entry's synced system registers (the kernel's
    /// CS and SS) as if an exception had brought the vCPU there, so the
    /// stub runs the mailbox program and returns to the vproc with
    /// `iretq`, where a bounce (an entry at `kcall_va`, whose #PF exits)
    /// cost an exit more. Not with a switch to another vmspace: its CR3
    /// goes in with the same registers, and the guest's own CR3 reload
    /// (the flush `run` queues) in the same KVM_RUN left stale
    /// translations on a PVM-derived KVM (spinners died in
    /// tests/linux_spin.rs); not with a kick waiting (the bounce answers
    /// it). A KVM that resumes such an entry from the last exit's RIP
    /// (the `ud2` after the trampoline's `out`) runs that `ud2` at CPL0:
    /// its #UD arrives on IST1 and `on_exception` enters again. Also
    /// makes sure a kernel-position entry has the kernel's segments (one
    /// that never ran may have kept CPL3).
    pub(super) fn enter_stub_for_commands(&mut self) {
        let cpl0_entry = self.pos == Position::User
            && !self.queue.is_empty()
            && self.new_cr3.is_none()
            && !self.kick_due.drains()
            && self.m.path == crate::machine::TrapPath::StaysInUserMode;
        if cpl0_entry {
            self.pos = Position::Kernel;
            self.stats.stub_bounces += 1;
        }
        let s = &mut self.fd.sync_regs_mut().sregs;
        if self.pos == Position::Kernel && s.cs.selector & 3 != 0 {
            s.cs = crate::machine::seg(x86::sel::KCODE, true, 0);
            s.ss = crate::machine::seg(x86::sel::KDATA, false, 0);
            self.force_dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vkernel_guest::abi::cmd;

    const OPS: ProgramOps = ProgramOps {
        zap: 0x10,
        store: 0x20,
        invlpg: 0x30,
        flush: 0x40,
        touch: 0x50,
        set_ts: 0x60,
        clts: 0x70,
        done: 0x80,
    };
    const B: u64 = 0x1000;

    fn prog(cmds: &[Cmd]) -> Vec<u64> {
        encode(cmds, &OPS, B)
    }

    #[test]
    fn zaps_go_first_in_one_op() {
        let p = prog(&[
            cmd(CMD_STORE, 0x5008, 7),
            cmd(CMD_ZAP, 0x6000, 0),
            cmd(CMD_TOUCH, 0x7010, 3),
            cmd(CMD_ZAP, 0x8000, 0),
        ]);
        assert_eq!(
            p,
            [
                B + 0x10,
                2,
                0x6000,
                0x8000,
                B + 0x20,
                0x5008,
                7,
                B + 0x50,
                0x7010,
                3,
                B + 0x80
            ]
        );
    }

    #[test]
    fn a_flush_goes_last_and_replaces_every_invlpg() {
        let p = prog(&[
            cmd(CMD_FLUSH, 0, 0),
            cmd(CMD_STORE, 0x5008, 7),
            cmd(CMD_INVLPG, 0x40_0000, 0),
            cmd(CMD_FLUSH, 0, 0),
        ]);
        assert_eq!(p, [B + 0x20, 0x5008, 7, B + 0x40, B + 0x80]);
    }

    #[test]
    fn consecutive_invlpgs_share_an_op_and_keep_their_place() {
        let p = prog(&[
            cmd(CMD_STORE, 0x5008, 7),
            cmd(CMD_INVLPG, 0x40_0000, 0),
            cmd(CMD_INVLPG, 0x40_1000, 0),
            cmd(CMD_STORE, 0x5010, 9),
            cmd(CMD_INVLPG, 0x40_2000, 0),
            cmd(CMD_SET_TS, 0, 0),
        ]);
        assert_eq!(
            p,
            [
                B + 0x20,
                0x5008,
                7,
                B + 0x30,
                2,
                0x40_0000,
                0x40_1000,
                B + 0x20,
                0x5010,
                9,
                B + 0x30,
                1,
                0x40_2000,
                B + 0x60,
                B + 0x80
            ]
        );
    }

    #[test]
    fn unknown_kinds_cost_a_flush_and_the_program_always_ends() {
        assert_eq!(prog(&[[7, 0]]), [B + 0x40, B + 0x80]);
        assert_eq!(prog(&[cmd(CMD_CLTS, 0, 0)]), [B + 0x70, B + 0x80]);
        assert_eq!(prog(&[]), [B + 0x80]);
    }

    #[test]
    fn a_full_mailbox_of_the_largest_commands_fits() {
        let cmds = vec![cmd(CMD_STORE, 0x5008, 1); abi::MB_MAX_CMDS];
        assert!(encode(&cmds, &OPS, B).len() <= abi::MB_PROGRAM_WORDS);
        let cmds = vec![cmd(CMD_INVLPG, 0x5000, 1); abi::MB_MAX_CMDS];
        assert!(encode(&cmds, &OPS, B).len() <= abi::MB_PROGRAM_WORDS);
    }
}
