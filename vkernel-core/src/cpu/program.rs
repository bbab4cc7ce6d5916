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
//! stage a bounce the stub applies by itself (see design/traps.md).

use vkernel_guest::abi::{
    self, CMD_CLTS, CMD_FLUSH, CMD_INVLPG, CMD_SET_TS, CMD_STORE, CMD_TOUCH, CMD_ZAP,
};
use vkernel_guest::stub::ProgramOps;

use vkernel_guest::abi::{MB_BOUNCE_RIP, MB_CMDS, MB_NCMDS};
use vkernel_guest::layout::{PROGRAM_RSP_BELOW_TOP, STUB_OFF, SYS_VA, TRAMP_VA};

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
/// top is `top` (system-region offset), entry op included (a staged
/// bounce starts by it), and its command count: the RIP, RSP and RSI an
/// entry into it takes. The registers its ops use are the caller's to
/// save below the iret frame.
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

    /// Where a staged bounce enters: the trampoline's `ud2`, whose #UD
    /// the stub's handler turns into the mailbox program.
    pub(super) fn staged_bounce_va(&self) -> u64 {
        TRAMP_VA + self.m.offsets.tramp_bounce
    }

    /// A kick came while the stub may apply a staged bounce by itself:
    /// make it come back to the host instead (to the bounce address, as
    /// an unstaged bounce does), wherever it is: before the bounce's #UD
    /// (the return address in the mailbox), or past the point where the
    /// handler copied it (the iret frame).
    pub(super) fn unstage_bounce(&mut self) {
        if std::mem::take(&mut self.staged) {
            let kcall = self.m.kcall_va();
            self.sys_store(self.top + MB_BOUNCE_RIP, kcall);
            crate::machine::redirect_user_iret(&self.m.sys, self.index, kcall);
            self.bounce = true;
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
