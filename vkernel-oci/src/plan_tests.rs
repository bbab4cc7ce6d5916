//! Unit tests of config.json translation (no KVM).

use super::*;

/// podman's config.json for `podman run --network none --memory 96m
/// --cpus 1.5 --ulimit nofile=1024:1024 IMAGE sh -c 'exit 3'`, cut down.
fn podman_spec(extra_linux: &str, mounts: &str) -> Spec {
    let json = format!(
        r#"{{
        "ociVersion": "1.0.2-dev",
        "process": {{
            "user": {{"uid": 0, "gid": 0, "umask": 18}},
            "args": ["sh", "-c", "exit 3"],
            "env": ["TERM=xterm", "PATH=/usr/bin:/bin", "HOSTNAME=abc"],
            "cwd": "/work",
            "capabilities": {{"bounding": ["CAP_CHOWN"]}},
            "rlimits": [{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}},
                        {{"type": "RLIMIT_NPROC", "hard": 100, "soft": 100}}]
        }},
        "root": {{"path": "rootfs", "readonly": true}},
        "hostname": "abc",
        "mounts": [
            {{"destination": "/proc", "type": "proc", "source": "proc"}},
            {{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}},
            {{"destination": "/dev/pts", "type": "devpts", "source": "devpts"}},
            {{"destination": "/sys", "type": "sysfs", "source": "sysfs"}},
            {{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}},
            {{"destination": "/run", "type": "tmpfs", "source": "tmpfs"}}
            {mounts}
        ],
        "linux": {{
            "namespaces": [{{"type": "pid"}}, {{"type": "network"}}, {{"type": "mount"}}],
            "resources": {{
                "memory": {{"limit": 100663296}},
                "cpu": {{"quota": 150000, "period": 100000}},
                "pids": {{"limit": 77}}
            }},
            "seccomp": {{"defaultAction": "SCMP_ACT_ERRNO"}}
            {extra_linux}
        }}
    }}"#
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

#[test]
fn podmans_config_becomes_a_plan() {
    let p = Plan::from_spec(&podman_spec("", ""), Path::new("/bundle")).unwrap();
    assert_eq!(p.root, PathBuf::from("/bundle/rootfs"));
    assert_eq!(p.args, ["sh", "-c", "exit 3"]);
    assert_eq!(p.env[1], "PATH=/usr/bin:/bin");
    assert_eq!(p.cwd, "/work");
    assert!(!p.terminal);
    assert_eq!(p.hostname.as_deref(), Some("abc"));
    assert_eq!(p.mem, 96 << 20);
    assert_eq!(p.cpus, 2);
    assert_eq!(p.max_procs, 77);
    assert!(p.new_netns);
    assert_eq!(
        p.rlimits,
        [
            Rlimit {
                resource: libc::RLIMIT_NOFILE,
                soft: 512,
                hard: 1024
            },
            Rlimit {
                resource: libc::RLIMIT_NPROC,
                soft: 100,
                hard: 100
            }
        ]
    );
    // proc, /dev, devpts, sysfs and cgroup are the vkernel's own; a tmpfs
    // elsewhere is a directory in the overlay.
    assert_eq!(
        p.mounts,
        [MountPlan::Dir {
            guest: "/run".into()
        }]
    );
    let notes = p.notes.join("\n");
    for ignored in ["capabilities", "seccomp", "namespaces", "root.readonly"] {
        assert!(notes.contains(ignored), "{ignored} not noted in:\n{notes}");
    }
}

