//! Extended attributes of the tree's nodes, as tmpfs keeps them: in
//! memory, by node, in the `user.`, `trusted.` and `security.`
//! namespaces (every vproc is root, so `trusted.` is open to all).
//! They live as long as the virtual kernel; a host file's own attributes
//! are not shown (the overlay never reaches the host).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// XATTR_CREATE: fail if the attribute exists.
pub const XATTR_CREATE: u32 = 1;
/// XATTR_REPLACE: fail if it does not.
pub const XATTR_REPLACE: u32 = 2;
/// Longest attribute name (Linux's XATTR_NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Largest value (Linux's XATTR_SIZE_MAX).
pub const SIZE_MAX: usize = 65536;
/// Longest list a listxattr returns (Linux's XATTR_LIST_MAX).
pub const LIST_MAX: usize = 65536;

/// Errors of the attribute calls (errnos for the vproc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XattrError {
    /// No such attribute (ENODATA).
    #[error("no such attribute")]
    NoData,
    /// It exists and XATTR_CREATE was given (EEXIST).
    #[error("attribute exists")]
    Exists,
    /// A namespace this tree does not keep (EOPNOTSUPP).
    #[error("namespace not supported")]
    NotSupported,
    /// A name empty or too long, or a buffer too small (ERANGE).
    #[error("out of range")]
    Range,
    /// A value too large (E2BIG).
    #[error("value too large")]
    TooBig,
    /// Unknown flags (EINVAL).
    #[error("invalid flags")]
    Invalid,
    /// user.* on something other than a file or directory (EPERM).
    #[error("not permitted")]
    NotPermitted,
}

impl XattrError {
    /// The errno.
    pub fn errno(self) -> i64 {
        (match self {
            XattrError::NoData => libc::ENODATA,
            XattrError::Exists => libc::EEXIST,
            XattrError::NotSupported => libc::EOPNOTSUPP,
            XattrError::Range => libc::ERANGE,
            XattrError::TooBig => libc::E2BIG,
            XattrError::Invalid => libc::EINVAL,
            XattrError::NotPermitted => libc::EPERM,
        }) as i64
    }
}

/// Check an attribute name: its namespace is kept, its length in range.
/// `plain` says the node is a regular file or directory (user.* needs
/// one).
pub fn check_name(name: &[u8], plain: bool) -> Result<(), XattrError> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(XattrError::Range);
    }
    let ns = ["user.", "trusted.", "security."]
        .into_iter()
        .find(|p| name.starts_with(p.as_bytes()) && name.len() > p.len());
    match ns {
        None => Err(XattrError::NotSupported),
        Some("user.") if !plain => Err(XattrError::NotPermitted),
        Some(_) => Ok(()),
    }
}

/// The attributes of every node that has some.
///
/// ```
/// use vkernel_linux::fs::xattr::Xattrs;
/// let x = Xattrs::default();
/// x.set(7, b"user.a", b"1", 0).unwrap();
/// assert_eq!(x.get(7, b"user.a").unwrap(), b"1");
/// assert_eq!(x.list(7), b"user.a\0");
/// ```
#[derive(Debug, Default)]
pub struct Xattrs {
    by_node: Mutex<HashMap<u64, Attrs>>,
}

/// One node's attributes by name.
type Attrs = BTreeMap<Vec<u8>, Vec<u8>>;

impl Xattrs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Attrs>> {
        self.by_node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// setxattr on node `h` (name checked by the caller).
    pub fn set(&self, h: u64, name: &[u8], value: &[u8], flags: u32) -> Result<(), XattrError> {
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(XattrError::Invalid);
        }
        if value.len() > SIZE_MAX {
            return Err(XattrError::TooBig);
        }
        let mut m = self.lock();
        let attrs = m.entry(h).or_default();
        let exists = attrs.contains_key(name);
        if exists && flags & XATTR_CREATE != 0 {
            return Err(XattrError::Exists);
        }
        if !exists && flags & XATTR_REPLACE != 0 {
            return Err(XattrError::NoData);
        }
        let listed: usize = attrs.keys().map(|k| k.len() + 1).sum();
        if !exists && listed + name.len() + 1 > LIST_MAX {
            return Err(XattrError::NotSupported);
        }
        attrs.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    /// getxattr on node `h`.
    pub fn get(&self, h: u64, name: &[u8]) -> Result<Vec<u8>, XattrError> {
        self.lock()
            .get(&h)
            .and_then(|a| a.get(name))
            .cloned()
            .ok_or(XattrError::NoData)
    }

