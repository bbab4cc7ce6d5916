//! Seeded mutation fuzzing of the `vkernel` example's program loader and
//! tar image reader (issue 12, item 20): mutated real binaries and mutated
//! archives get a clean error or a consistent result, never a panic or an
//! unbounded allocation. The number of cases per target is
//! VKERNEL_FUZZ_CASES (default: a short CI budget), the seed
//! VKERNEL_FUZZ_SEED; a failing case is kept in a file for replay.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use vkernel::linux;

mod common;

use common::{bss_elf, have_kvm, scratch};

use std::cell::Cell;

use vkernel::core::prelude::*;
use vkernel::devices::Disk;

use linux::elf::{tiny_elf, Elf, ReadAt, MAX_PHDR_BYTES, USER_LIMIT};
use linux::fs::{Fs, Kind, ROOT};
use linux::mm::{Mm, PAGE};
use linux::Config;

// ---------------------------------------------------------------------
// Helpers

/// The example binary cargo test built next to this test.
/// xorshift64*: a small seeded generator (reproducible cases).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn fuzz_cases(default: u64) -> u64 {
    std::env::var("VKERNEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fuzz_seed() -> u64 {
    std::env::var("VKERNEL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001)
        | 1
}

/// Interesting values for integer fields.
fn interesting(rng: &mut Rng, size: u64) -> u64 {
    let v = [
        0,
        1,
        0x1000,
        0xfff,
        size,
        size.wrapping_add(1),
        size.wrapping_sub(1),
        u64::MAX,
        u64::MAX - 0xfff,
        1 << 63,
        i64::MAX as u64,
        0x7fff_ffff_f000,
        USER_LIMIT,
        USER_LIMIT - 0x1000,
        0x8000_0000,
        0xffff_ffff,
        0x40_0000,
        0x5555_5555_4000,
    ];
    if rng.chance(30) {
        rng.next()
    } else {
        v[rng.below(v.len() as u64) as usize]
    }
}

/// Generic byte-level mutations: flips, sets, block copies, truncation.
fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    match rng.below(6) {
        0 => {
            let i = rng.below(b.len() as u64) as usize;
            b[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(b.len() as u64) as usize;
            b[i] = [0, 0xff, 0x7f, 0x80, b'/', b'.', b'0', b'7'][rng.below(8) as usize];
        }
        2 => {
            let len = b.len() as u64;
            let (i, j) = (rng.below(len), rng.below(len));
            let n = rng.below(64).min(len - i).min(len - j) as usize;
            let chunk = b[i as usize..i as usize + n].to_vec();
            b[j as usize..j as usize + n].copy_from_slice(&chunk);
        }
        3 => {
            let n = rng.below(b.len() as u64) as usize;
            b.truncate(n);
        }
        4 => {
            let i = rng.below(b.len() as u64) as usize;
            let n = rng.below(16) as usize;
            b.splice(i..i, std::iter::repeat_n(rng.next() as u8, n));
        }
        _ => {
            let i = rng.below(b.len() as u64) as usize;
            let n = (rng.below(8) as usize + 1).min(b.len() - i);
            for x in &mut b[i..i + n] {
                *x = rng.next() as u8;
            }
        }
    }
}

/// A ReadAt over bytes that records the largest single read and the total.
struct Counting<'a> {
    data: &'a [u8],
    largest: Cell<u64>,
    total: Cell<u64>,
}

impl ReadAt for Counting<'_> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.largest.set(self.largest.get().max(buf.len() as u64));
        self.total.set(self.total.get() + buf.len() as u64);
        self.data.read_exact_at(offset, buf)
    }
}

