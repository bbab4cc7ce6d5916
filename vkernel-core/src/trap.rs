//! What a vproc hands back to the virtual kernel: its register frame and the
//! reason it stopped.

pub use crate::walker::{Access, FaultReason};

/// The user-visible register state of a vproc.
///
/// On return from [`crate::cpu::Cpu::run`] it holds the vproc's registers at
/// the trap; the vkernel edits it (a syscall result in `rax`, a signal frame)
/// and passes it to the next `run`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
}

impl TrapFrame {
    /// A fresh frame that starts executing at `rip` with stack `rsp`.
    pub fn new(rip: u64, rsp: u64) -> TrapFrame {
        TrapFrame {
            rip,
            rsp,
            rflags: vkernel_guest::x86::RFLAGS_FIXED | vkernel_guest::x86::RFLAGS_IF,
            ..Default::default()
        }
    }

    /// Syscall number (Linux x86-64 convention: `rax`).
    pub fn syscall_nr(&self) -> u64 {
        self.rax
    }

    /// Syscall arguments in the x86-64 order: rdi, rsi, rdx, r10, r8, r9.
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

/// Why [`crate::cpu::Cpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// The vproc executed `syscall`. `frame.rip` is the instruction after it;
    /// set `frame.rax` to the result and run again.
    Syscall,
    /// A page fault the vpagetable could not satisfy.
    PageFault {
        /// Faulting virtual address (CR2).
        addr: u64,
        /// What the access was.
        access: Access,
        /// Why the vpagetable could not satisfy it.
        reason: FaultReason,
    },
    /// Any other exception: #DE (0), #DB (1), #UD (6), #NM (7), #GP (13),
    /// #MF (16), #AC (17), #XM (19)...
    Exception {
        /// Exception vector.
        vector: u8,
        /// Error code (0 where the CPU pushes none).
        error_code: u64,
    },
    /// The vCPU was kicked out of the guest (see [`crate::cpu::Kicker`]).
    Interrupted,
}

impl Trap {
    /// Name of an exception vector.
    pub fn vector_name(vector: u8) -> &'static str {
        const NAMES: [&str; 32] = [
            "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
            "#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "?22", "?23",
            "?24", "?25", "?26", "?27", "#HV", "#VC", "#SX", "?31",
        ];
        NAMES.get(vector as usize).copied().unwrap_or("?")
    }
}
