//! When an unanswered kick gets its answer: the protocol between a kick
//! (KVM_RUN returned EINTR) and `Cpu::run` returning `Trap::Interrupted`.
//!
//! Most kicks are answered at once (the vproc itself was interrupted, or
//! nothing ran). The others must wait for something the guest is doing:
//!
//! ```text
//!              exception on its way in,          mailbox not applied yet,
//!              stub on its way out               stub applying it
//!   Answered ------------------> AtNextExit     Answered ------> AfterDrain
//!       ^                          |   \                           |
//!       |       next exit returns  |    \ the mailbox too          | bounce back
//!       |       another trap       v     v                         | with an
//!       |                      AtNextRun  AtNextExitAfterDrain     | empty queue
//!       +--- next Cpu::run ------+                                 |
//!       +--------------------- Trap::Interrupted <-----------------+
//! ```
//!
//! At the next exit that is not another interruption, a kick owed there is
//! answered: if that exit returns a trap of its own, the trap goes first
//! and the next `Cpu::run` returns `Trap::Interrupted` before entering
//! (`AtNextRun`); otherwise the run loop answers it now (after draining
//! the mailbox if commands are still owed). Every `Cpu::run` starts from
//! `Answered` once an `AtNextRun` kick was answered.

/// Where the answer to the last kick stands (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum KickDue {
    /// No kick waits for an answer.
    #[default]
    Answered,
    /// Answer it at the next exit, before the vproc runs again: an
    /// exception is on its way in, or the stub is on its way out.
    AtNextExit,
    /// Answer it once the stub has applied the mailbox: the entry goes to
    /// the bounce address (`kcall_va`) and the bounce's #PF answers it.
    AfterDrain,
    /// Both: owed at the next exit, and the entry drains the mailbox
    /// first; whichever comes first answers it.
    AtNextExitAfterDrain,
    /// The exit that owed it returned another trap: the next `Cpu::run`
    /// returns `Trap::Interrupted` before entering the guest.
    AtNextRun,
}

impl KickDue {
    /// An exception or the stub's exit is on its way: answer at the next
    /// exit.
    pub(crate) fn owe_at_next_exit(&mut self) {
        *self = if self.drains() {
            KickDue::AtNextExitAfterDrain
        } else {
            KickDue::AtNextExit
        };
    }

    /// Drain the mailbox first: the entry bounces back once the stub has
    /// applied it.
    pub(crate) fn drain_first(&mut self) {
        *self = if self.owed_at_next_exit() {
            KickDue::AtNextExitAfterDrain
        } else {
            KickDue::AfterDrain
        };
    }

    /// Is the answer owed at the next exit?
    pub(crate) fn owed_at_next_exit(self) -> bool {
        matches!(self, KickDue::AtNextExit | KickDue::AtNextExitAfterDrain)
    }

    /// Does the entry drain the mailbox before answering?
    pub(crate) fn drains(self) -> bool {
        matches!(self, KickDue::AfterDrain | KickDue::AtNextExitAfterDrain)
    }

    /// The exit came: the answer is no longer owed there (the caller
    /// answers it now, or defers it with [`KickDue::answer_at_next_run`]).
    pub(crate) fn exit_came(&mut self) {
        *self = match *self {
            KickDue::AtNextExit => KickDue::Answered,
            KickDue::AtNextExitAfterDrain => KickDue::AfterDrain,
            other => other,
        };
    }

    /// The mailbox is drained and the kick answered at the bounce.
    pub(crate) fn drained(&mut self) {
        *self = match *self {
            KickDue::AfterDrain => KickDue::Answered,
            KickDue::AtNextExitAfterDrain => KickDue::AtNextExit,
            other => other,
        };
    }

    /// The exit that owed the answer returned another trap: answer at the
    /// next `Cpu::run`.
    pub(crate) fn answer_at_next_run(&mut self) {
        *self = KickDue::AtNextRun;
    }

    /// At the start of `Cpu::run`: true (and answered) when this run must
    /// return `Trap::Interrupted` at once.
    pub(crate) fn take_at_next_run(&mut self) -> bool {
        if *self == KickDue::AtNextRun {
            *self = KickDue::Answered;
            return true;
        }
        false
    }

    /// At the start of the run loop: what an earlier run left owed was
    /// answered by its return.
    pub(crate) fn reset(&mut self) {
        *self = KickDue::Answered;
    }
}

#[cfg(test)]
mod tests {
    use super::KickDue;

    #[test]
    fn an_owed_kick_is_answered_at_the_next_exit_or_run() {
        let mut k = KickDue::default();
        k.owe_at_next_exit();
        assert!(k.owed_at_next_exit() && !k.drains());
        k.exit_came();
        assert_eq!(k, KickDue::Answered);
        k.owe_at_next_exit();
        k.answer_at_next_run();
        assert!(k.take_at_next_run());
        assert!(!k.take_at_next_run(), "answered once");
    }

    #[test]
    fn draining_and_owing_combine_and_come_apart() {
        let mut k = KickDue::default();
        k.drain_first();
        assert!(k.drains() && !k.owed_at_next_exit());
        k.owe_at_next_exit();
        assert_eq!(k, KickDue::AtNextExitAfterDrain);
        k.drain_first();
        assert_eq!(k, KickDue::AtNextExitAfterDrain);
        k.drained();
        assert_eq!(k, KickDue::AtNextExit);
        k.drain_first();
        k.exit_came();
        assert_eq!(k, KickDue::AfterDrain);
        k.drained();
        assert_eq!(k, KickDue::Answered);
    }

    #[test]
    fn a_run_starts_answered() {
        let mut k = KickDue::AtNextExitAfterDrain;
        k.reset();
        assert_eq!(k, KickDue::Answered);
        assert!(!k.take_at_next_run());
    }
}
