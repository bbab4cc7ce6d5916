//! The Linux personality of the `vkernel` example, driven in-process: C
//! programs from tests/guests compiled with musl-gcc and gcc -static, and
//! Debian's busybox-static, must print the same output and exit with the
//! same status under vkernel as natively. Tests SKIP loudly without
//! /dev/kvm (and per compiler when one is missing).

mod common;

use common::{have_kvm, image_root, scratch, Native, Out, Run, BUSYBOX};

use std::path::{Path, PathBuf};

use vkernel::linux;

use linux::elf::ElfError;
use linux::launch::Launch;
use linux::VprocError;

#[derive(Clone, Copy, Debug)]
enum Cc {
    Musl,
    Glibc,
    GlibcPie,
}

impl Cc {
    /// musl and glibc when musl-tools are installed, else glibc alone.
    fn all() -> Vec<Cc> {
        if common::have_cc("musl-gcc") {
            vec![Cc::Musl, Cc::Glibc]
        } else {
            vec![Cc::Glibc]
        }
    }

    fn compiler(self) -> &'static str {
        match self {
            Cc::Musl => "musl-gcc",
            _ => "gcc",
        }
    }
}

/// Compile tests/guests/NAME.c (common::compile's fallback to `cc -static`
/// when musl-gcc is missing); None after a SKIP line without any compiler.
fn compile(test: &str, name: &str, cc: Cc) -> Option<PathBuf> {
    let link = match cc {
        Cc::GlibcPie => "-static-pie",
        _ => "-static",
    };
    common::compile_linked(test, name, cc.compiler(), link)
}

/// `prog args` natively in an empty environment, in `cwd` if given, with
/// `stdin`.
fn native(prog: &Path, args: &[&str], cwd: Option<&Path>, stdin: &[u8]) -> Out {
    let mut n = Native::new(prog).args(args).stdin(stdin);
    if let Some(d) = cwd {
        n = n.cwd(d);
    }
    n.run()
}

/// `launch` on 256 MiB, with the tar image `disk` as its root if given.
fn vk_launch(launch: Launch, args: &[&str], disk: Option<&Path>, stdin: &[u8]) -> Run {
    let mut l = launch.args(args).ram(256 << 20);
    if let Some(d) = disk {
        l = l.root(image_root(d));
    }
    common::vk(l, stdin)
}

/// `prog args` alone in a fresh virtual kernel (empty environment).
fn vk(prog: &Path, args: &[&str], disk: Option<&Path>, stdin: &[u8]) -> Out {
    vk_launch(common::program(prog), args, disk, stdin).out()
}

/// Load the ELF file `image` as `path` without arguments and run it.
fn try_vk(image: Vec<u8>, path: &str) -> Result<Run, VprocError> {
    let l = Launch::bytes(image, path).ram(256 << 20);
    let machine = l.machine().expect("a machine on /dev/kvm");
    common::try_vk_on(&machine, l, b"")
}

fn same(test: &str, name: &str, args: &[&str]) {
    if !have_kvm(test) {
        return;
    }
    for cc in Cc::all() {
        let Some(p) = compile(test, name, cc) else {
            continue;
        };
        let n = native(&p, args, None, b"");
        let v = vk(&p, args, None, b"");
        eprintln!(
            "{name} {args:?} ({cc:?}): native status {}, vkernel status {}",
            n.status, v.status
        );
        assert_eq!(v.shown(), n.shown(), "{name} {args:?} built with {cc:?}");
    }
}

#[test]
fn linux_hello_matches_native() {
    same("linux_hello_matches_native", "hello", &["one", "two words"]);
}

#[test]
fn linux_hello_stderr_and_static_pie() {
    let test = "linux_hello_stderr_and_static_pie";
    if !have_kvm(test) {
        return;
    }
    let Some(p) = compile(test, "hello", Cc::GlibcPie) else {
        return;
    };
    let n = native(&p, &["x"], None, b"");
    let v = vk(&p, &["x"], None, b"");
    assert_eq!(v.shown(), n.shown(), "static-pie");
    assert_eq!(v.stderr, "to stderr\n");
}

