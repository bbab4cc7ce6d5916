//! Unit tests of the tree without KVM: overlay, binds, escapes, identity.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vkernel-fs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read_all(fs: &Fs, h: u64) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let n = fs.read(h, 0, &mut b).unwrap();
    b.truncate(n);
    b
}

#[test]
fn bind_arguments_parse() {
    let b = Bind::parse("/srv/data:/data:rw").unwrap();
    assert_eq!((b.guest.as_slice(), b.writable), (&b"/data"[..], true));
    let b = Bind::parse("/srv/data").unwrap();
    assert_eq!((b.guest.as_slice(), b.writable), (&b"/srv/data"[..], false));
    assert!(!Bind::parse("/a:/b:ro").unwrap().writable);
    assert!(Bind::parse("/a:b").is_err());
    assert!(Bind::parse("/a:/").is_err());
    assert!(Bind::parse("/a:/b/../c").is_err());
    assert!(Bind::parse("/a:/b:/c").is_err());
}

#[test]
fn overlay_changes_never_reach_the_host() {
    let d = tempdir("overlay");
    std::fs::write(d.join("f"), "lower\n").unwrap();
    let fs = Fs::host(&d).unwrap();
    let f = fs.resolve(ROOT, b"/f", true).unwrap();
    let id = fs.file_id(f);
    assert_eq!(fs.file_id(fs.resolve(ROOT, b"/./f", true).unwrap()), id);
    fs.prepare_write(f).unwrap();
    assert_ne!(fs.file_id(f), id, "a copy-up is a new version");
    fs.write(f, None, b"upper\n").unwrap();
    assert_eq!(read_all(&fs, f), b"lower\nupper\n");
    let (n, _) = fs.create(ROOT, b"new", 0o644, true).unwrap();
    fs.write(n, Some(0), b"x").unwrap();
    fs.mkdir(ROOT, b"dir", 0o755).unwrap();
    fs.rename(
        ROOT,
        b"new",
        fs.resolve(ROOT, b"/dir", true).unwrap(),
        b"moved",
        0,
    )
    .unwrap();
    fs.unlink(ROOT, b"f", false).unwrap();
    assert_eq!(fs.resolve(ROOT, b"/f", true), Err(errno::ENOENT));
    assert_eq!(
        read_all(&fs, fs.resolve(ROOT, b"/dir/moved", true).unwrap()),
        b"x"
    );
    // The host saw none of it.
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "lower\n");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn host_symlinks_resolve_inside_the_root() {
    let d = tempdir("escape");
    std::fs::create_dir_all(d.join("etc")).unwrap();
    std::fs::write(d.join("etc/passwd"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/passwd", d.join("rel")).unwrap();
    let fs = Fs::host(&d).unwrap();
    for p in [
        &b"/abs"[..],
        b"/rel",
        b"/../../etc/passwd",
        b"/etc/../../../etc/passwd",
    ] {
        let h = fs.resolve(ROOT, p, true).unwrap();
        assert_eq!(
            read_all(&fs, h),
            b"inside\n",
            "{}",
            String::from_utf8_lossy(p)
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn backing_keeps_a_deleted_file_and_frees_it_last() {
    let fs = Arc::new(Fs::empty());
    let (h, _) = fs.create(ROOT, b"f", 0o644, true).unwrap();
    fs.write(h, None, b"data").unwrap();
    let b = Backing::new(fs.clone(), h);
    let b2 = b.clone();
    fs.unlink(ROOT, b"f", false).unwrap();
    drop(b);
    let mut buf = [0u8; 8];
    assert_eq!(b2.read_at(0, &mut buf), Ok(4));
    assert_eq!(b2.size(), 4);
    drop(b2);
    assert!(
        fs.with_node(h, |_| ()).is_err(),
        "freed with its last holder"
    );
}

#[test]
fn rw_bind_writes_through() {
    let d = tempdir("bind");
    let fs = Fs::new(
        RootSpec::Empty,
        &[Bind {
            host: d.clone(),
            guest: b"/data".to_vec(),
            writable: true,
        }],
    )
    .unwrap();
    let data = fs.resolve(ROOT, b"/data", true).unwrap();
    let (h, _) = fs.create(data, b"out", 0o644, true).unwrap();
    fs.write(h, None, b"through\n").unwrap();
    assert_eq!(std::fs::read_to_string(d.join("out")).unwrap(), "through\n");
    fs.rename(data, b"out", data, b"out2", 0).unwrap();
    assert!(d.join("out2").exists() && !d.join("out").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn memory_files_are_bounded_and_accounted() {
    let fs = Fs::empty();
    let (h, _) = fs.create(ROOT, b"big", 0o644, true).unwrap();
    // Sparse: a write far out costs one page, and the size may pass the
    // per-file usage cap.
    fs.write(h, Some(node::FILE_MAX), b"x").unwrap();
    assert_eq!(fs.lock().mem_bytes, 4096);
    assert_eq!(fs.inode(h).size, node::FILE_MAX + 1);
    assert_eq!(
        fs.write(h, Some(i64::MAX as u64), b"x"),
        Err(libc::EFBIG as i64),
        "past tmpfs's largest size"
    );
    // Usage past the cap is EFBIG.
    let chunk = vec![1u8; 1 << 20];
    let mut err = None;
    for i in 0..1100u64 {
        if let Err(e) = fs.write(h, Some(i << 20), &chunk) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(libc::EFBIG as i64));
    assert!(fs.lock().mem_bytes <= node::FILE_MAX);
    fs.truncate(h, 1 << 20).unwrap();
    assert_eq!(fs.lock().mem_bytes, 1 << 20);
    fs.truncate(h, 10).unwrap();
    assert_eq!(fs.lock().mem_bytes, 4096, "one page holds 10 bytes");
    fs.truncate(h, 1 << 40).unwrap();
    assert_eq!(fs.lock().mem_bytes, 4096, "growing allocates nothing");
    fs.unlink(ROOT, b"big", false).unwrap();
    assert_eq!(fs.lock().mem_bytes, 0, "freed with its last name");
}