/// Mutate an ELF file: mostly its ELF and program headers.
fn mutate_elf(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    let size = b.len() as u64;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes([b[56], b[57]]) as usize;
    for _ in 0..=rng.below(4) {
        if b.len() < 64 {
            break;
        }
        match rng.below(10) {
            // A field of a program header.
            0..=4 if phnum > 0 => {
                let i = rng.below(phnum as u64) as usize;
                let field = [0usize, 4, 8, 16, 24, 32, 40, 48][rng.below(8) as usize];
                let at = phoff + i * 56 + field;
                if field < 8 && at + 4 <= b.len() {
                    let v = if field == 0 {
                        [0u32, 1, 3, 6, 0x6474_e551, 7][rng.below(6) as usize]
                    } else {
                        rng.below(8) as u32
                    };
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                } else if at + 8 <= b.len() {
                    let v = interesting(rng, size);
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            // A field of the ELF header.
            5 | 6 => {
                let (at, w) = [(16, 2), (18, 2), (24, 8), (32, 8), (54, 2), (56, 2), (4, 1)]
                    [rng.below(7) as usize];
                let v = interesting(rng, size).to_le_bytes();
                b[at..at + w].copy_from_slice(&v[..w]);
            }
            _ => mutate_bytes(rng, &mut b),
        }
    }
    b
}

/// Compile tests/guests/NAME.c with musl-gcc (or `cc -static` where
/// musl-tools are missing); None if there is no C compiler at all.
fn musl(test: &str, name: &str) -> Option<Vec<u8>> {
    if !["musl-gcc", "cc", "gcc"].iter().any(|c| common::have_cc(c)) {
        eprintln!("{test}: no C compiler found; fuzzing without the {name} guest");
        return None;
    }
    common::compile(test, name, "musl-gcc").map(|p| std::fs::read(p).unwrap())
}

/// Save a failing input where the message says.
fn keep(test: &str, case: u64, data: &[u8]) -> String {
    let p = scratch(test).join(format!("case-{case}"));
    std::fs::write(&p, data).unwrap();
    p.display().to_string()
}

#[test]
fn fuzz_elf_loader_with_mutated_binaries() {
    let test = "fuzz_elf_loader_with_mutated_binaries";
    let mut bases: Vec<(String, Vec<u8>)> = vec![
        ("tiny".into(), tiny_elf(&[0x0f, 0x05])),
        ("bss".into(), bss_elf()),
    ];
    if let Ok(b) = std::fs::read("/bin/busybox") {
        bases.push(("busybox".into(), b));
    } else {
        eprintln!("{test}: /bin/busybox not found; fuzzing without it");
    }
    if let Some(h) = musl(test, "hello") {
        bases.push(("hello".into(), h));
    }
    for (name, b) in &bases {
        Elf::parse(b).unwrap_or_else(|e| panic!("base {name} must parse: {e}"));
    }
    // Loading needs a vmspace; without /dev/kvm only the parser is fuzzed.
    let machine = if have_kvm(test) {
        Some(
            Machine::builder()
                .ram_size(64 << 20)
                .build()
                .expect("a machine on /dev/kvm"),
        )
    } else {
        None
    };
    let mut mm = machine.as_ref().map(|m| Mm::new(m).expect("an Mm"));
    let cfg = Config {
        image: Vec::new(),
        path: "/fuzz".into(),
        exe: "/fuzz".into(),
        argv: vec![b"fuzz".to_vec()],
        envp: vec![b"A=B".to_vec()],
        fault_around: 16,
        trace: false,
    };
    let cases = fuzz_cases(400);
    let seed = fuzz_seed();
    let mut rng = Rng(seed);
    let (mut parsed, mut loaded) = (0, 0);
    for case in 0..cases {
        let (name, base) = &bases[(case % bases.len() as u64) as usize];
        let data = mutate_elf(&mut rng, base);
        let file = Counting {
            data: &data,
            largest: Cell::new(0),
            total: Cell::new(0),
        };
        let what = || format!("case {case} (seed {seed}, base {name})");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Elf::read(&file)));
        let Ok(r) = r else {
            panic!(
                "{}: the parser panicked; input kept at {}",
                what(),
                keep(test, case, &data)
            );
        };
        assert!(
            file.largest.get() <= 64 + MAX_PHDR_BYTES,
            "{}: the parser read {} bytes at once",
            what(),
            file.largest.get()
        );
        let Ok(elf) = r else {
            let e = r.unwrap_err();
            assert!(!e.to_string().is_empty());
            continue;
        };
        parsed += 1;
        let size = data.len() as u64;
        let mut file_bytes = 0;
        for s in &elf.segments {
            assert!(s.filesz <= s.memsz, "{}: {s:?}", what());
            assert!(
                s.offset + s.filesz <= size,
                "{}: {s:?} past the file",
                what()
            );
            assert!(s.vaddr + s.memsz <= USER_LIMIT, "{}: {s:?}", what());
            file_bytes += s.filesz;
        }
        assert!(
            elf.segments
                .iter()
                .any(|s| s.vaddr <= elf.entry && elf.entry < s.vaddr + s.memsz),
            "{}: entry outside the segments",
            what()
        );
        let Some(mm) = mm.as_mut() else {
            continue;
        };
        mm.reset().expect("reset");
        file.total.set(0);
        file.largest.set(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            linux::load_image(mm, &elf, &file, &cfg)
        }));
        let Ok(r) = r else {
            panic!(
                "{}: the loader panicked; input kept at {}",
                what(),
                keep(test, case, &data)
            );
        };
        if r.is_ok() {
            loaded += 1;
        }
        // Reads are page sized and cover the segments' file bytes only;
        // only pages with file bytes, the stack and the zeroed pages the
        // loader gives a writable segment's bss at once (at most
        // PREFILL_DATA_PAGES a segment) got frames, whatever the memory
        // sizes say.
        assert!(file.largest.get() <= PAGE, "{}", what());
        assert!(file.total.get() <= file_bytes, "{}", what());
        let pages = mm.resident_pages() as u64;
        let writable = elf.segments.iter().filter(|s| s.flags & 2 != 0).count() as u64;
        let bound = file_bytes / PAGE
            + 2 * elf.segments.len() as u64
            + 16
            + writable * linux::mm::PREFILL_DATA_PAGES as u64
            + linux::load::STACK_PREFILL_PAGES as u64;
        assert!(
            pages <= bound,
            "{}: {pages} resident pages after loading ({bound} allowed): BSS was not demand-zero",
            what()
        );
    }
    eprintln!("{test}: {cases} cases (seed {seed}): {parsed} parsed, {loaded} loaded");
    // The budget must reach both outcomes (a fuzzer that only produces
    // garbage tests nothing).
    assert!(parsed > 0 && parsed < cases, "{parsed} of {cases} parsed");
}

