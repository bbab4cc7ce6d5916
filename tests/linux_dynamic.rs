//! The distribution's own, dynamically linked programs (/bin/ls, sort,
//! sha256sum, dash, python3 importing json and hashlib) run under the
//! Linux personality and print what they print natively (posix_spawn
//! too): PT_INTERP, the dynamic loader's mmap of libraries
//! through the shared page cache, file-backed mmap semantics (a C guest
//! compared with native Linux), frames of a library shared between
//! processes (memstat), and clear errors for broken loaders and programs.
//!
//! Until the root filesystem work lands the vproc sees a tar image: each
//! test builds one from the host's programs, their loader and the
//! libraries `ldd` lists, at their host paths. Tests SKIP loudly without
//! /dev/kvm, ldd or the programs.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use vkernel::linux;

mod common;

use common::{have_kvm, image_root, in_time, Native, Out};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use vkernel::core::memstat::{MemStats, PageEntry};
use vkernel::core::prelude::*;

use linux::elf::Elf;
use linux::exec::Image;
use linux::fs::Fs;
use linux::launch::Launch;
use linux::load::{find_interp, InterpError};
use linux::mm::Mm;
use linux::{Config, VprocError};

/// The programs the image holds (with their loader and libraries).
const PROGRAMS: &[&str] = &[
    "/bin/ls",
    "/usr/bin/sort",
    "/usr/bin/sha256sum",
    "/bin/dash",
    "/bin/true",
    "/bin/cat",
    "/usr/bin/wc",
    "/usr/bin/tr",
    "/usr/bin/head",
];

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The shared libraries (and loader) `ldd prog` names, by absolute path.
fn ldd(prog: &str) -> Option<Vec<String>> {
    let out = Command::new("ldd").arg(prog).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(p.to_string());
        }
    }
    Some(libs)
}

fn copy_in(stage: &Path, host: &str) {
    let dst = stage.join(host.trim_start_matches('/'));
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    // Follow symlinks: the real file's bytes at the host path.
    std::fs::copy(host, &dst).unwrap_or_else(|e| panic!("copy {host}: {e}"));
}

