//! Disk tests: byte and sector I/O, bounds, read-only, flush, the queue.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vkernel_devices::{
    Disk, DiskCompletion, DiskError, DiskOptions, DiskQueue, DiskRequest, Event, EventLoop,
};

/// A scratch path removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "vkernel-devices-test-{}-{tag}.img",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn create_and_geometry() {
    let s = Scratch::new("geom");
    let d = Disk::create(&s.0, 1 << 20).unwrap();
    assert_eq!(d.size(), 1 << 20);
    assert_eq!(d.sector_size(), 512);
    assert_eq!(d.sector_count(), 2048);
    assert!(!d.is_read_only());
    assert_eq!(d.path(), s.0.as_path());
    assert_eq!(std::fs::metadata(&s.0).unwrap().len(), 1 << 20);
    // create refuses to clobber an existing image.
    assert!(matches!(
        Disk::create(&s.0, 4096),
        Err(DiskError::Create { .. })
    ));
    // Fresh images read as zeros.
    let mut buf = vec![0xffu8; 4096];
    d.read_at(12345, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // Sector size must be a power of two.
    let bad = DiskOptions {
        read_only: false,
        sector_size: 1000,
    };
    assert!(matches!(
        Disk::open_with(&s.0, bad),
        Err(DiskError::BadSectorSize(1000))
    ));
    assert!(matches!(
        Disk::open("/nonexistent/vk.img"),
        Err(DiskError::Open { .. })
    ));
}

#[test]
fn byte_round_trips_at_various_offsets() {
    let s = Scratch::new("bytes");
    let size = 256 * 1024;
    let d = Disk::create(&s.0, size).unwrap();
    let cases: &[(u64, usize)] = &[
        (0, 1),
        (0, 512),
        (1, 511),
        (511, 2),
        (4095, 4097),
        (65536, 65536),
        (size - 1, 1),
        (size - 7000, 7000),
        (100_000, 0),
    ];
    for (i, &(off, len)) in cases.iter().enumerate() {
        let data = pattern(len, i as u8 + 1);
        d.write_at(off, &data).unwrap();
        let mut back = vec![0u8; len];
        d.read_at(off, &mut back).unwrap();
        assert_eq!(back, data, "offset {off} len {len}");
    }
    // Cross-check with std: the file holds exactly what was written last.
    d.flush().unwrap();
    let file = std::fs::read(&s.0).unwrap();
    assert_eq!(file.len() as u64, size);
    let (off, len) = (size - 7000, 7000usize);
    assert_eq!(
        &file[off as usize..off as usize + len],
        &pattern(len, 8)[..]
    );
}

#[test]
fn sector_io_and_alignment() {
    let s = Scratch::new("sectors");
    let d = Disk::create(&s.0, 64 * 512).unwrap();
    let data = pattern(3 * 512, 7);
    d.write_sectors(5, &data).unwrap();
    let mut back = vec![0u8; 3 * 512];
    d.read_sectors(5, &mut back).unwrap();
    assert_eq!(back, data);
    let mut raw = vec![0u8; 512];
    d.read_at(6 * 512, &mut raw).unwrap();
    assert_eq!(raw, data[512..1024]);

    // Unaligned length: typed error, nothing written.
    let before = std::fs::read(&s.0).unwrap();
    assert!(matches!(
        d.write_sectors(0, &[1u8; 100]),
        Err(DiskError::Unaligned {
            len: 100,
            sector_size: 512
        })
    ));
    let mut small = [0u8; 513];
    assert!(matches!(
        d.read_sectors(0, &mut small),
        Err(DiskError::Unaligned { .. })
    ));
    // Past the last sector.
    assert!(matches!(
        d.write_sectors(63, &[1u8; 1024]),
        Err(DiskError::OutOfRange { .. })
    ));
    assert!(matches!(
        d.read_sectors(u64::MAX, &mut [0u8; 512]),
        Err(DiskError::OutOfRange { .. })
    ));
    assert_eq!(std::fs::read(&s.0).unwrap(), before);

    // 4 KiB sectors.
    drop(d);
    let d = Disk::open_with(
        &s.0,
        DiskOptions {
            read_only: false,
            sector_size: 4096,
        },
    )
    .unwrap();
    assert_eq!(d.sector_count(), 8);
    assert!(matches!(
        d.write_sectors(0, &[0u8; 512]),
        Err(DiskError::Unaligned { .. })
    ));
    d.write_sectors(7, &[9u8; 4096]).unwrap();
}