#[test]
fn binds_of_directories_files_and_others() {
    let dir = std::env::temp_dir().join(format!("vkoci-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts"), "127.0.0.1 x\n").unwrap();
    let d = dir.display();
    let mounts = format!(
        r#", {{"destination": "/data", "type": "bind", "source": "{d}", "options": ["rbind", "ro"]}}
           , {{"destination": "/rw", "source": "{d}", "options": ["bind"]}}
           , {{"destination": "/etc/hosts", "type": "bind", "source": "{d}/hosts", "options": ["bind"]}}
           , {{"destination": "/dev/null2", "type": "bind", "source": "/dev/null", "options": ["bind"]}}"#
    );
    let p = Plan::from_spec(&podman_spec("", &mounts), Path::new("/b")).unwrap();
    assert_eq!(
        p.mounts[1..],
        [
            MountPlan::BindDir {
                host: dir.clone(),
                guest: "/data".into(),
                writable: false
            },
            MountPlan::BindDir {
                host: dir.clone(),
                guest: "/rw".into(),
                writable: true
            },
            MountPlan::CopyFile {
                host: dir.join("hosts"),
                guest: "/etc/hosts".into()
            },
        ]
    );
    assert!(p.notes.join("\n").contains("/dev/null2"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refused_fields_say_what_to_do() {
    let nfs = r#", {"destination": "/n", "type": "nfs", "source": "h:/x"}"#;
    let e = Plan::from_spec(&podman_spec("", nfs), Path::new("/b")).unwrap_err();
    assert!(matches!(&e, PlanError::Mount { typ, .. } if typ == "nfs"));
    assert!(e.to_string().contains("remove it"));
    let rel = r#", {"destination": "rel", "type": "tmpfs"}"#;
    assert!(matches!(
        Plan::from_spec(&podman_spec("", rel), Path::new("/b")),
        Err(PlanError::RelativeMount(_))
    ));
    let mut spec = podman_spec("", "");
    let mut linux = spec.linux().clone().unwrap();
    let ns: Vec<oci_spec::runtime::LinuxNamespace> =
        serde_json::from_str(r#"[{"type": "network", "path": "/run/netns/x"}]"#).unwrap();
    linux.set_namespaces(Some(ns));
    spec.set_linux(Some(linux));
    let e = Plan::from_spec(&spec, Path::new("/b")).unwrap_err();
    assert!(e.to_string().contains("--network none"), "{e}");
    let mut spec = podman_spec("", "");
    spec.set_process(None);
    assert_eq!(
        Plan::from_spec(&spec, Path::new("/b")),
        Err(PlanError::NoProcess)
    );
}

#[test]
fn users_and_defaults() {
    let mut spec = podman_spec("", "");
    let mut process = spec.process().clone().unwrap();
    process.user_mut().set_uid(1000);
    process.set_rlimits(None);
    process.set_terminal(Some(true));
    spec.set_process(Some(process));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_resources(None);
    spec.set_linux(Some(linux));
    let p = Plan::from_spec(&spec, Path::new("/b")).unwrap();
    assert!(p.terminal);
    assert_eq!((p.uid, p.gid), (1000, 0));
    assert_eq!(
        (p.mem, p.cpus, p.max_procs),
        (DEFAULT_MEM, 1, DEFAULT_MAX_PROCS)
    );
    assert!(p.rlimits.is_empty());
}

#[test]
fn cpus_from_quota_and_cpusets() {
    assert_eq!(cpus_of(None, None, None), 1);
    assert_eq!(cpus_of(Some(50_000), Some(100_000), None), 1);
    assert_eq!(cpus_of(Some(250_000), Some(100_000), None), 3);
    assert_eq!(cpus_of(Some(-1), Some(100_000), Some("0-3")), 4);
    assert_eq!(cpus_of(Some(800_000), Some(100_000), Some("0,2")), 2);
    assert_eq!(cpus_of(None, None, Some("0-1000")), MAX_CPUS);
    assert_eq!(cpuset_size("0-3,6"), Some(5));
    assert_eq!(cpuset_size(""), None);
    assert_eq!(cpuset_size("3-1"), None);
    assert_eq!(cpuset_size("x"), None);
}

#[test]
fn a_small_memory_limit_still_boots() {
    let spec = podman_spec("", "");
    let mut linux = spec.linux().clone().unwrap();
    let r: oci_spec::runtime::LinuxResources =
        serde_json::from_str(r#"{"memory": {"limit": 4096}}"#).unwrap();
    linux.set_resources(Some(r));
    let mut spec = spec;
    spec.set_linux(Some(linux));
    assert_eq!(
        Plan::from_spec(&spec, Path::new("/b")).unwrap().mem,
        MIN_MEM
    );
}
