//! The gdb stub (issue 28) at the protocol level, in process and without
//! gdb, so it also runs in the SVM stage (ci/svm-guest.sh: a static test
//! binary in a QEMU guest with standard KVM), where breakpoints (#BP) and
//! single steps (TF, #DB) take the VT-x/SVM trap path instead of PVM's.
//!
//! A hand-made static program runs under `Options::debugger`; the test
//! speaks gdb's remote protocol to the stub over a Unix socket as gdb
//! does: the first stop before the first instruction, registers (`g`/`G`),
//! memory (`m`/`M`, a breakpoint written into read-only text), `vCont`
//! continue and single step, and the exit reported with the status a
//! register write chose. tests/linux_gdbstub.rs drives Debian's gdb
//! against the same stub and compares with gdbserver.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vkernel::linux::gdb_remote::{self, GdbAddr};
use vkernel::linux::kernel::Options;
use vkernel::linux::launch::Launch;

/// Where the program's code starts (after the ELF and program headers).
const CODE: u64 = 0x40_0000 + 64 + 56;

/// The program: `nop; mov edi, 3; inc rdi; mov eax, 231; syscall`
/// (exit_group(rdi)): the offsets of its instructions from [`CODE`] are
/// 0, 1, 6, 9 and 14.
fn program() -> Vec<u8> {
    let code: &[u8] = &[
        0x90, // nop
        0xbf, 0x03, 0x00, 0x00, 0x00, // mov edi, 3
        0x48, 0xff, 0xc7, // inc rdi
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231
        0x0f, 0x05, // syscall
    ];
    let end = CODE - 0x40_0000 + code.len() as u64;
    let mut f = common::elf_headers(CODE, &[(5, 0, 0x40_0000, end, end)]);
    f.extend_from_slice(code);
    f
}

/// A remote-protocol client, as gdb is one.
struct Client {
    s: UnixStream,
}

impl Client {
    /// Connect to the stub at `path` (it is bound before the run starts).
    fn connect(path: &std::path::Path) -> Client {
        let s = UnixStream::connect(path).expect("connect to the stub");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Client { s }
    }

    fn byte(&mut self) -> u8 {
        let mut b = [0u8];
        self.s
            .read_exact(&mut b)
            .expect("a byte from the stub (it went away or hung)");
        b[0]
    }

    /// Send `packet` and return the stub's reply, run-length decoded.
    fn ask(&mut self, packet: &str) -> String {
        let sum = packet.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        let framed = format!("${packet}#{sum:02x}");
        self.s.write_all(framed.as_bytes()).expect("send");
        // Its ack, then its reply.
        loop {
            match self.byte() {
                b'+' => break,
                b'-' => self.s.write_all(framed.as_bytes()).expect("resend"),
                _ => {}
            }
        }
        while self.byte() != b'$' {}
        let mut body = Vec::new();
        loop {
            match self.byte() {
                b'#' => break,
                b => body.push(b),
            }
        }
        let (hi, lo) = (self.byte(), self.byte());
        let sum = body.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        assert_eq!(
            format!("{sum:02x}"),
            String::from_utf8_lossy(&[hi, lo]),
            "checksum of {:?}",
            String::from_utf8_lossy(&body)
        );
        // (After the exit's reply the stub may have gone: no matter.)
        let _ = self.s.write_all(b"+");
        run_length_decoded(&body)
    }
}

/// A reply with gdb's run-length encoding (`X*n`: X repeated n - 29 more
/// times) expanded.
fn run_length_decoded(b: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'*' && i + 1 < b.len() {
            let last = *out.last().expect("a repeat follows a byte");
            for _ in 0..(b[i + 1] - 29) {
                out.push(last);
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("an ASCII reply")
}

/// The 64-bit register at byte `offset` of a `g` reply.
fn reg(g: &str, offset: usize) -> u64 {
    let hex = &g[2 * offset..2 * offset + 16];
    let mut v = [0u8; 8];
    for (i, b) in v.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    u64::from_le_bytes(v)
}

/// `g` with the 64-bit register at byte `offset` set to `value`.
fn with_reg(g: &str, offset: usize, value: u64) -> String {
    let hex: String = value
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}{hex}{}", &g[..2 * offset], &g[2 * offset + 16..])
}

/// Byte offsets of registers in gdb's amd64 `g` packet.
const RDI: usize = 5 * 8;
const RIP: usize = 16 * 8;

#[test]
fn the_stub_breaks_steps_and_writes_registers_on_this_host_kind() {
    let test = "the_stub_breaks_steps_and_writes_registers_on_this_host_kind";
    if !common::have_kvm(test) {
        return;
    }
    let sock = std::env::temp_dir().join(format!("vk-gdbstub-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let hook =
        gdb_remote::debugger(&GdbAddr::Unix(sock.clone()), |_| {}).expect("bind the stub's socket");
    let launch = Launch::bytes(program(), "/gdbstub-target").options(Options {
        debugger: Some(hook),
        ..Default::default()
    });
    let run = std::thread::spawn(move || common::try_vk(launch, b""));
    let mut c = Client::connect(&sock);
    let started = Instant::now();

    let sup = c.ask("qSupported:multiprocess+;swbreak+;vContSupported+");
    assert!(sup.contains("PacketSize="), "qSupported: {sup}");
    // Stopped before the first instruction.
    let first = c.ask("?");
    assert!(first.starts_with('T'), "first stop: {first}");
    let thread = first
        .split("thread:")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("the stopped thread")
        .to_string();
    assert_eq!(c.ask(&format!("Hg{thread}")), "OK");
    let g = c.ask("g");
    assert_eq!(reg(&g, RIP), CODE, "rip at the first stop");
    assert_eq!(c.ask(&format!("m{CODE:x},2")), "90bf", "the text");

    // A breakpoint on `inc rdi`, written into read-only text as gdb
    // writes one; continue to it.
    let bp = CODE + 6;
    assert_eq!(c.ask(&format!("M{bp:x},1:cc")), "OK");
    let stop = c.ask(&format!("vCont;c:{thread}"));
    assert!(stop.starts_with("T05"), "stop at the breakpoint: {stop}");
    let g = c.ask("g");
    assert_eq!(reg(&g, RIP), bp + 1, "rip after the int3");
    assert_eq!(reg(&g, RDI), 3, "rdi at the breakpoint");
    // As gdb does: the original byte back, rip back on it.
    assert_eq!(c.ask(&format!("M{bp:x},1:48")), "OK");
    assert_eq!(c.ask(&format!("G{}", with_reg(&g, RIP, bp))), "OK");

    // One instruction.
    let stop = c.ask(&format!("vCont;s:{thread}"));
    assert!(stop.starts_with("T05"), "stop after a step: {stop}");
    let g = c.ask("g");
    assert_eq!(reg(&g, RIP), CODE + 9, "rip after stepping `inc rdi`");
    assert_eq!(reg(&g, RDI), 4, "rdi after `inc rdi`");

    // The exit status is the one the debugger wrote into rdi.
    assert_eq!(c.ask(&format!("G{}", with_reg(&g, RDI, 41))), "OK");
    let end = c.ask(&format!("vCont;c:{thread}"));
    assert!(end.starts_with("W29"), "the exit (status 41): {end}");
    drop(c);

    let run = run.join().expect("the run's thread").expect("the run ends");
    assert_eq!(
        run.report.status,
        vkernel::linux::ExitStatus::Exited(41),
        "the run's status; session took {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_file(&sock);
}