/// One raw tar header block with `name`, `typ`, `size`, `link`.
fn raw_header(name: &[u8], typ: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().unwrap();
        let n = name.len().min(100);
        u.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        u.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_mode(0o755);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(typ));
    h.set_cksum();
    *h.as_bytes()
}

/// A small archive with directories, files, symlinks, a hard link, a long
/// name, PAX records, and hostile names (`..`, absolute, escaping links).
fn base_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, typ: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(typ);
        h.set_mode(if typ.is_dir() { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    add("bin/", tar::EntryType::Directory, b"", None);
    add("bin/prog", tar::EntryType::Regular, &[0x90; 3000], None);
    add("bin/sh", tar::EntryType::Symlink, b"", Some("prog"));
    add("etc/hello", tar::EntryType::Regular, b"hello", None);
    add("etc/empty", tar::EntryType::Regular, b"", None);
    add("etc/hard", tar::EntryType::Link, b"", Some("etc/hello"));
    add("etc/dirlink", tar::EntryType::Link, b"", Some("bin"));
    add(
        "esc",
        tar::EntryType::Symlink,
        b"",
        Some("../../../../etc/passwd"),
    );
    let long = format!("deep/{}/file", "d".repeat(120));
    add(&long, tar::EntryType::Regular, b"long name", None);
    b.append_pax_extensions([
        ("path", &b"pax/named/file"[..]),
        ("size", &b"4"[..]),
        ("mtime", &b"12345.5"[..]),
    ])
    .unwrap();
    common::append_ustar(&mut b, "short", b"pax!", 0o644);
    let mut out = b.into_inner().unwrap();
    // Names the tar crate refuses to write.
    let end = out.len() - 1024; // before the two zero blocks
    let mut extra = Vec::new();
    for (name, typ, data, link) in [
        (&b"../escape"[..], b'0', &b"out"[..], &b""[..]),
        (b"/abs/file", b'0', b"abs", b""),
        (b"a/../../b", b'0', b"x", b""),
        (b"hl-esc", b'1', b"", b"../../etc/passwd"),
        (b"./dot/./file", b'0', b"dot", b""),
    ] {
        extra.extend_from_slice(&raw_header(name, typ, data.len() as u64, link));
        let mut d = data.to_vec();
        d.resize(data.len().div_ceil(512) * 512, 0);
        extra.extend_from_slice(&d);
    }
    out.splice(end..end, extra);
    out
}

/// Offsets of the header blocks of a well-formed archive.
fn header_offsets(t: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 512 <= t.len() && t[at..at + 512].iter().any(|&b| b != 0) {
        v.push(at);
        let size = std::str::from_utf8(&t[at + 124..at + 135])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches(|c| c == '\0' || c == ' '), 8).ok())
            .unwrap_or(0);
        at += 512 + (size as usize).div_ceil(512) * 512;
    }
    v
}