    /// removexattr on node `h`.
    pub fn remove(&self, h: u64, name: &[u8]) -> Result<(), XattrError> {
        let mut m = self.lock();
        let a = m.get_mut(&h).ok_or(XattrError::NoData)?;
        a.remove(name).ok_or(XattrError::NoData)?;
        if a.is_empty() {
            m.remove(&h);
        }
        Ok(())
    }

    /// listxattr on node `h`: the names, each ended by a NUL.
    pub fn list(&self, h: u64) -> Vec<u8> {
        let m = self.lock();
        let mut out = Vec::new();
        for k in m.get(&h).into_iter().flat_map(|a| a.keys()) {
            out.extend_from_slice(k);
            out.push(0);
        }
        out
    }

    /// Node `h` is gone: its attributes too.
    pub fn forget(&self, h: u64) {
        self.lock().remove(&h);
    }
}

impl super::Fs {
    /// The extended attributes of the tree's nodes.
    pub fn xattrs(&self) -> &Xattrs {
        &self.xattrs
    }

    /// An attribute of node `h` changed: its ctime moves.
    pub fn touch_ctime(&self, h: u64) {
        if let Ok(n) = self.lock().get_mut(h) {
            n.meta.ctime = super::node::Ts::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_decide_between_create_and_replace() {
        let x = Xattrs::default();
        assert_eq!(
            x.set(1, b"user.k", b"v", XATTR_REPLACE),
            Err(XattrError::NoData)
        );
        x.set(1, b"user.k", b"v", XATTR_CREATE).unwrap();
        assert_eq!(
            x.set(1, b"user.k", b"w", XATTR_CREATE),
            Err(XattrError::Exists)
        );
        x.set(1, b"user.k", b"w", XATTR_REPLACE).unwrap();
        assert_eq!(x.get(1, b"user.k").unwrap(), b"w");
        assert_eq!(x.set(1, b"user.k", b"w", 4), Err(XattrError::Invalid));
        x.remove(1, b"user.k").unwrap();
        assert_eq!(x.remove(1, b"user.k"), Err(XattrError::NoData));
        assert!(x.list(1).is_empty());
    }

    #[test]
    fn names_are_checked_by_namespace_and_length() {
        assert_eq!(check_name(b"user.a", true), Ok(()));
        assert_eq!(check_name(b"trusted.a", false), Ok(()));
        assert_eq!(check_name(b"user.a", false), Err(XattrError::NotPermitted));
        assert_eq!(check_name(b"user.", true), Err(XattrError::NotSupported));
        assert_eq!(check_name(b"foo.a", true), Err(XattrError::NotSupported));
        assert_eq!(check_name(b"", true), Err(XattrError::Range));
        let long = [b'a'; 300];
        assert_eq!(check_name(&long, true), Err(XattrError::Range));
    }

    #[test]
    fn values_are_bounded_and_lists_are_sorted() {
        let x = Xattrs::default();
        assert_eq!(
            x.set(2, b"user.big", &vec![0; SIZE_MAX + 1], 0),
            Err(XattrError::TooBig)
        );
        x.set(2, b"user.b", b"", 0).unwrap();
        x.set(2, b"user.a", b"1", 0).unwrap();
        assert_eq!(x.list(2), b"user.a\0user.b\0");
        x.forget(2);
        assert!(x.list(2).is_empty());
    }
}
