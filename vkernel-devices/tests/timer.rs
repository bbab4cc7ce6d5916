//! Timer tests: one-shot, periodic, rearm, disarm, through the event loop.
//! Timing is printed and asserted only loosely (machines are noisy).

use std::time::{Duration, Instant};

use vkernel_devices::{Event, EventLoop, Timer, TimerError};

const GENEROUS: Duration = Duration::from_secs(10);

fn wait_timer(ev: &mut EventLoop, deadline: Duration) -> Option<u64> {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        let events = ev.poll_once(Some(end - Instant::now())).unwrap();
        match events.as_slice() {
            [] => {}
            [Event::Timer { expirations, .. }] => return Some(*expirations),
            other => panic!("unexpected events {other:?}"),
        }
    }
    None
}

#[test]
fn oneshot_fires_once() {
    let mut ev = EventLoop::new().unwrap();
    let mut t = Timer::new().unwrap();
    let id = t.register(ev.handle()).unwrap();
    assert_eq!(t.source_id(), Some(id));
    let start = Instant::now();
    t.arm_oneshot(Duration::from_millis(20)).unwrap();
    assert!(t.remaining().unwrap().is_some());
    let events = loop {
        let events = ev.poll_once(Some(GENEROUS)).unwrap();
        if !events.is_empty() {
            break events;
        }
    };
    let elapsed = start.elapsed();
    println!("one-shot 20 ms fired after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(19),
        "fired early: {elapsed:?}"
    );
    match events.as_slice() {
        [Event::Timer {
            source,
            expirations: 1,
        }] => assert_eq!(*source, id),
        other => panic!("unexpected {other:?}"),
    }
    // It does not fire again.
    assert!(ev
        .poll_once(Some(Duration::from_millis(60)))
        .unwrap()
        .is_empty());
    assert_eq!(t.remaining().unwrap(), None);
}

#[test]
fn periodic_five_periods() {
    let mut ev = EventLoop::new().unwrap();
    let mut t = Timer::new().unwrap();
    t.register(ev.handle()).unwrap();
    let period = Duration::from_millis(10);
    let start = Instant::now();
    t.arm_periodic(period).unwrap();
    let mut total = 0;
    let mut batches = Vec::new();
    while total < 5 {
        let n = wait_timer(&mut ev, GENEROUS).expect("periodic timer did not fire");
        total += n;
        batches.push((start.elapsed(), n));
    }
    let elapsed = start.elapsed();
    t.disarm().unwrap();
    println!("periodic 10 ms: {total} expirations in {elapsed:?}; batches {batches:?}");
    assert!(total >= 5);
    assert!(
        elapsed >= Duration::from_millis(45),
        "too fast: {elapsed:?}"
    );
    // Disarmed: nothing more arrives.
    assert!(ev
        .poll_once(Some(Duration::from_millis(50)))
        .unwrap()
        .is_empty());
}

#[test]
fn missed_periods_are_counted() {
    // Nobody polls for a while: the expirations pile up in one count.
    let t = Timer::new().unwrap();
    t.arm_periodic(Duration::from_millis(5)).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let n = t.take_expirations().unwrap();
    println!("5 ms periodic, slept 60 ms: {n} expirations");
    assert!(n >= 5, "{n}");
    assert_eq!(t.take_expirations().unwrap(), 0);
}

#[test]
fn rearm_and_disarm() {
    let mut ev = EventLoop::new().unwrap();
    let mut t = Timer::new().unwrap();
    t.register(ev.handle()).unwrap();
    // Armed far away, then re-armed sooner: the new setting wins.
    t.arm_oneshot(Duration::from_secs(3600)).unwrap();
    let start = Instant::now();
    t.arm_oneshot(Duration::from_millis(10)).unwrap();
    assert_eq!(wait_timer(&mut ev, GENEROUS), Some(1));
    println!("re-armed 10 ms timer fired after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(3000));
    // Armed then disarmed: never fires.
    t.arm_oneshot(Duration::from_millis(10)).unwrap();
    t.disarm().unwrap();
    assert_eq!(t.remaining().unwrap(), None);
    assert_eq!(wait_timer(&mut ev, Duration::from_millis(60)), None);
    // Zero delay means "now", not "disarm".
    t.arm_oneshot(Duration::ZERO).unwrap();
    assert_eq!(wait_timer(&mut ev, GENEROUS), Some(1));
    // A zero period is refused.
    assert!(matches!(
        t.arm(Duration::from_millis(1), Some(Duration::ZERO)),
        Err(TimerError::ZeroPeriod)
    ));
}

#[test]
fn two_timers_and_drop_deregisters() {
    let mut ev = EventLoop::new().unwrap();
    let mut a = Timer::new().unwrap();
    let mut b = Timer::new().unwrap();
    let ida = a.register(ev.handle()).unwrap();
    let idb = b.register(ev.handle()).unwrap();
    assert_ne!(ida, idb);
    assert!(a.register(ev.handle()).is_err(), "double registration");
    a.arm_oneshot(Duration::from_millis(5)).unwrap();
    b.arm_oneshot(Duration::from_millis(5)).unwrap();
    let mut seen = Vec::new();
    let end = Instant::now() + GENEROUS;
    while seen.len() < 2 && Instant::now() < end {
        for e in ev.poll_once(Some(Duration::from_millis(100))).unwrap() {
            seen.push(e.source().unwrap());
        }
    }
    seen.sort();
    assert_eq!(seen, vec![ida, idb]);
    assert_eq!(ev.handle().source_count(), 2);
    drop(a);
    assert_eq!(ev.handle().source_count(), 1);
    drop(b);
    assert_eq!(ev.handle().source_count(), 0);
}

#[test]
fn timer_on_spawned_loop() {
    let ev = EventLoop::new().unwrap();
    let lt = ev.spawn().unwrap();
    let mut t = Timer::new().unwrap();
    let id = t.register(lt.handle()).unwrap();
    t.arm_periodic(Duration::from_millis(10)).unwrap();
    let mut total = 0;
    let start = Instant::now();
    while total < 3 && start.elapsed() < GENEROUS {
        if let Some(Event::Timer {
            source,
            expirations,
        }) = lt.recv_timeout(Duration::from_millis(500))
        {
            assert_eq!(source, id);
            total += expirations;
        }
    }
    println!("spawned loop: {total} expirations in {:?}", start.elapsed());
    assert!(total >= 3);
    drop(t);
    let ev = lt.stop().unwrap();
    assert_eq!(ev.handle().source_count(), 0);
}
