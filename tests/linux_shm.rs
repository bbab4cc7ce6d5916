//! Shared memory in the `vkernel` example's Linux personality (issue 20,
//! items 1 and 2): MAP_SHARED|MAP_ANONYMOUS memory shared across fork
//! (counters under atomics and a process-shared mutex, a cross-process
//! futex wake, MADV_DONTNEED, mprotect and mremap on it), writable
//! MAP_SHARED file mappings in the in-memory overlay and in a `--bind
//! ...:rw` host tree (coherent with pread/pwrite, msync, SIGBUS past EOF,
//! written back by munmap), and sem_open across fork. Each compares with
//! the same program run natively (musl and glibc), and every run asserts
//! that the lost-wake-up watchdog never fired. Tests SKIP loudly without
//! /dev/kvm.

mod common;

use common::{native, scratch, Run};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vkernel::linux::fs::{Bind, Fs, RootSpec};

/// Run `prog args` as the first vproc of a virtual kernel whose root is
/// the host's `/` (read-only, /tmp in memory) plus `binds`, in a thread of
/// its own (a hang fails the test after a generous timeout).
fn vk(prog: &Path, args: &[&str], binds: Vec<Bind>, cpus: usize) -> Run {
    let fs = Fs::new(RootSpec::Host(PathBuf::from("/")), &binds).unwrap();
    let l = common::guest(prog, args, cpus).root(Arc::new(fs));
    common::vk_watched(&common::what(prog, args, cpus), 180, l)
}

/// The whole of shm.c prints what it prints natively, on 1 and 2 vCPUs,
/// musl and glibc: counters of 2,000, the futex wake, the shared file's
/// coherence and write-back, semaphores.
#[test]
fn linux_shm_matches_native() {
    for (cc, p) in common::kvm_guests("linux_shm_matches_native", "shm") {
        let n = native(&p, &[]);
        assert!(
            n.stdout.contains("atomic counter: 2000"),
            "native: {}",
            n.stdout
        );
        common::assert_same_as(&format!("shm ({cc})"), &n, &[1, 2], |cpus| {
            vk(&p, &[], Vec::new(), cpus)
        });
    }
}

/// A writable shared mapping of a file in a `--bind DIR:/mnt:rw` tree:
/// what the child wrote through the mapping, and the second mapping's
/// bytes, reach the host file.
#[test]
fn linux_shm_file_reaches_rw_bind() {
    let test = "linux_shm_file_reaches_rw_bind";
    let Some(p) = common::kvm_guest(test, "shm", "musl-gcc") else {
        return;
    };
    let dir = scratch(test).join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    let n = native(&p, &["file", dir.to_str().unwrap()]);
    assert_eq!(n.status, 0, "native run: {}", n.stdout);
    let n_file = std::fs::read(dir.join("shm-file")).unwrap();
    std::fs::remove_file(dir.join("shm-file")).unwrap();
    let bind = Bind {
        host: dir.clone(),
        guest: b"/mnt".to_vec(),
        writable: true,
    };
    let r = vk(&p, &["file", "/mnt"], vec![bind], 1);
    assert_eq!(r.stdout, n.stdout, "stderr {}", r.stderr);
    let v_file = std::fs::read(dir.join("shm-file")).unwrap();
    assert_eq!(v_file.len(), 8192);
    assert_eq!(&v_file[10..30], b"written by the child");
    assert!(
        v_file == n_file,
        "the host file differs from the native run's"
    );
}

/// The bogo-op counts of stress-ng's stressors live in MAP_SHARED memory
/// its children write: with `--futex` (cross-process futex wakes on
/// shared memory) and `--yield`, every stressor reports work done, as
/// natively (the counts themselves depend on speed and are not
/// compared).
#[test]
fn linux_shm_stress_ng_reports_its_counters() {
    let Some(prog) = common::kvm_tool(
        "linux_shm_stress_ng_reports_its_counters",
        "/usr/bin/stress-ng",
        " (apt-get install stress-ng)",
    ) else {
        return;
    };
    let prog = prog.as_path();
    let args = ["--futex", "1", "--yield", "1", "-t", "2", "--metrics-brief"];
    let r = vk(prog, &args, Vec::new(), 2);
    assert_eq!(r.report.status.code(), 0, "stderr {}", r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    for name in ["futex", "yield"] {
        // "stress-ng: metrc: [PID] futex   BOGO_OPS  REAL ..."
        let ops = all
            .lines()
            .filter(|l| l.contains("metrc:"))
            .find_map(|l| {
                let mut w = l.split_whitespace().skip_while(|w| *w != name);
                w.next()?;
                w.next()?.parse::<u64>().ok()
            })
            .unwrap_or_else(|| panic!("no metrics line for {name}: {all}"));
        assert!(ops > 0, "{name} reported no bogo ops: {all}");
    }
}

/// Python's multiprocessing (a Pool, a Queue: sem_open semaphores in
/// /dev/shm) and mmap of a file shared with a forked child print what
/// they print natively.
#[test]
fn linux_shm_python_multiprocessing_and_mmap_match_native() {
    let test = "linux_shm_python_multiprocessing_and_mmap_match_native";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", "") else {
        return;
    };
    let py = py.as_path();
    let script = scratch(test).join("mp.py");
    std::fs::write(
        &script,
        r#"import mmap, os, multiprocessing as mp
def sq(x):
    return x * x
if __name__ == "__main__":
    fn = "/tmp/vk-shm-py-%d" % os.getpid()
    with open(fn, "wb") as f:
        f.write(b"\0" * 8192)
    with open(fn, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        m[0:5] = b"hello"
        pid = os.fork()
        if pid == 0:
            m[100:105] = b"child"
            os._exit(0)
        os.waitpid(pid, 0)
        print(m[0:5], m[100:105])
        m.flush()
        m.close()
    with open(fn, "rb") as f:
        d = f.read()
        print(d[0:5], d[100:105], len(d))
    os.unlink(fn)
    with mp.Pool(2) as p:
        print(p.map(sq, range(6)))
    q = mp.Queue()
    pr = mp.Process(target=q.put, args=(42,))
    pr.start()
    print(q.get())
    pr.join()
    lock = mp.Lock()
    with lock:
        print("lock held")
"#,
    )
    .unwrap();
    let s = script.to_str().unwrap();
    let n = native(py, &[s]);
    assert_eq!(n.status, 0, "native: {}", n.stdout);
    let r = vk(py, &[s], Vec::new(), 2);
    assert_eq!(r.stdout, n.stdout, "stderr {}", r.stderr);
    assert_eq!(r.report.status.code(), 0);
}
