//! `vkernel-oci`: runc's command line over [`vkernel_oci`]. Errors go to
//! stderr and to `--log` (as runc's, where conmon and the shims look).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use liboci_cli::{CommonCmd, StandardCmd};
use vkernel_oci::cli::{Cli, Cmd};
use vkernel_oci::lifecycle::{self, CreateArgs, LifecycleError};
use vkernel_oci::runexec::{self, ExecArgs};
use vkernel_oci::spawn::LogArgs;

/// What a command ends with: an exit status, or an error to report.
enum Outcome {
    Code(u8),
    Failed(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    vkernel_oci::logfile::init(g.log.as_deref(), g.log_format.as_deref(), g.debug);
    let log = LogArgs {
        file: g.log.clone(),
        format: g.log_format.clone(),
        debug: g.debug,
    };
    let root = g
        .root
        .clone()
        .unwrap_or_else(vkernel_oci::state::default_root);
    let outcome = match cli.cmd {
        Cmd::Init(a) => {
            vkernel::linux::stdio::fill_closed_stdio();
            vkernel::linux::stdio::install_panic_hook();
            match vkernel_oci::init::main(a.fifo.as_deref()) {
                Ok(c) => Outcome::Code(c),
                Err(e) => {
                    let code = e.exit_code();
                    report(&e.to_string());
                    Outcome::Code(code)
                }
            }
        }
        Cmd::Standard(s) => standard(*s, &root, &log),
        Cmd::Common(c) => common(*c, &root, &log),
    };
    match outcome {
        Outcome::Code(c) => ExitCode::from(c),
        Outcome::Failed(msg) => {
            report(&msg);
            ExitCode::from(1)
        }
    }
}

/// An error on stderr and in the log.
fn report(msg: &str) {
    eprintln!("vkernel-oci: {msg}");
    log::error!("{msg}");
}

fn done(r: Result<(), LifecycleError>) -> Outcome {
    match r {
        Ok(()) => Outcome::Code(0),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn print(r: Result<String, LifecycleError>) -> Outcome {
    done(r.map(|s| println!("{s}")))
}

fn standard(cmd: StandardCmd, root: &std::path::Path, log: &LogArgs) -> Outcome {
    match cmd {
        StandardCmd::Create(c) => done(
            lifecycle::create(&CreateArgs {
                root,
                id: &c.container_id,
                bundle: &c.bundle,
                pid_file: c.pid_file.as_deref(),
                console_socket: c.console_socket.as_deref(),
                log,
            })
            .map(drop),
        ),
        StandardCmd::Start(s) => done(lifecycle::start(root, &s.container_id)),
        StandardCmd::State(s) => print(lifecycle::state_json(root, &s.container_id)),
        StandardCmd::Kill(k) => done(lifecycle::kill(root, &k.container_id, &k.signal, k.all)),
        StandardCmd::Delete(d) => done(lifecycle::delete(root, &d.container_id, d.force)),
    }
}

fn common(cmd: CommonCmd, root: &std::path::Path, log: &LogArgs) -> Outcome {
    let code = |r: Result<u8, LifecycleError>| match r {
        Ok(c) => Outcome::Code(c),
        Err(e) if e.exit_code() != 1 => {
            report(&e.to_string());
            Outcome::Code(e.exit_code())
        }
        Err(e) => Outcome::Failed(e.to_string()),
    };
    match cmd {
        CommonCmd::Run(r) => code(runexec::run(
            &CreateArgs {
                root,
                id: &r.container_id,
                bundle: &r.bundle,
                pid_file: r.pid_file.as_deref(),
                console_socket: r.console_socket.as_deref(),
                log,
            },
            r.detach,
            r.keep,
        )),
        CommonCmd::Exec(e) => code(runexec::exec(&ExecArgs {
            root,
            id: &e.container_id,
            process: e.process.as_deref(),
            command: &e.command,
            env: &e.env,
            cwd: e.cwd.as_deref(),
            tty: e.tty,
            user: e.user,
            pid_file: e.pid_file.as_deref(),
            console_socket: e.console_socket.as_deref(),
            detach: e.detach,
            log,
        })),
        CommonCmd::Ps(p) => print(runexec::ps(root, &p.container_id, &p.format)),
        CommonCmd::Features(_) => {
            println!("{}", runexec::features());
            Outcome::Code(0)
        }
        CommonCmd::List(_) => print(list(root)),
        other => Outcome::Failed(format!(
            "{} is not supported by vkernel-oci (no pause, checkpoint, update or events); \
             see docs/OCI.md",
            command_name(&other)
        )),
    }
}

/// The command's name, for "not supported".
fn command_name(c: &CommonCmd) -> &'static str {
    match c {
        CommonCmd::Checkpointt(_) => "checkpoint",
        CommonCmd::Events(_) => "events",
        CommonCmd::Pause(_) => "pause",
        CommonCmd::Resume(_) => "resume",
        CommonCmd::Update(_) => "update",
        CommonCmd::Spec(_) => "spec",
        _ => "this command",
    }
}

/// `list`: the containers under --root, one line each.
fn list(root: &std::path::Path) -> Result<String, LifecycleError> {
    let mut out = String::from("ID\tPID\tSTATUS\tBUNDLE\n");
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(out);
    };
    let mut ids: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    ids.sort();
    for dir in ids {
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Ok(rec) = vkernel_oci::state::Record::load(&dir, &id) {
            let st = lifecycle::status_name(rec.status(&dir));
            out.push_str(&format!(
                "{id}\t{}\t{st}\t{}\n",
                rec.pid,
                rec.bundle.display()
            ));
        }
    }
    Ok(out)
}
