//! vkernel-oci: a runc-compatible OCI runtime that runs each container in
//! a vkernel, so `podman --runtime vkernel-oci`, Docker (`daemon.json`'s
//! `runtimes`) and containerd (`BinaryName` of the runc shim) run
//! containers whose processes are vprocs on KVM.
//!
//! One container is one vkernel process: `create` starts it (the runtime
//! runs itself again as `vkernel-oci init`), it waits on an exec FIFO in
//! the container's state directory until `start` opens it, then runs the
//! bundle's process as its first vproc through [`vkernel::linux::launch`].
//! The vkernel process's pid is the container's pid; its exit status is
//! the container's. See docs/OCI.md for what of config.json is honoured,
//! ignored or refused.

pub mod cli;
pub mod console;
pub mod execsock;
pub mod hooks;
pub mod init;
pub mod lifecycle;
pub mod logfile;
pub mod plan;
pub mod rootfs;
pub mod runexec;
pub mod signals;
pub mod spawn;
pub mod state;
