//! The line discipline without vprocs: canonical editing, echo,
//! translations, signals, modes.

use super::*;

fn pair() -> Pty {
    let mut p = Pty::new(0);
    p.masters = 1;
    p.slaves = 1;
    p
}

fn master_all(p: &mut Pty) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let n = p.read_master(&mut b);
    b.truncate(n);
    b
}

fn slave_read(p: &mut Pty, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    let n = p.read_slave(&mut b);
    b.truncate(n);
    b
}

#[test]
fn canonical_lines_arrive_whole_with_echo_and_crlf() {
    let mut p = pair();
    p.write_master(b"hel");
    assert!(!p.slave_ready(100), "no line yet");
    p.write_master(b"lo\r");
    assert!(p.slave_ready(100));
    assert_eq!(
        slave_read(&mut p, 100),
        b"hello\n",
        "ICRNL turns CR into NL"
    );
    // Echo goes through ONLCR.
    assert_eq!(master_all(&mut p), b"hello\r\n");
}

#[test]
fn erase_kill_and_word_erase_edit_the_line() {
    let mut p = pair();
    p.write_master(b"abc\x7fd\n");
    assert_eq!(slave_read(&mut p, 100), b"abd\n");
    p.write_master(b"junk\x15ok\n");
    assert_eq!(slave_read(&mut p, 100), b"ok\n");
    p.write_master(b"one two\x17three\n");
    assert_eq!(slave_read(&mut p, 100), b"one three\n");
    let echo = master_all(&mut p);
    assert!(echo.windows(3).any(|w| w == b"\x08 \x08"), "ECHOE erases");
}

#[test]
fn eof_ends_a_line_and_an_empty_one_reads_as_end_of_file() {
    let mut p = pair();
    p.write_master(b"abc\x04");
    assert_eq!(slave_read(&mut p, 100), b"abc");
    p.write_master(b"\x04");
    assert!(p.slave_ready(100));
    assert_eq!(
        slave_read(&mut p, 100),
        b"",
        "VEOF on an empty line: read returns 0"
    );
    assert!(!p.slave_ready(100));
}

#[test]
fn a_short_read_takes_the_rest_of_the_line_next() {
    let mut p = pair();
    p.write_master(b"abcdef\nxy\n");
    assert_eq!(slave_read(&mut p, 4), b"abcd");
    assert_eq!(slave_read(&mut p, 100), b"ef\n");
    assert_eq!(slave_read(&mut p, 100), b"xy\n");
}

#[test]
fn interrupt_asks_for_sigint_flushes_and_echoes_caret() {
    let mut p = pair();
    p.write_master(b"partial");
    let (_, sigs) = p.write_master(b"\x03");
    assert_eq!(sigs, vec![2]);
    assert_eq!(p.slave_readable(), 0);
    p.write_master(b"\n");
    assert_eq!(
        slave_read(&mut p, 100),
        b"\n",
        "the partial line was flushed"
    );
    assert!(master_all(&mut p).ends_with(b"^C\r\n"));
    let (_, sigs) = p.write_master(b"\x1a\x1c");
    assert_eq!(sigs, vec![20, 3]);
}

#[test]
fn raw_mode_passes_bytes_at_once_without_echo() {
    let mut p = pair();
    let mut t = p.termios;
    t.lflag &= !(lflag::ICANON | lflag::ECHO | lflag::ISIG);
    t.iflag &= !iflag::ICRNL;
    t.oflag &= !oflag::OPOST;
    p.set_termios(t);
    p.write_master(b"a\r\x03");
    assert!(p.slave_ready(1));
    assert_eq!(slave_read(&mut p, 100), b"a\r\x03");
    assert_eq!(master_all(&mut p), b"");
    assert_eq!(p.write_slave(b"x\ny"), 3);
    assert_eq!(master_all(&mut p), b"x\ny", "no ONLCR without OPOST");
}