/// Fixed test data under stage/data, with fixed modes and mtimes.
fn data(stage: &Path) {
    let d = stage.join("data");
    std::fs::create_dir_all(&d).unwrap();
    let words = "pear\napple\nfig\nbanana\ncherry\napple\nkiwi\n";
    std::fs::write(d.join("words"), words).unwrap();
    for i in 1..=3u32 {
        let bytes: Vec<u8> = (0..i * 3000).map(|x| (x * 7 + i) as u8).collect();
        std::fs::write(d.join(format!("f{i}")), bytes).unwrap();
    }
    // Not a page multiple: the zero tail and SIGBUS past it.
    let r: Vec<u8> = (0..9000u32)
        .map(|x| (x.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("r9000"), r).unwrap();
    std::fs::set_permissions(d.join("f2"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let st = Command::new("touch")
        .args(["-d", "2020-01-02 03:04:05"])
        .args(["words", "f1", "f2", "f3", "r9000"])
        .current_dir(&d)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A staging directory with the programs, loader, libraries and data,
/// and its tar image; None (after a loud SKIP) when ldd or a program is
/// missing, or /dev/kvm is. `skip_loader` leaves the loader out.
fn stage(test: &str, skip_loader: bool) -> Option<(PathBuf, PathBuf)> {
    if !have_kvm(test) {
        return None;
    }
    let dir = common::scratch(test);
    let stage = dir.join("root");
    let mut files = Vec::new();
    for p in PROGRAMS {
        if !Path::new(p).exists() {
            common::skip(
                test,
                &format!("{p} not found (a Debian-like host is needed)"),
            );
            return None;
        }
        let Some(libs) = ldd(p) else {
            common::skip(test, &format!("ldd {p} failed (install libc-bin)"));
            return None;
        };
        files.push(p.to_string());
        files.extend(libs);
    }
    files.sort();
    files.dedup();
    for f in &files {
        if skip_loader && f == LOADER {
            continue;
        }
        copy_in(&stage, f);
    }
    data(&stage);
    let img = dir.join("fs.tar");
    linux::fs::build_image(&stage, &img).expect("build the tar image");
    Some((stage, img))
}

fn host_image(prog: &Path) -> Image {
    let file = std::fs::File::open(prog).unwrap();
    let size = file.metadata().unwrap().len();
    Image::Host {
        file: Arc::new(file),
        size,
    }
}

/// The environment of every run here.
const PATH: &str = "PATH=/usr/bin:/bin";

fn config(prog: &str, args: &[&str]) -> Config {
    let mut argv = vec![prog.as_bytes().to_vec()];
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    Config {
        image: Vec::new(),
        path: prog.into(),
        exe: prog.into(),
        argv,
        envp: vec![PATH.as_bytes().to_vec()],
        fault_around: 16,
        trace: false,
    }
}

/// `prog` (a host file, known by the path given) with [`PATH`].
fn launch(image: Image, prog: &str) -> Launch {
    Launch::program(image, prog).env([PATH])
}

/// Run `prog args` as the first vproc of a virtual kernel whose root is
/// the image `img` (the program's own file comes from the host).
fn vk(img: &Path, prog: &str, args: &[&str]) -> Result<Out, VprocError> {
    let l = launch(host_image(Path::new(prog)), prog)
        .args(args)
        .root(image_root(img));
    in_time(&format!("vkernel {prog} {args:?}"), 120, move || {
        let machine = l.machine().expect("a machine on /dev/kvm");
        Ok(common::try_vk_on(&machine, l, b"")?.out())
    })
}

/// Run `prog args` natively in `cwd` with the same environment.
fn native(cwd: &Path, prog: &str, args: &[&str]) -> Out {
    Native::new(prog).args(args).env([PATH]).cwd(cwd).run()
}

/// `ls -l`'s "total" line counts allocated blocks, which the tar image
/// and the host's filesystem allocate differently.
fn without_totals(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("total "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn dynamic_programs_match_native() {
    let test = "dynamic_programs_match_native";
    let Some((stage, img)) = stage(test, false) else {
        return;
    };
    let pipeline = "sort data/words | sha256sum; ls data | sort -r | head -n 3; \
                    cat data/words | tr a-z A-Z | wc -l; ls data/missing 2>/dev/null; echo ls=$?";
    let cases: &[(&str, &[&str])] = &[
        ("/bin/true", &[]),
        ("/bin/ls", &["-ln", "data"]),
        ("/bin/ls", &["-a", "data"]),
        ("/usr/bin/sort", &["data/words"]),
        ("/usr/bin/sort", &["-r", "-u", "data/words"]),
        ("/usr/bin/sha256sum", &["data/words", "data/f1", "data/f3"]),
        ("/usr/bin/sort", &["data/nonexistent"]),
        ("/bin/dash", &["-c", pipeline]),
        ("/bin/dash", &["-c", "exit 3"]),
    ];
    for (prog, args) in cases {
        let want = native(&stage, prog, args);
        let mut got = vk(&img, prog, args)
            .unwrap_or_else(|e| panic!("vkernel {prog} {args:?} failed to start: {e}"));
        let mut want_out = want.stdout.clone();
        if *prog == "/bin/ls" {
            got.stdout = without_totals(&got.stdout);
            want_out = without_totals(&want_out);
        }
        assert_eq!(
            (got.stdout.as_str(), got.status),
            (want_out.as_str(), want.status),
            "{prog} {args:?}: vkernel stderr:\n{}\nnative stderr:\n{}",
            got.stderr,
            want.stderr
        );
    }
}

#[test]
fn file_mmap_matches_native() {
    let test = "file_mmap_matches_native";
    let Some(guest) = common::kvm_guest(test, "filemap", "musl-gcc") else {
        return;
    };
    let Some((stage, img)) = stage(test, false) else {
        return;
    };
    let prog = guest.display().to_string();
    let want = native(&stage, &prog, &["data/r9000"]);
    assert_eq!(want.status, 0, "native filemap: {}", want.stderr);
    let got = vk(&img, &prog, &["data/r9000"]).expect("vkernel runs filemap");
    assert_eq!(
        (got.stdout.as_str(), got.status),
        (want.stdout.as_str(), want.status),
        "vkernel stderr:\n{}",
        got.stderr
    );
    assert!(want.stdout.contains("past eof signal 7"), "{}", want.stdout);
}

/// Load `prog` (dynamic, from the image) into `mm` and touch every page
/// of its file mappings, as running it would.
fn load_and_touch(mm: &mut Mm, fs: &Arc<Fs>, prog: &str) {
    let ino = fs.resolve(linux::fs::ROOT, prog.as_bytes(), true).unwrap();
    let image = Image::Disk {
        fs: fs.clone(),
        ino,
    };
    let elf = Elf::read(&image).unwrap();
    let interp = find_interp(fs, &elf).unwrap().expect("a dynamic program");
    mm.reset().unwrap();
    let src = image.source();
    linux::load_program(
        mm,
        &elf,
        &image,
        src.as_ref(),
        Some(&interp),
        &config(prog, &[]),
    )
    .unwrap();
    let areas: Vec<(u64, u64)> = mm
        .vmas()
        .filter(|(_, v)| v.file.is_some())
        .map(|(s, v)| (s, v.end))
        .collect();
    assert!(areas.len() >= 4, "file areas of {prog} and its loader");
    for (s, e) in areas {
        for va in (s..e).step_by(4096) {
            let mut b = [0u8];
            mm.read(va, &mut b).unwrap();
        }
    }
}

#[test]
fn library_frames_are_shared_between_processes() {
    let test = "library_frames_are_shared_between_processes";
    let Some((_, img)) = stage(test, false) else {
        return;
    };
    let machine = Machine::builder().ram_size(128 << 20).build().unwrap();
    let fs = image_root(&img);
    let mut a = Mm::new(&machine).unwrap();
    // A forked address space shares the frame allocator and page cache.
    let mut b = a.fork(machine.vmspace_create().unwrap()).unwrap();
    load_and_touch(&mut a, &fs, "/bin/true");
    let after_first = a.page_cache().stats();
    assert!(after_first.fills > 0);
    load_and_touch(&mut b, &fs, "/bin/true");
    let after_second = b.page_cache().stats();
    assert_eq!(
        after_second.fills, after_first.fills,
        "the second process read no file page again"
    );
    assert!(after_second.hits >= after_first.fills);
    let m = MemStats::collect_named(&[(a.vmspace(), "a"), (b.vmspace(), "b")]).unwrap();
    for u in m.usages() {
        assert!(
            u.shared_pages as f64 >= after_first.fills as f64 * 0.9,
            "{}: {} shared pages, {} file pages",
            u.name,
            u.shared_pages,
            after_first.fills
        );
        assert!(
            u.pss_pages < u.rss_pages as f64,
            "{}: PSS {} RSS {}",
            u.name,
            u.pss_pages,
            u.rss_pages
        );
    }
    // The same frame backs the loader's last read-only file page in both
    // (writable data segments get private copies at exec).
    let va = a
        .vmas()
        .filter(|(_, v)| v.file.is_some() && v.prot & linux::mm::PROT_WRITE == 0)
        .map(|(s, _)| s)
        .max()
        .unwrap();
    let fa = m.pagemap(m.usages()[0].id).unwrap();
    let fb = m.pagemap(m.usages()[1].id).unwrap();
    let at = |p: &[PageEntry]| p.iter().find(|e| e.va == va).map(|e| e.frame);
    assert!(at(&fa).is_some());
    assert_eq!(at(&fa), at(&fb));
}

/// Page faults that reached the vkernel (exits) while `dash` ran
/// `/bin/true` `n` times.
fn faults_running_true(img: &Path, n: usize) -> u64 {
    let list: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let script = format!("for i in {}; do /bin/true; done; echo done", list.join(" "));
    let l = launch(host_image(Path::new("/bin/dash")), "/bin/dash")
        .args(["-c", script.as_str()])
        .root(image_root(img));
    in_time(&format!("{n} runs of /bin/true"), 120, move || {
        let machine = l.machine().expect("a machine on /dev/kvm");
        let r = common::try_vk_on(&machine, l, b"").expect("the virtual kernel runs");
        assert_eq!(r.stdout, "done\n", "{}", r.stderr);
        r.report.cpu_stats.iter().map(|s| s.page_faults).sum()
    })
}

/// A dynamic program started again finds its libraries in the page cache:
/// the loader's segment mappings get their pages (code and read-only data
/// mapped, writable data copied) and hardware entries at once, and so do
/// its small anonymous mappings (libc's bss, the loader's own), the small
/// read-only file it maps (ld.so.cache), the first segment of a library's
/// reservation (its headers and symbols), the program's bss, stack and
/// first heap pages: a run of `/bin/true` after the first costs at most a
/// few page faults that exit (none measured). Before, each run took about
/// 24 (one per 16 pages of libc's code and read-only data it touched, one
/// per data page it wrote), then 5 (session 13).
#[test]
fn library_segments_come_from_the_page_cache_without_faults() {
    let test = "library_segments_come_from_the_page_cache_without_faults";
    let Some((_, img)) = stage(test, false) else {
        return;
    };
    let one = faults_running_true(&img, 1);
    let eleven = faults_running_true(&img, 11);
    let per_run = eleven.saturating_sub(one) as f64 / 10.0;
    eprintln!("{test}: {one} faults for 1 run, {eleven} for 11: {per_run} per run");
    assert!(
        per_run <= 3.0,
        "{per_run} page faults reached the vkernel per run of /bin/true"
    );
}

#[test]
fn broken_loaders_and_programs_fail_clearly() {
    let test = "broken_loaders_and_programs_fail_clearly";
    // No loader in the image.
    let Some((stage, img)) = stage(test, true) else {
        return;
    };
    let e = vk(&img, "/bin/true", &[]).expect_err("no loader: an error");
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            VprocError::Interp {
                source: InterpError::NotFound { .. },
                ..
            }
        ) && msg.contains(LOADER)
            && msg.contains("--disk"),
        "{msg}"
    );
    // The command line says the same and exits 127, as a shell would.
    let out = Command::new(common::example_binary("vkernel"))
        .args(["run", "--disk"])
        .arg(&img)
        .arg("/bin/true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(err.contains(LOADER) && err.contains("ldd"), "{err}");
    // A truncated loader.
    let loader = std::fs::read(LOADER).unwrap();
    let ldst = stage.join(LOADER.trim_start_matches('/'));
    std::fs::create_dir_all(ldst.parent().unwrap()).unwrap();
    std::fs::write(&ldst, &loader[..1000]).unwrap();
    let img2 = stage.parent().unwrap().join("fs2.tar");
    linux::fs::build_image(&stage, &img2).unwrap();
    let e = vk(&img2, "/bin/true", &[]).expect_err("truncated loader");
    assert!(
        matches!(
            e,
            VprocError::Interp {
                source: InterpError::Elf { .. },
                ..
            }
        ) && e.to_string().contains("truncated"),
        "{e}"
    );
    // A loader whose program headers point past its end.
    let mut bad = loader.clone();
    bad[32..40].copy_from_slice(&(loader.len() as u64).to_le_bytes());
    std::fs::write(&ldst, &bad).unwrap();
    linux::fs::build_image(&stage, &img2).unwrap();
    let e = vk(&img2, "/bin/true", &[]).expect_err("bad loader phdrs");
    assert!(e.to_string().contains("program header"), "{e}");
    // The loader is a directory.
    std::fs::remove_file(&ldst).unwrap();
    std::fs::create_dir(&ldst).unwrap();
    linux::fs::build_image(&stage, &img2).unwrap();
    let e = vk(&img2, "/bin/true", &[]).expect_err("loader is a directory");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // An ET_DYN program with bad program headers: corrupt PT_INTERP,
    // phentsize too small, a segment past the end of the file.
    let prog = std::fs::read("/bin/true").unwrap();
    let ph = u64::from_le_bytes(prog[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(prog[56..58].try_into().unwrap()) as usize;
    let find = |t: u32| {
        (0..phnum)
            .map(|i| ph + i * 56)
            .find(|&o| u32::from_le_bytes(prog[o..o + 4].try_into().unwrap()) == t)
            .unwrap()
    };
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut p = prog.clone();
    let interp = find(3);
    p[interp + 8..interp + 16].copy_from_slice(&(prog.len() as u64 - 10).to_le_bytes());
    cases.push((p, "interpreter"));
    let mut p = prog.clone();
    p[54..56].copy_from_slice(&20u16.to_le_bytes());
    cases.push((p, "smaller than 56"));
    let mut p = prog.clone();
    let load = find(1);
    p[load + 8..load + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push((p, "truncated"));
    for (bytes, want) in cases {
        let e = Elf::parse(&bytes).expect_err("a broken program");
        assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
    }
    // execve of a dynamic program whose loader is missing: ENOENT, the
    // shell says "not found" (127), as on Linux.
    if Path::new("/bin/busybox").exists() {
        let out = vk(&img, "/bin/busybox", &["sh", "-c", "/bin/true; echo $?"]).unwrap();
        assert_eq!(out.stdout, "127\n", "{}", out.stderr);
        assert_eq!(out.status, 0);
    } else {
        common::skip(test, "/bin/busybox not found: the execve case is not run");
    }
}

#[test]
fn posix_spawn_of_a_dynamic_shell_matches_native() {
    let test = "posix_spawn_of_a_dynamic_shell_matches_native";
    if !have_kvm(test) {
        return;
    }
    // Dynamically linked against the host's glibc, like the programs.
    let Some(guest) = common::compile_linked(test, "spawn", "gcc", "-pie") else {
        return;
    };
    let Some((stage, img)) = stage(test, false) else {
        return;
    };
    let prog = guest.display().to_string();
    let want = native(&stage, &prog, &[]);
    assert_eq!(want.status, 0, "native spawn: {}", want.stderr);
    let got = vk(&img, &prog, &[]).expect("vkernel runs spawn");
    assert_eq!(
        (got.stdout.as_str(), got.status),
        (want.stdout.as_str(), want.status),
        "vkernel stderr:\n{}",
        got.stderr
    );
}

/// A static ELF whose data segment starts in the page where its code
/// ends (same page, congruent offsets): code reads data[0] (37), a BSS
/// byte of the next page (0), writes 5 just past the data's file bytes
/// in the shared page and exits with the sum (42).
fn shared_page_elf() -> Vec<u8> {
    let base = 0x40_0000u64;
    let hdr = 64 + 2 * 56u64;
    let code_len = 48u64;
    let data_off = hdr + code_len;
    let data_va = base + data_off;
    let mut code = Vec::new();
    let abs = |v: u64| (v as u32).to_le_bytes();
    code.extend([0x0f, 0xb6, 0x3c, 0x25]); // movzx edi, byte [data]
    code.extend(abs(data_va));
    code.extend([0x0f, 0xb6, 0x04, 0x25]); // movzx eax, byte [data+0x1000]
    code.extend(abs(data_va + 0x1000));
    code.extend([0x01, 0xc7]); // add edi, eax
    code.extend([0xc6, 0x04, 0x25]); // mov byte [data+8], 5
    code.extend(abs(data_va + 8));
    code.push(5);
    code.extend([0x0f, 0xb6, 0x04, 0x25]); // movzx eax, byte [data+8]
    code.extend(abs(data_va + 8));
    code.extend([0x01, 0xc7]); // add edi, eax
    code.extend([0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05]); // exit_group(edi)
    code.resize(code_len as usize, 0x90);
    let mut f = common::elf_headers(
        base + hdr,
        &[
            (5, 0, base, data_off, data_off),
            (6, data_off, data_va, 8, 0x2000),
        ],
    );
    f.extend_from_slice(&code);
    f.extend_from_slice(&[37, 0, 0, 0, 0, 0, 0, 0]);
    // Garbage after the data's file bytes, in the same page.
    f.extend_from_slice(&[0xaa; 64]);
    f
}

#[test]
fn segments_sharing_a_page_load_from_a_file_and_from_memory() {
    let test = "segments_sharing_a_page_load_from_a_file_and_from_memory";
    if !have_kvm(test) {
        return;
    }
    let elf = shared_page_elf();
    let path = common::scratch(test).join("shared-page");
    std::fs::write(&path, &elf).unwrap();
    let prog = path.display().to_string();
    for image in [host_image(&path), Image::Bytes(Arc::new(elf.clone()))] {
        let what = format!("{image:?}");
        let prog = prog.clone();
        let l = launch(image, &prog).ram(64 << 20);
        let status = in_time(&what, 120, move || common::vk(l, b"").report.status);
        assert_eq!(status, linux::ExitStatus::Exited(42), "{what}");
    }
}

const PYTHON: &str = "/usr/bin/python3";

/// Copy the directory tree `src` (a host path) into the stage, leaving out
/// the parts of the Python library no test imports.
fn copy_tree(stage: &Path, src: &Path) {
    const SKIP: &[&str] = &[
        "test",
        "idlelib",
        "tkinter",
        "ensurepip",
        "lib2to3",
        "__pycache__",
        "site-packages",
        "dist-packages",
    ];
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if SKIP.contains(&name.as_str()) || name.starts_with("config-") {
            continue;
        }
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(stage, &p);
        } else if p.is_file() {
            // A file, or a symlink to one: its bytes.
            copy_in(stage, &p.display().to_string());
        }
    }
}

/// Python: its interpreter, libraries, standard library and the
/// libraries of its extension modules.
fn stage_python(test: &str) -> Option<(PathBuf, PathBuf)> {
    let Ok(real) = std::fs::canonicalize(PYTHON) else {
        common::skip(
            test,
            &format!("{PYTHON} not found (apt-get install python3)"),
        );
        return None;
    };
    let name = real.file_name().unwrap().to_string_lossy().into_owned();
    let lib = Path::new("/usr/lib").join(&name);
    let (Some(libs), true) = (ldd(PYTHON), lib.join("os.py").exists()) else {
        common::skip(
            test,
            &format!("ldd {PYTHON} failed or {} is missing", lib.display()),
        );
        return None;
    };
    let dir = common::scratch(test);
    let stage = dir.join("root");
    copy_in(&stage, &real.display().to_string());
    for l in libs {
        copy_in(&stage, &l);
    }
    copy_tree(&stage, &lib);
    for e in std::fs::read_dir(lib.join("lib-dynload"))
        .unwrap()
        .flatten()
    {
        for l in ldd(&e.path().display().to_string()).unwrap_or_default() {
            if !stage.join(l.trim_start_matches('/')).exists() {
                copy_in(&stage, &l);
            }
        }
    }
    let img = dir.join("fs.tar");
    linux::fs::build_image(&stage, &img).expect("build the tar image");
    Some((real, img))
}

#[test]
fn python_imports_json_and_hashlib_like_native() {
    let test = "python_imports_json_and_hashlib_like_native";
    if !have_kvm(test) {
        return;
    }
    let Some((python, img)) = stage_python(test) else {
        return;
    };
    let python = python.display().to_string();
    let script = "import json, hashlib, sys\n\
                  d = {'k': [1, 2.5, None], 'h': hashlib.sha256(b'abc').hexdigest()}\n\
                  print(json.dumps(d, sort_keys=True))\n\
                  print(hashlib.md5(b'x' * 100000).hexdigest(), sys.version_info[:2])\n\
                  sys.exit(3)";
    let want = native(Path::new("/"), &python, &["-c", script]);
    assert_eq!(want.status, 3, "native python: {}", want.stderr);
    let got = vk(&img, &python, &["-c", script]).expect("vkernel runs python");
    assert_eq!(
        (got.stdout.as_str(), got.status),
        (want.stdout.as_str(), want.status),
        "vkernel stderr:\n{}",
        got.stderr
    );
}
