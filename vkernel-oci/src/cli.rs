//! runc's command line: liboci-cli's subcommands and global options, the
//! few runc global options liboci-cli lacks, and the hidden `init` the
//! runtime runs as the container's vkernel process.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};

/// `--version`'s text after the name, in runc's shape (`runc version X`,
/// then `spec: V`), which Docker's `info` reads.
const VERSION: &str = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2");

/// `vkernel-oci [GLOBAL OPTIONS] COMMAND`.
#[derive(Parser, Debug)]
#[command(
    name = "vkernel-oci",
    version = VERSION,
    about = "A runc-compatible OCI runtime that runs each container in a vkernel (vprocs on KVM)"
)]
pub struct Cli {
    /// runc's global options.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// runc's `--log-level` (accepted; `--debug` gives the notes).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// runc's `--rootless` (accepted and ignored: the vkernel needs no
    /// privileges beyond /dev/kvm).
    #[arg(long, global = true)]
    pub rootless: Option<String>,
    /// runc's `--criu` (accepted and ignored: no checkpoints).
    #[arg(long, global = true)]
    pub criu: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// The OCI commands: create, start, state, kill, delete.
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    /// runc's others: run, exec, ps, features...
    #[command(flatten)]
    Common(Box<CommonCmd>),
    /// The container's vkernel process (run by `create`, `run` and `exec`;
    /// not for people).
    #[command(hide = true)]
    Init(InitArgs),
}

/// `init`'s arguments.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Wait on this FIFO for `start`.
    #[arg(long)]
    pub fifo: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn conmons_and_the_shims_command_lines_parse() {
        let c = parse(&[
            "vkernel-oci",
            "--root",
            "/run/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--console-socket",
            "/s",
            "ctr1",
        ]);
        assert_eq!(c.global.root, Some(PathBuf::from("/run/r")));
        assert!(c.global.systemd_cgroup);
        match c.cmd {
            Cmd::Standard(s) => match *s {
                StandardCmd::Create(cr) => {
                    assert_eq!(cr.container_id, "ctr1");
                    assert_eq!(cr.console_socket, Some(PathBuf::from("/s")));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let c = parse(&["vkernel-oci", "kill", "--all", "c", "KILL"]);
        assert!(
            matches!(c.cmd, Cmd::Standard(s) if matches!(&*s, StandardCmd::Kill(k) if k.all && k.signal == "KILL"))
        );
        let c = parse(&[
            "vkernel-oci",
            "exec",
            "--detach",
            "--pid-file",
            "/p",
            "--process",
            "/proc.json",
            "c",
        ]);
        assert!(matches!(c.cmd, Cmd::Common(x) if matches!(&*x, CommonCmd::Exec(e) if e.detach)));
        let c = parse(&["vkernel-oci", "exec", "-t", "c", "sh", "-c", "echo hi"]);
        assert!(
            matches!(c.cmd, Cmd::Common(x) if matches!(&*x, CommonCmd::Exec(e) if e.command == ["sh", "-c", "echo hi"]))
        );
        let c = parse(&["vkernel-oci", "delete", "--force", "c"]);
        assert!(
            matches!(c.cmd, Cmd::Standard(s) if matches!(&*s, StandardCmd::Delete(d) if d.force))
        );
        parse(&["vkernel-oci", "features"]);
        parse(&["vkernel-oci", "--rootless", "false", "state", "c"]);
        parse(&["vkernel-oci", "init", "--fifo", "/f"]);
        assert!(Cli::try_parse_from(["vkernel-oci", "frobnicate"]).is_err());
    }
}