#[test]
fn linux_memory_matches_native() {
    same("linux_memory_matches_native", "mem", &[]);
}

#[test]
fn linux_signal_handlers_match_native() {
    same("linux_signal_handlers_match_native", "signals", &[]);
}

#[test]
fn linux_fatal_signals_exit_like_a_shell_reports() {
    let test = "linux_fatal_signals_exit_like_a_shell_reports";
    if !have_kvm(test) {
        return;
    }
    for cc in Cc::all() {
        let Some(p) = compile(test, "crash", cc) else {
            continue;
        };
        for (what, code) in [
            ("segv", 139),
            ("ill", 132),
            ("fpe", 136),
            ("abort", 134),
            ("stack", 139),
        ] {
            let n = native(&p, &[what], None, b"");
            let v = vk(&p, &[what], None, b"");
            assert_eq!(n.status, code, "native {what}");
            assert_eq!(v.shown(), n.shown(), "{what} ({cc:?})");
        }
    }
}

/// A tree with etc/greeting, etc/link (to it), an empty etc/sub and
/// `files` (path, contents), and its tar image: (root, image).
fn tree_and_image(test: &str, files: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let dir = scratch(test);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc/sub")).unwrap();
    std::fs::write(root.join("etc/greeting"), "hello world\n").unwrap();
    std::os::unix::fs::symlink("greeting", root.join("etc/link")).unwrap();
    for (path, contents) in files {
        std::fs::write(root.join(path), contents).unwrap();
    }
    let image = dir.join("fs.tar");
    linux::fs::build_image(&root, &image).unwrap();
    (root, image)
}

/// Guest `name` given the directory `dir` of the tree natively and of the
/// image under vkernel prints the same, for each compiler; the native
/// output passes `check`.
fn same_on_image(test: &str, name: &str, files: &[(&str, &str)], dir: &str, check: &str) {
    if !have_kvm(test) {
        return;
    }
    let (root, image) = tree_and_image(test, files);
    let host_dir = if dir.is_empty() {
        root.clone()
    } else {
        root.join(dir)
    };
    for cc in Cc::all() {
        let Some(p) = compile(test, name, cc) else {
            continue;
        };
        let n = native(&p, &[host_dir.to_str().unwrap()], None, b"");
        let v = vk(&p, &[&format!("/{dir}")], Some(&image), b"");
        assert_eq!(n.status, 0, "native run: {}", n.stdout);
        assert!(n.stdout.contains(check), "native run: {}", n.stdout);
        assert_eq!(
            v.shown(),
            n.shown(),
            "{name} ({cc:?}): vkernel (left) vs native (right)"
        );
    }
}

#[test]
fn linux_files_from_a_tar_image_match_native() {
    same_on_image(
        "linux_files_from_a_tar_image_match_native",
        "files",
        &[("etc/sub/data.txt", "a\nb\nc\n"), ("etc/zzz", "x\n")],
        "",
        "",
    );
}

/// Issue 13: the legacy getdents call (78) writes `struct linux_dirent`,
/// d_type as each record's last byte, not getdents64's layout. Both calls
/// on a directory of the disk image list the same names, types and inodes
/// as natively on the tree the image was built from.
#[test]
fn linux_legacy_getdents_matches_native() {
    same_on_image(
        "linux_legacy_getdents_matches_native",
        "getdents",
        &[("etc/a-longer-name-than-the-others.txt", "x\n")],
        "etc",
        "getdents 64: link type 10",
    );
}

