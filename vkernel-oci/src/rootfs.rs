//! The container's filesystem in the vkernel: the bundle's root as `/`
//! (read-only, under the in-memory overlay), the mounts of the plan, and
//! the program looked up in it.

use std::sync::Arc;

use vkernel::linux::exec::Image;
use vkernel::linux::fs::{Bind, Fs, Kind, RootSpec, ROOT};

use crate::plan::{MountPlan, Plan};

/// The PATH programs are looked up in when the environment has none
/// (runc's and podman's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors of building the container's filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The root or a bind could not be opened.
    #[error("root filesystem: {0} (check root.path and the bind mounts' sources)")]
    Fs(#[from] vkernel::linux::fs::FsError),
    /// A mount point or a copied file could not be made in the overlay.
    #[error("mount on {guest}: {why} (check the mount's destination)")]
    Mount {
        /// Where.
        guest: String,
        /// What failed.
        why: String,
    },
    /// The program is not in the container.
    #[error("exec: \"{0}\": executable file not found in $PATH (give a program that exists in the image)")]
    NotFound(String),
    /// The program is there but cannot run.
    #[error("exec: \"{path}\": {why}")]
    CannotRun {
        /// The program.
        path: String,
        /// Why.
        why: String,
    },
}

/// Build the container's filesystem from `plan`.
pub fn build(plan: &Plan) -> Result<Arc<Fs>, RootfsError> {
    let binds: Vec<Bind> = plan
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountPlan::BindDir {
                host,
                guest,
                writable,
            } => Some(Bind {
                host: host.clone(),
                guest: guest.as_bytes().to_vec(),
                writable: *writable,
            }),
            _ => None,
        })
        .collect();
    let fs = Arc::new(Fs::new(RootSpec::Host(plan.root.clone()), &binds)?);
    for m in &plan.mounts {
        match m {
            MountPlan::Dir { guest } => {
                mkdir_p(&fs, guest)?;
            }
            MountPlan::CopyFile { host, guest } => copy_file(&fs, host, guest)?,
            MountPlan::BindDir { .. } => {}
        }
    }
    vkernel::linux::net::install_sys_class_net(&fs, None).map_err(|e| RootfsError::Mount {
        guest: "/sys/class/net".into(),
        why: format!("errno {e}"),
    })?;
    Ok(fs)
}

/// Make directory `path` and its parents in the overlay; its handle.
fn mkdir_p(fs: &Fs, path: &str) -> Result<u64, RootfsError> {
    let mut dir = ROOT;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        dir = match fs.resolve(dir, part.as_bytes(), true) {
            Ok(h) => h,
            Err(_) => fs
                .mkdir(dir, part.as_bytes(), 0o755)
                .map_err(|e| RootfsError::Mount {
                    guest: path.to_string(),
                    why: format!("cannot make directory {part}: errno {e}"),
                })?,
        };
    }
    Ok(dir)
}

/// Copy host file `host` into the overlay at `guest`.
fn copy_file(fs: &Fs, host: &std::path::Path, guest: &str) -> Result<(), RootfsError> {
    let err = |why: String| RootfsError::Mount {
        guest: guest.to_string(),
        why,
    };
    let data = std::fs::read(host).map_err(|e| err(format!("{}: {e}", host.display())))?;
    // The host file's permissions: podman's --init binds an executable.
    let mode = std::fs::metadata(host).map_or(0o644, |m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    });
    let (parent, name) = guest.rsplit_once('/').unwrap_or(("", guest));
    let dir = mkdir_p(fs, parent)?;
    let (h, _) = fs
        .create(dir, name.as_bytes(), mode, false)
        .map_err(|e| err(format!("errno {e}")))?;
    fs.truncate(h, 0).map_err(|e| err(format!("errno {e}")))?;
    fs.write(h, Some(0), &data)
        .map_err(|e| err(format!("errno {e}")))?;
    Ok(())
}

/// The PATH of environment `env` (or [`DEFAULT_PATH`]).
pub fn path_of(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// Where `argv0` is: itself when it holds a `/` (relative to `cwd`), else
/// the first PATH entry holding an executable file of that name.
pub fn candidates(argv0: &str, path: &str, cwd: &str) -> Vec<String> {
    if argv0.contains('/') {
        if argv0.starts_with('/') {
            return vec![argv0.to_string()];
        }
        return vec![format!("{}/{argv0}", cwd.trim_end_matches('/'))];
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{argv0}", d.trim_end_matches('/')))
        .collect()
}

/// Find the program `argv0` in `fs`: its image and its path.
pub fn find_program(fs: &Arc<Fs>, plan: &Plan) -> Result<(Image, String), RootfsError> {
    let argv0 = &plan.args[0];
    for cand in candidates(argv0, path_of(&plan.env), &plan.cwd) {
        let Ok(ino) = fs.resolve(ROOT, cand.as_bytes(), true) else {
            continue;
        };
        let node = fs.inode(ino);
        let cannot = |why: &str| RootfsError::CannotRun {
            path: cand.clone(),
            why: why.to_string(),
        };
        match node.kind {
            Kind::File { .. } if node.mode & 0o111 != 0 => {
                return Ok((
                    Image::Disk {
                        fs: fs.clone(),
                        ino,
                    },
                    cand,
                ))
            }
            Kind::File { .. } if argv0.contains('/') => {
                return Err(cannot("permission denied (no execute bit)"))
            }
            Kind::Dir(_) if argv0.contains('/') => return Err(cannot("is a directory")),
            _ => continue,
        }
    }
    Err(RootfsError::NotFound(argv0.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_like_execvp() {
        assert_eq!(candidates("/bin/sh", "/x", "/"), ["/bin/sh"]);
        assert_eq!(candidates("./a", "/x", "/work/"), ["/work/./a"]);
        assert_eq!(
            candidates("sh", "/usr/bin::/bin/", "/"),
            ["/usr/bin/sh", "/bin/sh"]
        );
        let env = vec!["A=1".to_string(), "PATH=/p".to_string()];
        assert_eq!(path_of(&env), "/p");
        assert_eq!(path_of(&[]), DEFAULT_PATH);
    }
}