fn set_cksum(t: &mut [u8], at: usize) {
    t[at + 148..at + 156].fill(b' ');
    let sum: u32 = t[at..at + 512].iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    t[at + 148..at + 156].copy_from_slice(s.as_bytes());
}

/// Mutate a tar archive: mostly header fields (sizes, types, names, link
/// names; the checksum fixed most of the time) and PAX records.
fn mutate_tar(rng: &mut Rng, base: &[u8], headers: &[usize]) -> Vec<u8> {
    let mut t = base.to_vec();
    for _ in 0..=rng.below(3) {
        let at = headers[rng.below(headers.len() as u64) as usize];
        if at + 512 > t.len() {
            mutate_bytes(rng, &mut t);
            continue;
        }
        match rng.below(10) {
            // Size: octal digits, a huge value, base-256, garbage.
            0 | 1 => {
                let v = interesting(rng, t.len() as u64);
                let field: Vec<u8> = match rng.below(4) {
                    0 => format!("{:011o}\0", v & 0o77777777777).into_bytes(),
                    1 => {
                        let mut f = vec![0x80u8, 0, 0, 0];
                        f.extend_from_slice(&v.to_be_bytes());
                        f
                    }
                    2 => b"99999999999\0".to_vec(),
                    _ => (0..12).map(|_| rng.next() as u8).collect(),
                };
                t[at + 124..at + 136].copy_from_slice(&field);
            }
            // Type flag.
            2 => {
                t[at + 156] = b"0125LKxgSD7\0"[rng.below(12) as usize];
            }
            // Name or link name.
            3 | 4 => {
                let names: [&[u8]; 8] = [
                    b"..",
                    b"../../x",
                    b"bin/../..",
                    b"/",
                    b"bin/prog/x",
                    b"etc",
                    b"a//b/./c",
                    b"bin",
                ];
                let n = names[rng.below(names.len() as u64) as usize];
                let off = if rng.chance(50) { 0 } else { 157 };
                t[at + off..at + off + 100].fill(0);
                t[at + off..at + off + n.len()].copy_from_slice(n);
            }
            // PAX records in the data block of an extension header.
            5 | 6 => {
                let keys = ["size", "path", "linkpath", "mtime", "uid"];
                let vals = [
                    "999999999999999999".to_string(),
                    "18446744073709551615".to_string(),
                    "-1".to_string(),
                    "../../../etc/passwd".to_string(),
                    "".to_string(),
                    format!("{}", rng.below(1 << 20)),
                    "bin".to_string(),
                ];
                let k = keys[rng.below(keys.len() as u64) as usize];
                let v = &vals[rng.below(vals.len() as u64) as usize];
                let body = format!(" {k}={v}\n");
                let mut len = body.len() + 1;
                if len + 1 >= 10 {
                    len += 1;
                }
                let len = if rng.chance(80) {
                    len
                } else {
                    rng.below(1000) as usize
                };
                let rec = format!("{len}{body}");
                let mut h = tar::Header::new_ustar();
                h.set_path("PaxHeaders/x").unwrap();
                h.set_size(rec.len() as u64);
                h.set_entry_type(tar::EntryType::XHeader);
                h.set_cksum();
                let mut block = h.as_bytes().to_vec();
                let mut d = rec.into_bytes();
                d.resize(d.len().div_ceil(512) * 512, 0);
                block.extend_from_slice(&d);
                t.splice(at..at, block);
            }
            _ => mutate_bytes(rng, &mut t),
        }
        if at + 512 <= t.len() && rng.chance(85) {
            set_cksum(&mut t, at);
        }
    }
    t
}