#[test]
fn linux_busybox_applets_match_native() {
    let test = "linux_busybox_applets_match_native";
    let Some(bb) = common::kvm_busybox(test) else {
        return;
    };
    let cases: &[(&[&str], &[u8])] = &[
        (&["echo", "hello", "world"], b""),
        (&["echo", "-n", "no newline"], b""),
        (&["seq", "1", "3", "20"], b""),
        (&["printf", "%s=%d %x\\n", "a", "42", "255"], b""),
        (&["true"], b""),
        (&["false"], b""),
        (&["sh", "-c", "x=0; for i in 1 2 3 4; do x=$((x+i)); done; echo sum $x; test $x -eq 10 && echo yes; exit 3"], b""),
        (&["sh", "-c", "read a b; echo \"[$b] [$a]\"; case $a in h*) echo starts-with-h;; esac"], b"hello there\n"),
        (&["cat"], b"line one\nline two\n"),
        (&["wc"], b"one two\nthree\n"),
        (&["sort", "-r"], b"b\na\nc\n"),
        (&["md5sum"], b"abc"),
        (&["tr", "a-z", "A-Z"], b"shout\n"),
        (&["basename", "/usr/lib/libc.a", ".a"], b""),
        (&["expr", "6", "*", "7"], b""),
        (&["head", "-n", "2"], b"1\n2\n3\n"),
    ];
    for (args, input) in cases {
        let n = native(&bb, args, None, input);
        let v = vk(&bb, args, None, input);
        eprintln!("busybox {args:?}: status {}", v.status);
        assert_eq!(v.shown(), n.shown(), "busybox {args:?}");
    }
}

#[test]
fn linux_busybox_reads_the_disk_image() {
    let test = "linux_busybox_reads_the_disk_image";
    let Some(bb) = common::kvm_busybox(test) else {
        return;
    };
    let dir = scratch(test);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("data/deep")).unwrap();
    std::fs::write(root.join("data/a.txt"), "alpha\nbeta\ngamma\n").unwrap();
    std::fs::write(root.join("data/deep/b.txt"), "x".repeat(100_000)).unwrap();
    let image = dir.join("fs.tar");
    if !common::host_tar(&root, &image) {
        linux::fs::build_image(&root, &image).unwrap();
    }
    let cases: &[&[&str]] = &[
        &["cat", "data/a.txt"],
        &["grep", "-n", "eta", "data/a.txt"],
        &["wc", "-c", "data/deep/b.txt"],
        &["ls", "data"],
        &["find", "data", "-name", "*.txt"],
        &[
            "sh",
            "-c",
            "cd data/deep && pwd && read x < ../a.txt && echo first line $x",
        ],
        &["md5sum", "data/deep/b.txt"],
    ];
    for args in cases {
        let n = native(&bb, args, Some(&root), b"");
        let v = vk(&bb, args, Some(&image), b"");
        assert_eq!(n.status, 0, "native {args:?}: {}", n.stdout);
        // `pwd` differs by the root's host path; `find` lists in host
        // directory order.
        let mut n_out = n.stdout.replace(root.to_str().unwrap(), "");
        let mut v_out = v.stdout.clone();
        if args[0] == "find" {
            let sorted = |s: &str| {
                let mut l: Vec<&str> = s.lines().collect();
                l.sort();
                l.join("\n")
            };
            (n_out, v_out) = (sorted(&n_out), sorted(&v_out));
        }
        assert_eq!(v_out, n_out, "busybox {args:?}");
        assert_eq!(v.status, n.status, "busybox {args:?}");
    }
}

#[test]
fn linux_bad_elf_files_give_clear_errors() {
    if !have_kvm("linux_bad_elf_files_give_clear_errors") {
        return;
    }
    let good = linux::elf::tiny_elf(&[0x0f, 0x0b]);
    let mut arm = good.clone();
    arm[18] = 183;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..100].to_vec(), "truncated"),
        (good[..10].to_vec(), "truncated"),
        (arm, "AArch64"),
        (b"#!/bin/sh\necho hi\n".to_vec(), "not an ELF"),
    ];
    for (img, want) in cases {
        let Err(e) = try_vk(img, "bad") else {
            panic!("a bad ELF loaded");
        };
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(matches!(e, VprocError::Elf { .. }));
        assert!(msg.contains(want), "{msg}");
    }
    // A real program cut in the middle of a segment.
    if Path::new(BUSYBOX).exists() {
        let img = std::fs::read(BUSYBOX).unwrap();
        let Err(VprocError::Elf { source, .. }) = try_vk(img[..5000].to_vec(), "bb") else {
            panic!("truncated busybox loaded");
        };
        assert!(matches!(source, ElfError::Truncated { .. }), "{source}");
    }
    // The tiny program itself runs: ud2 kills it with SIGILL.
    assert_eq!(try_vk(good, "ud2").unwrap().status(), 128 + 4);
}