#[test]
fn out_of_range_reads_and_writes_change_nothing() {
    let s = Scratch::new("range");
    let d = Disk::create(&s.0, 8192).unwrap();
    d.write_at(0, &[0x5a; 8192]).unwrap();
    let mut buf = [0xeeu8; 16];
    let err = d.read_at(8190, &mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            DiskError::OutOfRange {
                offset: 8190,
                len: 16,
                size: 8192
            }
        ),
        "{err}"
    );
    println!("read past end: {err}");
    assert_eq!(buf, [0xee; 16], "buffer untouched on error");
    assert!(d.read_at(8193, &mut []).is_err());
    assert!(d.read_at(u64::MAX, &mut buf).is_err());
    assert!(matches!(
        d.write_at(8000, &[1u8; 200]),
        Err(DiskError::OutOfRange { .. })
    ));
    assert!(d.write_at(u64::MAX - 3, &[1u8; 8]).is_err());
    d.flush().unwrap();
    let file = std::fs::read(&s.0).unwrap();
    assert_eq!(file.len(), 8192, "file did not grow");
    assert!(file.iter().all(|&b| b == 0x5a), "file unchanged");
}

#[test]
fn read_only_rejects_writes() {
    let s = Scratch::new("ro");
    {
        let d = Disk::create(&s.0, 4096).unwrap();
        d.write_at(0, &pattern(4096, 3)).unwrap();
        d.flush().unwrap();
    }
    let before = std::fs::read(&s.0).unwrap();
    let d = Disk::open_read_only(&s.0).unwrap();
    assert!(d.is_read_only());
    let err = d.write_at(0, b"nope").unwrap_err();
    println!("write to read-only: {err}");
    assert!(matches!(err, DiskError::ReadOnly(_)));
    assert!(matches!(
        d.write_sectors(1, &[0u8; 512]),
        Err(DiskError::ReadOnly(_))
    ));
    d.flush().unwrap();
    let mut back = vec![0u8; 4096];
    d.read_at(0, &mut back).unwrap();
    assert_eq!(back, before);
    assert_eq!(std::fs::read(&s.0).unwrap(), before, "file unchanged");
}

#[test]
fn flush_and_reopen() {
    let s = Scratch::new("flush");
    {
        let d = Disk::create(&s.0, 1 << 16).unwrap();
        d.write_at(1000, b"persist me").unwrap();
        d.flush().unwrap();
    }
    let d = Disk::open(&s.0).unwrap();
    let mut back = [0u8; 10];
    d.read_at(1000, &mut back).unwrap();
    assert_eq!(&back, b"persist me");
}

#[test]
fn queue_completions_through_the_loop() {
    let s = Scratch::new("queue");
    let mut ev = EventLoop::new().unwrap();
    let q = DiskQueue::new(Disk::create(&s.0, 1 << 20).unwrap(), ev.handle()).unwrap();
    let data = pattern(4096, 42);
    let w = q
        .submit(DiskRequest::Write {
            offset: 8192,
            data: data.clone(),
        })
        .unwrap();
    let f = q.submit(DiskRequest::Flush).unwrap();
    let r = q
        .submit(DiskRequest::Read {
            offset: 8192,
            buf: vec![0; 4096],
        })
        .unwrap();
    let bad = q
        .submit(DiskRequest::Read {
            offset: (1 << 20) - 10,
            buf: vec![0; 20],
        })
        .unwrap();
    let mut done = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while done.len() < 4 && Instant::now() < end {
        for e in ev.poll_once(Some(Duration::from_millis(200))).unwrap() {
            match e {
                Event::DiskDone {
                    source,
                    request,
                    result,
                } => {
                    assert_eq!(source, q.source_id());
                    done.push((request, result));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(done.len(), 4, "all completions arrive");
    // Completions come in submission order.
    let ids: Vec<_> = done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![w, f, r, bad]);
    assert!(matches!(&done[0].1, Ok(DiskCompletion::Written(d)) if *d == data));
    assert!(matches!(&done[1].1, Ok(DiskCompletion::Flushed)));
    assert!(matches!(&done[2].1, Ok(DiskCompletion::Read(d)) if *d == data));
    assert!(matches!(&done[3].1, Err(DiskError::OutOfRange { .. })));
    // Synchronous access alongside the queue.
    let mut back = vec![0u8; 4096];
    q.disk().read_at(8192, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn queue_on_spawned_loop_and_drop_waits() {
    let s = Scratch::new("queue2");
    let ev = EventLoop::new().unwrap();
    let lt = ev.spawn().unwrap();
    let q = DiskQueue::new(Disk::create(&s.0, 1 << 20).unwrap(), lt.handle()).unwrap();
    let n = 64;
    for i in 0..n {
        q.submit(DiskRequest::Write {
            offset: i * 4096,
            data: vec![i as u8; 4096],
        })
        .unwrap();
    }
    drop(q); // waits for all 64 writes
    let mut count = 0;
    while let Some(e) = lt.recv_timeout(Duration::from_secs(5)) {
        assert!(matches!(
            e,
            Event::DiskDone {
                result: Ok(DiskCompletion::Written(_)),
                ..
            }
        ));
        count += 1;
        if count == n {
            break;
        }
    }
    assert_eq!(count, n);
    let file = std::fs::read(&s.0).unwrap();
    for i in 0..n as usize {
        assert!(file[i * 4096..(i + 1) * 4096].iter().all(|&b| b == i as u8));
    }
}
