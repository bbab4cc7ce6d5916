//! Console tests over a pty and over pipes. SIGINT is tested in its own
//! binary (console_sigint.rs); these consoles do not catch it.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, LocalFlags};
use vkernel_devices::{Console, ConsoleOptions, Event, EventLoop};

const NO_SIGINT: ConsoleOptions = ConsoleOptions {
    raw: true,
    catch_sigint: false,
};

fn pty() -> (OwnedFd, OwnedFd) {
    let p = openpty(None, None).expect("openpty");
    (p.master, p.slave)
}

/// Collects console input until `want` bytes arrived (or 10 s).
fn collect_input(ev: &mut EventLoop, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < end {
        for e in ev.poll_once(Some(Duration::from_millis(100))).unwrap() {
            match e {
                Event::ConsoleInput { data, .. } => got.extend_from_slice(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    got
}

/// Reads what is available on `fd` until `want` bytes or 10 s.
fn read_fd(fd: &OwnedFd, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while got.len() < want && Instant::now() < end {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            continue;
        }
        let n = nix::unistd::read(fd.as_fd(), &mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn pty_input_arrives_as_events() {
    let (master, slave) = pty();
    let mut ev = EventLoop::new().unwrap();
    let out = slave.try_clone().unwrap();
    let mut con = Console::with_options(slave, out, NO_SIGINT).unwrap();
    assert!(con.is_raw());
    assert!(!con.catches_sigint());
    let id = con.register(ev.handle()).unwrap();
    assert_eq!(con.source_id(), Some(id));

    nix::unistd::write(&master, b"hello").unwrap();
    assert_eq!(collect_input(&mut ev, 5), b"hello");
    // Raw mode: no line buffering, control bytes pass through, CR stays CR.
    nix::unistd::write(&master, b"a\x03\rb\x7f").unwrap();
    assert_eq!(collect_input(&mut ev, 5), b"a\x03\rb\x7f");
    // Raw mode: no echo back to the master.
    let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0, "no echo");

    // A bigger burst (edge-triggered: drained completely).
    let big: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    nix::unistd::write(&master, &big).unwrap();
    assert_eq!(collect_input(&mut ev, big.len()), big);
}

#[test]
fn pty_output_reaches_master() {
    let (master, slave) = pty();
    let out = slave.try_clone().unwrap();
    let con = Console::with_options(slave, out, NO_SIGINT).unwrap();
    con.write_all(b"vkernel> ").unwrap();
    assert_eq!(read_fd(&master, 9), b"vkernel> ");
    // Output post-processing is kept: \n becomes \r\n on a terminal.
    std::io::Write::write_all(&mut &con, b"line\n").unwrap();
    assert_eq!(read_fd(&master, 6), b"line\r\n");
}

#[test]
fn raw_mode_is_restored_on_drop() {
    let (_master, slave) = pty();
    let probe = slave.try_clone().unwrap();
    let before = tcgetattr(&probe).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let out = slave.try_clone().unwrap();
    let con = Console::with_options(slave, out, NO_SIGINT).unwrap();
    let raw = tcgetattr(&probe).unwrap();
    assert!(!raw.local_flags.contains(LocalFlags::ICANON));
    assert!(!raw.local_flags.contains(LocalFlags::ECHO));
    drop(con);
    let after = tcgetattr(&probe).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
    let fl = nix::fcntl::fcntl(&probe, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_eq!(fl & libc::O_NONBLOCK, 0, "O_NONBLOCK restored");
}

#[test]
fn not_raw_when_asked() {
    let (_master, slave) = pty();
    let out = slave.try_clone().unwrap();
    let con = Console::with_options(
        slave,
        out,
        ConsoleOptions {
            raw: false,
            catch_sigint: false,
        },
    )
    .unwrap();
    assert!(!con.is_raw());
}

#[test]
fn pty_hangup_reports_closed() {
    let (master, slave) = pty();
    let mut ev = EventLoop::new().unwrap();
    let out = slave.try_clone().unwrap();
    let mut con = Console::with_options(slave, out, NO_SIGINT).unwrap();
    con.register(ev.handle()).unwrap();
    nix::unistd::write(&master, b"bye").unwrap();
    drop(master);
    let mut input = Vec::new();
    let mut closed = false;
    let end = Instant::now() + Duration::from_secs(10);
    while !closed && Instant::now() < end {
        for e in ev.poll_once(Some(Duration::from_millis(100))).unwrap() {
            match e {
                Event::ConsoleInput { data, .. } => input.extend(data),
                Event::ConsoleClosed { .. } => closed = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(closed, "hangup reported");
    println!("input before hangup: {:?}", String::from_utf8_lossy(&input));
}

#[test]
fn pipes_work_and_eof_is_reported() {
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let mut ev = EventLoop::new().unwrap();
    let mut con = Console::with_options(in_r, out_w, NO_SIGINT).unwrap();
    assert!(!con.is_raw(), "pipes are not terminals");
    con.register(ev.handle()).unwrap();
    nix::unistd::write(&in_w, b"piped\n").unwrap();
    assert_eq!(collect_input(&mut ev, 6), b"piped\n");
    drop(in_w);
    let events = ev.poll_once(Some(Duration::from_secs(10))).unwrap();
    assert!(
        matches!(events.as_slice(), [Event::ConsoleClosed { .. }]),
        "{events:?}"
    );
    con.write_all(b"out\n").unwrap();
    assert_eq!(read_fd(&out_r, 4), b"out\n", "no translation on pipes");
}

#[test]
fn large_output_to_a_nonblocking_pipe() {
    // A full non-blocking output (EAGAIN) is waited out, not lost.
    let (in_r, _in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let fl = nix::fcntl::fcntl(&out_w, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        &out_w,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_retain(fl) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .unwrap();
    let con = Console::with_options(in_r, out_w, NO_SIGINT).unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let reader = std::thread::spawn(move || read_fd(&out_r, 1_000_000));
    con.write_all(&data).unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn ctrl_d_on_a_terminal_is_one_end_of_file_not_the_end() {
    let (master, slave) = pty();
    let mut ev = EventLoop::new().unwrap();
    let out = slave.try_clone().unwrap();
    // Cooked mode, as a line-reading program (or a prompt) sees it.
    let mut con = Console::with_options(
        slave,
        out,
        ConsoleOptions {
            raw: false,
            catch_sigint: false,
        },
    )
    .unwrap();
    con.register(ev.handle()).unwrap();
    // A line, Ctrl-D on the empty line after it, another line, Ctrl-D:
    // after each, the events so far (text runs joined) are `want`.
    let mut seen: Vec<String> = Vec::new();
    let steps: [(&[u8], &[&str]); 4] = [
        (b"one\n", &["one\n"]),
        (b"\x04", &["one\n", "EOF"]),
        (b"two\n", &["one\n", "EOF", "two\n"]),
        (b"\x04", &["one\n", "EOF", "two\n", "EOF"]),
    ];
    for (send, want) in steps {
        nix::unistd::write(&master, send).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while seen != want {
            assert!(Instant::now() < end, "after {send:?}: {seen:?}");
            for e in ev.poll_once(Some(Duration::from_millis(50))).unwrap() {
                match e {
                    Event::ConsoleInput { data, .. } => {
                        let text = String::from_utf8_lossy(&data).into_owned();
                        match seen.last_mut() {
                            Some(last) if last != "EOF" => last.push_str(&text),
                            _ => seen.push(text),
                        }
                    }
                    Event::ConsoleEof { .. } => seen.push("EOF".into()),
                    other => panic!("unexpected {other:?} (after {seen:?})"),
                }
            }
        }
    }
    // A hang-up still closes it for good.
    drop(master);
    let end = Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    while !closed && Instant::now() < end {
        for e in ev.poll_once(Some(Duration::from_millis(100))).unwrap() {
            match e {
                Event::ConsoleClosed { .. } => closed = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(closed, "hangup reported");
}
