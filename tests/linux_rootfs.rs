//! The vproc's root filesystem through the `vkernel` command line: the
//! host's `/` read-only under an in-memory overlay, `--root`, `--bind`,
//! `--disk`, and paths that try to leave the root. Programs run natively
//! and under the vkernel must print the same; what the vproc writes must
//! not reach the host (except through `--bind ...:rw`). Tests SKIP loudly
//! without /dev/kvm.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{have_kvm, output_within, scratch, shell_status, text, Native};

/// Run the vkernel CLI with `args`; (stdout, exit status). A hang fails
/// after a generous timeout.
fn vk(args: &[&str]) -> (String, i32) {
    let mut c = Command::new(common::example_binary("vkernel"));
    c.args(args);
    let out = output_within(c, &format!("vkernel {args:?}"), Duration::from_secs(120));
    eprintln!("vkernel {args:?}: {:?}\n{}", out.status, text(&out.stderr));
    (text(&out.stdout), shell_status(out.status))
}

/// Run `prog args` natively; (stdout, exit status).
fn native(prog: &str, args: &[&str]) -> (String, i32) {
    let o = Native::new(prog).args(args).host_env().run();
    (o.stdout, o.status)
}

fn busybox(test: &str) -> bool {
    common::busybox(test).is_some()
}

/// A scratch directory for `test` when /dev/kvm and busybox are there
/// (None after a loud SKIP).
fn busybox_scratch(test: &str) -> Option<PathBuf> {
    common::kvm_busybox(test)?;
    Some(scratch(test))
}

/// The names in directory `d`.
fn names(d: &Path) -> BTreeSet<String> {
    std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A small directory with fixed contents and times.
fn fixed_dir(root: &Path) -> PathBuf {
    let d = root.join("fixed");
    std::fs::create_dir_all(d.join("subdir")).unwrap();
    std::fs::write(d.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(d.join("big.bin"), vec![7u8; 10000]).unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("link")).unwrap();
    for p in ["a.txt", "big.bin", "subdir", ""] {
        let c = std::ffi::CString::new(d.join(p).display().to_string()).unwrap();
        let t = [
            libc::timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 0,
            },
        ];
        // SAFETY: a valid path string and two timespecs.
        let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), 0) };
        assert_eq!(r, 0);
    }
    d
}

#[test]
fn ls_of_a_fixed_directory_matches_native() {
    let test = "ls_of_a_fixed_directory_matches_native";
    if !have_kvm(test) || !busybox(test) {
        return;
    }
    let d = fixed_dir(&scratch(test));
    let ds = d.display().to_string();
    let want = native("/bin/busybox", &["ls", "-l", &ds]);
    assert_eq!(want.1, 0);
    // Through the host's / (the default root) ...
    assert_eq!(vk(&["run", "/bin/busybox", "ls", "-l", &ds]), want);
    // ... and through a read-only bind.
    let bind = format!("{ds}:/fixed");
    assert_eq!(
        vk(&["run", "--bind", &bind, "/bin/busybox", "ls", "-l", "/fixed"]),
        want
    );
    let want = native("/bin/busybox", &["ls", "-a", &ds]);
    let root = vk(&["run", "--root", &ds, "/bin/busybox", "ls", "-a", "/"]);
    // The root also holds the synthetic /dev, /proc and a /tmp.
    let extra: BTreeSet<&str> = root.0.lines().collect();
    for n in want.0.lines() {
        assert!(
            extra.contains(n),
            "{n} missing from --root listing {root:?}"
        );
    }
}

#[test]
fn file_calls_match_native_and_leave_the_host_alone() {
    let test = "file_calls_match_native_and_leave_the_host_alone";
    for (cc, guest) in common::kvm_guests(test, "rootfs") {
        file_calls_with(&guest, &scratch(test).join(cc));
    }
}

