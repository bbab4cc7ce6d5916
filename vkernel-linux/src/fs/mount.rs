//! What the tree is built from: the root ([`RootSpec`]) and the host
//! directories exposed on purpose ([`Bind`]).

use std::path::PathBuf;

use super::{components, FsError};
use crate::devices::Disk;

/// What the root is.
pub enum RootSpec {
    /// Nothing but the synthetic directories and /tmp.
    Empty,
    /// A tar image.
    Tar(Disk),
    /// A host directory, read-only (`/` by default).
    Host(PathBuf),
}

/// A host directory exposed on purpose (`--bind HOST[:GUEST][:rw]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The host directory.
    pub host: PathBuf,
    /// Where the vproc sees it (absolute).
    pub guest: Vec<u8>,
    /// Writes reach the host.
    pub writable: bool,
}

impl Bind {
    /// Parse `HOST[:GUEST][:rw|:ro]` (GUEST defaults to HOST).
    pub fn parse(arg: &str) -> Result<Bind, FsError> {
        let bad = |why: &str| FsError::BindSyntax {
            arg: arg.to_string(),
            why: why.to_string(),
        };
        let mut parts: Vec<&str> = arg.split(':').collect();
        let mut writable = false;
        if parts.len() > 1 && matches!(*parts.last().unwrap_or(&""), "rw" | "ro") {
            writable = parts.pop() == Some("rw");
        }
        let (host, guest) = match parts[..] {
            [h] => (h, h),
            [h, g] => (h, g),
            _ => return Err(bad("too many `:`")),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(bad("an empty path"));
        }
        if !guest.starts_with('/') {
            return Err(bad("GUEST must be an absolute path"));
        }
        if components(guest.as_bytes()).is_empty() {
            return Err(bad("binding over / is what --root does"));
        }
        if components(guest.as_bytes()).contains(&&b".."[..]) {
            return Err(bad("GUEST may not contain `..`"));
        }
        Ok(Bind {
            host: PathBuf::from(host),
            guest: guest.as_bytes().to_vec(),
            writable,
        })
    }
}