/// Walk a mounted filesystem: a tree (no directory twice), every file's
/// bytes readable in full, every path resolving back.
fn walk(fs: &Fs) -> Result<(), String> {
    fs.check()?;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![ROOT];
    let mut buf = vec![0u8; 1 << 16];
    while let Some(d) = stack.pop() {
        if !seen.insert(d) {
            return Err(format!("directory {d} reached twice: not a tree"));
        }
        let p = fs.path_of(d);
        if fs.resolve(ROOT, &p, false) != Ok(d) {
            return Err(format!(
                "{:?} does not resolve to {d}",
                String::from_utf8_lossy(&p)
            ));
        }
        for (name, ino) in fs.entries(d) {
            if name == b"." || name == b".." {
                continue;
            }
            let node = fs.inode(ino);
            match &node.kind {
                Kind::Dir(_) => stack.push(ino),
                Kind::File { .. } => {
                    let mut pos = 0;
                    loop {
                        let n = fs
                            .read(ino, pos, &mut buf)
                            .map_err(|e| format!("reading inode {ino}: errno {e}"))?;
                        if n == 0 {
                            break;
                        }
                        pos += n as u64;
                    }
                    if pos != node.size {
                        return Err(format!("inode {ino}: read {pos} of {} bytes", node.size));
                    }
                }
                Kind::Symlink(_) => {
                    // Following it ends inside the tree or fails cleanly.
                    let mut path = fs.path_of(d);
                    path.push(b'/');
                    path.extend_from_slice(&name);
                    if let Ok(t) = fs.resolve(ROOT, &path, true) {
                        fs.inode(t);
                    }
                }
                Kind::CharDev(_) | Kind::Special | Kind::Fifo(_) | Kind::Socket(_) => {}
            }
        }
    }
    // `..` never climbs above the root.
    if fs.resolve(ROOT, b"/../../..", true) != Ok(ROOT) {
        return Err("/../../.. is not the root".into());
    }
    Ok(())
}

#[test]
fn fuzz_tar_reader_with_mutated_archives() {
    let test = "fuzz_tar_reader_with_mutated_archives";
    let dir = scratch(test);
    let base = base_tar();
    let headers = header_offsets(&base);
    assert!(headers.len() > 10, "{headers:?}");
    // The base itself mounts, consistently, without the hostile names.
    let img = dir.join("base.tar");
    std::fs::write(&img, &base).unwrap();
    let fs = Fs::mount(Disk::open_read_only(&img).unwrap()).expect("the base archive mounts");
    walk(&fs).expect("the base archive is consistent");
    for ok in [
        &b"/bin/sh"[..],
        b"/etc/hard",
        b"/pax/named/file",
        b"/abs/file",
        b"/dot/file",
    ] {
        let ino = fs
            .resolve(ROOT, ok, true)
            .unwrap_or_else(|e| panic!("{}: errno {e}", String::from_utf8_lossy(ok)));
        assert!(matches!(fs.inode(ino).kind, Kind::File { .. }));
    }
    assert_eq!(
        fs.resolve(ROOT, b"/escape", true),
        Err(2),
        "`..` entry skipped"
    );
    assert_eq!(fs.resolve(ROOT, b"/b", true), Err(2), "`..` entry skipped");
    let dl = fs.resolve(ROOT, b"/etc/dirlink", false);
    assert!(dl.is_err(), "no hard link to a directory: {dl:?}");
    drop(fs);

    let cases = fuzz_cases(400);
    let seed = fuzz_seed();
    let mut rng = Rng(seed);
    let (mut mounted, mut refused) = (0, 0);
    let path = dir.join("case.tar");
    for case in 0..cases {
        let data = mutate_tar(&mut rng, &base, &headers);
        std::fs::write(&path, &data).unwrap();
        let what = || format!("case {case} (seed {seed})");
        let r = std::panic::catch_unwind(|| {
            let disk = Disk::open_read_only(&path).map_err(|e| e.to_string())?;
            match Fs::mount(disk) {
                Ok(fs) => walk(&fs)
                    .map(|_| true)
                    .map_err(|e| format!("inconsistent: {e}")),
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    Ok(false)
                }
            }
        });
        match r {
            Ok(Ok(true)) => mounted += 1,
            Ok(Ok(false)) => refused += 1,
            Ok(Err(e)) => panic!("{}: {e}; input kept at {}", what(), keep(test, case, &data)),
            Err(_) => panic!(
                "{}: panicked; input kept at {}",
                what(),
                keep(test, case, &data)
            ),
        }
    }
    eprintln!("{test}: {cases} cases (seed {seed}): {mounted} mounted, {refused} refused");
    assert!(
        mounted > 0 && refused > 0,
        "{mounted} mounted, {refused} refused"
    );
}