#[test]
fn vmin_zero_never_waits_and_vmin_n_waits_for_n() {
    let mut p = pair();
    let mut t = p.termios;
    t.lflag &= !lflag::ICANON;
    t.cc[cc::VMIN] = 3;
    p.set_termios(t);
    p.write_master(b"ab");
    assert!(!p.slave_ready(10));
    assert!(p.slave_ready(2), "a read of 2 is satisfied by 2");
    p.write_master(b"c");
    assert!(p.slave_ready(10));
    t.cc[cc::VMIN] = 0;
    p.set_termios(t);
    assert_eq!(slave_read(&mut p, 10), b"abc");
    assert!(p.slave_ready(10), "VMIN 0: a read returns 0 at once");
}

#[test]
fn leaving_canonical_mode_makes_typed_input_readable() {
    let mut p = pair();
    p.write_master(b"line\npart");
    let mut t = p.termios;
    t.lflag &= !lflag::ICANON;
    p.set_termios(t);
    assert_eq!(slave_read(&mut p, 100), b"line\npart");
    t.lflag |= lflag::ICANON;
    p.set_termios(t);
    p.write_master(b"x\n");
    assert_eq!(slave_read(&mut p, 100), b"x\n");
}

#[test]
fn literal_next_takes_a_control_character_as_data() {
    let mut p = pair();
    p.write_master(b"\x16\x03\n");
    assert_eq!(slave_read(&mut p, 100), b"\x03\n");
}

#[test]
fn output_post_processing_and_flow_control() {
    let mut p = pair();
    p.write_slave(b"a\nb");
    assert_eq!(master_all(&mut p), b"a\r\nb");
    p.write_master(b"\x13");
    assert!(p.stopped, "VSTOP stops output");
    p.write_master(b"\x11");
    assert!(!p.stopped);
}

#[test]
fn packet_mode_prefixes_data_and_reports_flushes() {
    let mut p = pair();
    p.packet = true;
    p.write_slave(b"hi");
    assert_eq!(master_all(&mut p), b"\0hi");
    p.flush_input();
    assert!(p.master_ready());
    assert_eq!(master_all(&mut p), b"\x01");
}

#[test]
fn canonical_lines_are_capped_but_newline_still_ends_them() {
    let mut p = pair();
    let long = vec![b'x'; LINE_MAX + 100];
    p.write_master(&long);
    p.write_master(b"\n");
    let got = slave_read(&mut p, 10000);
    assert_eq!(got.len(), LINE_MAX + 1);
    assert_eq!(*got.last().unwrap(), b'\n');
}

#[test]
fn rdev_encoding_round_trips() {
    for i in [0u32, 1, 255, 256, 4095] {
        assert_eq!(pts_index(pts_rdev(i)), Some(i));
    }
    assert_eq!(pts_rdev(3), 136 << 8 | 3);
    assert_eq!(pts_index(PTMX_RDEV), None);
}

#[test]
fn devpts_numbers_pairs_and_reuses_freed_numbers() {
    let d = Devpts::default();
    let a = d.alloc().unwrap();
    let b = d.alloc().unwrap();
    assert_eq!((a.borrow().index, b.borrow().index), (0, 1));
    a.borrow_mut().masters = 1;
    assert_eq!(d.indexes(), vec![0]);
    d.release(0);
    drop(a);
    assert!(d.get(0).is_none());
    assert_eq!(d.alloc().unwrap().borrow().index, 0);
    b.borrow_mut().session = 42;
    assert!(d.of_session(42).is_some());
    assert!(d.of_session(7).is_none());
}

#[test]
fn termios_bytes_round_trip_both_layouts() {
    let t = Termios::default();
    assert_eq!(t.to_bytes(false).len(), 36);
    assert_eq!(t.to_bytes(true).len(), 44);
    assert_eq!(Termios::from_bytes(&t.to_bytes(true)), t);
}
