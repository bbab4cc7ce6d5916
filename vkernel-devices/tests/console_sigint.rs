//! SIGINT handling, in its own test binary because it changes the process's
//! signal disposition. Everything runs in one test function so no other
//! test in this binary sees the handler.

use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use vkernel_devices::{Console, ConsoleError, ConsoleOptions, Event, EventLoop};

fn wait_interrupt(ev: &mut EventLoop) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(e) = ev
            .poll_once(Some(Duration::from_millis(100)))
            .unwrap()
            .into_iter()
            .next()
        {
            assert!(matches!(e, Event::ConsoleInterrupt { .. }), "{e:?}");
            return true;
        }
    }
    false
}

fn current_sigint() -> SigHandler {
    let probe = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs SIG_DFL momentarily to read the current action, then
    // puts the current action back; no SIGINT is raised in between.
    unsafe {
        let old = sigaction(Signal::SIGINT, &probe).unwrap();
        sigaction(Signal::SIGINT, &old).unwrap();
        old.handler()
    }
}

#[test]
fn sigint_becomes_console_interrupt() {
    assert_eq!(current_sigint(), SigHandler::SigDfl);
    let p = openpty(None, None).unwrap();
    let out = p.slave.try_clone().unwrap();
    let mut ev = EventLoop::new().unwrap();
    let mut con = Console::from_fds(p.slave, out).unwrap();
    assert!(con.catches_sigint());
    let id = con.register(ev.handle()).unwrap();
    assert!(matches!(current_sigint(), SigHandler::Handler(_)));

    // Only one console can own SIGINT.
    let p2 = openpty(None, None).unwrap();
    let out2 = p2.slave.try_clone().unwrap();
    assert!(matches!(
        Console::from_fds(p2.slave, out2),
        Err(ConsoleError::SigintInUse)
    ));

    // raise() delivers to this thread.
    // SAFETY: raise is always safe to call; SIGINT has our handler.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    assert!(wait_interrupt(&mut ev), "ConsoleInterrupt after raise");

    // kill() on the process: any thread may take it; it still arrives.
    // SAFETY: plain kill(2) on ourselves with a handled signal.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGINT) }, 0);
    assert!(wait_interrupt(&mut ev), "ConsoleInterrupt after kill");

    // From another thread while the loop runs elsewhere.
    let lt = ev.spawn().unwrap();
    std::thread::spawn(|| {
        // SAFETY: as above.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    })
    .join()
    .unwrap();
    match lt.recv_timeout(Duration::from_secs(10)) {
        Some(Event::ConsoleInterrupt { source }) => assert_eq!(source, id),
        other => panic!("expected ConsoleInterrupt, got {other:?}"),
    }
    let ev = lt.stop().unwrap();
    println!("process survived three SIGINTs");

    // Dropping the console restores the old disposition, and a new console
    // can take SIGINT over (stale bytes are not reported).
    drop(con);
    assert_eq!(current_sigint(), SigHandler::SigDfl);
    let p3 = openpty(None, None).unwrap();
    let out3 = p3.slave.try_clone().unwrap();
    let mut ev = ev;
    let mut con3 = Console::with_options(p3.slave, out3, ConsoleOptions::default()).unwrap();
    con3.register(ev.handle()).unwrap();
    // No stale interrupt is reported (a fresh pty may report other events,
    // e.g. its first readiness, depending on timing).
    let stale = ev.poll_once(Some(Duration::from_millis(50))).unwrap();
    assert!(
        !stale
            .iter()
            .any(|e| matches!(e, Event::ConsoleInterrupt { .. })),
        "stale interrupt reported: {stale:?}"
    );
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGINT) };
    assert!(wait_interrupt(&mut ev));
    drop(con3);
    assert_eq!(current_sigint(), SigHandler::SigDfl);
}