/// The `ops` guest natively in one directory and under the vkernel in
/// another: the same output, and the second untouched on the host.
fn file_calls_with(guest: &Path, dir: &Path) {
    let g = guest.display().to_string();
    let (a, b) = (dir.join("native"), dir.join("vk"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("keep"), "host file\n").unwrap();
    std::fs::write(a.join("keep"), "host file\n").unwrap();
    let want = native(&g, &["ops", &a.display().to_string()]);
    assert_eq!(want.1, 0, "{}", want.0);
    let got = vk(&["run", &g, "ops", &b.display().to_string()]);
    assert_eq!(got, want);
    // Everything the vproc made or removed was in memory.
    assert_eq!(names(&b), BTreeSet::from(["keep".to_string()]));
    assert_eq!(
        std::fs::read_to_string(b.join("keep")).unwrap(),
        "host file\n"
    );
}

#[test]
fn tmp_writes_stay_in_the_vproc() {
    let test = "tmp_writes_stay_in_the_vproc";
    if !have_kvm(test) || !busybox(test) {
        return;
    }
    let script = "cd /tmp && mkdir $1 && cd $1 && echo one > f && echo two >> f && \
                  mv f g && mkdir d && cp g d/h && ls -R && cat d/h && rm -r d g && ls && \
                  cd .. && rmdir $1 && echo kept > $1-kept && cat /tmp/$1-kept";
    let tag = format!("vkrootfs-{}", std::process::id());
    let (nat, vkp) = (format!("{tag}-native"), format!("{tag}-vk"));
    let want = native("/bin/busybox", &["sh", "-c", script, "sh", &nat]);
    let _ = std::fs::remove_file(format!("/tmp/{nat}-kept"));
    assert_eq!(want.1, 0, "{}", want.0);
    let before = names(Path::new("/tmp"));
    let got = vk(&["run", "/bin/busybox", "sh", "-c", script, "sh", &vkp]);
    let after = names(Path::new("/tmp"));
    assert_eq!(got, want);
    // Other programs may come and go in /tmp meanwhile; the vproc's names
    // never appear there.
    for n in before.symmetric_difference(&after) {
        assert!(!n.contains(&vkp), "the host's /tmp changed: {n}");
    }
    assert!(!after.iter().any(|n| n.contains(&vkp)), "{after:?}");
    assert!(!Path::new(&format!("/tmp/{vkp}-kept")).exists());
}

#[test]
fn paths_cannot_escape_the_root() {
    let test = "paths_cannot_escape_the_root";
    let Some(guest) = common::kvm_guest(test, "rootfs", "musl-gcc") else {
        return;
    };
    let r = scratch(test).join("root");
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("sub")).unwrap();
    std::fs::write(r.join("etc/hostname"), "INSIDE\n").unwrap();
    let link = |t: &str, n: &str| std::os::unix::fs::symlink(t, r.join(n)).unwrap();
    link("/etc", "abs");
    link("../../../../../../etc", "up");
    link("../../../../etc/hostname", "uplink");
    link("/etc/passwd", "outside");
    link("loop2", "loop1");
    link("loop1", "loop2");
    let (out, code) = vk(&[
        "run",
        "--root",
        &r.display().to_string(),
        &guest.display().to_string(),
        "escape",
    ]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let inside = "/../../../../etc/hostname /etc/../../etc/hostname /abs/hostname \
                  /up/hostname /uplink /proc/self/root/etc/hostname \
                  /proc/self/root/../../etc/hostname /proc/self/cwd/../../etc/hostname";
    for p in inside.split_whitespace() {
        let want = format!("{p}: [INSIDE]");
        assert!(lines.contains(&want.as_str()), "{want} not in\n{out}");
    }
    // The host's /etc/passwd is not inside this root.
    assert!(
        lines.contains(&"/outside: No such file or directory"),
        "{out}"
    );
    assert!(lines.contains(&"readlink /proc/self/root [/]"), "{out}");
    assert!(lines.contains(&"cwd after 8x chdir .. [/]"), "{out}");
    assert!(
        lines.contains(&"cwd after chdir /proc/self/root/.. [/]"),
        "{out}"
    );
    assert!(lines.contains(&"etc/hostname: [INSIDE]"), "{out}");
    assert!(lines.contains(&"/loop1: Symbolic link loop"), "{out}");
}

#[test]
fn bind_rw_writes_through_and_ro_does_not() {
    let Some(dir) = busybox_scratch("bind_rw_writes_through_and_ro_does_not") else {
        return;
    };
    let (rw, ro) = (dir.join("rw"), dir.join("ro"));
    std::fs::create_dir_all(rw.join("old")).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(rw.join("f"), "from the host\n").unwrap();
    std::fs::write(rw.join("old/x"), "x\n").unwrap();
    std::fs::write(ro.join("r"), "read me\n").unwrap();
    let script = "cat /data/f && echo new > /data/new && echo more >> /data/f && \
                  mv /data/f /data/g && mkdir /data/sub && echo s > /data/sub/s && \
                  mv /data/old /data/renamed && cat /data/renamed/x && rm /data/renamed/x && \
                  echo w > /ro/w && rm /ro/r && ls /ro && ls /data";
    let (b1, b2) = (
        format!("{}:/data:rw", rw.display()),
        format!("{}:/ro", ro.display()),
    );
    let (out, code) = vk(&[
        "run",
        "--bind",
        &b1,
        "--bind",
        &b2,
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "from the host\nx\nw\ng\nnew\nrenamed\nsub\n");
    // Through to the host in the rw bind ...
    assert_eq!(
        names(&rw),
        ["g", "new", "renamed", "sub"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("g")).unwrap(),
        "from the host\nmore\n"
    );
    assert_eq!(std::fs::read_to_string(rw.join("sub/s")).unwrap(), "s\n");
    assert!(names(&rw.join("renamed")).is_empty());
    // ... and nothing in the read-only one.
    assert_eq!(names(&ro), BTreeSet::from(["r".to_string()]));
}

#[test]
fn disk_image_is_still_a_root() {
    let Some(dir) = busybox_scratch("disk_image_is_still_a_root") else {
        return;
    };
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/greeting"), "hello from the image\n").unwrap();
    let image = dir.join("fs.tar");
    vkernel::linux::fs::build_image(&root, &image).unwrap();
    let (out, code) = vk(&[
        "run",
        "--disk",
        &image.display().to_string(),
        "/bin/busybox",
        "sh",
        "-c",
        "cat /etc/greeting && echo changed > /etc/greeting && cat /etc/greeting && \
         echo t > /tmp/t && cat /tmp/t && ls /",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "hello from the image\nchanged\nt\ndev\netc\nproc\ntmp\n"
    );
}
