//! Extended attributes: get/set/list/remove on a path (following the
//! last link or not) or an fd, kept by the tree ([`crate::fs::xattr`]).

use super::errno::*;
use super::table::Handler;
use super::{int, AT_FDCWD, R};
use crate::fs::xattr::{check_name, XattrError};
use crate::fs::{proc_item, Kind};
use crate::Vproc;

/// Which object an attribute call names.
#[derive(Clone, Copy)]
enum Target {
    /// A path; follow a last symlink?
    Path(u64, bool),
    /// An open fd.
    Fd(i64),
}

impl Vproc {
    /// The extended-attribute calls: `(number, handler)` for the syscall
    /// table ([`super::table`]).
    pub(super) const XATTR_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_getxattr, |v, _nr, a| {
            v.sys_getxattr(Target::Path(a[0], true), a[1], a[2], a[3])
        }),
        (libc::SYS_lgetxattr, |v, _nr, a| {
            v.sys_getxattr(Target::Path(a[0], false), a[1], a[2], a[3])
        }),
        (libc::SYS_fgetxattr, |v, _nr, a| {
            v.sys_getxattr(Target::Fd(int(a[0])), a[1], a[2], a[3])
        }),
        (libc::SYS_setxattr, |v, _nr, a| {
            v.sys_setxattr(Target::Path(a[0], true), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_lsetxattr, |v, _nr, a| {
            v.sys_setxattr(Target::Path(a[0], false), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_fsetxattr, |v, _nr, a| {
            v.sys_setxattr(Target::Fd(int(a[0])), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_listxattr, |v, _nr, a| {
            v.sys_listxattr(Target::Path(a[0], true), a[1], a[2])
        }),
        (libc::SYS_llistxattr, |v, _nr, a| {
            v.sys_listxattr(Target::Path(a[0], false), a[1], a[2])
        }),
        (libc::SYS_flistxattr, |v, _nr, a| {
            v.sys_listxattr(Target::Fd(int(a[0])), a[1], a[2])
        }),
        (libc::SYS_removexattr, |v, _nr, a| {
            v.sys_removexattr(Target::Path(a[0], true), a[1])
        }),
        (libc::SYS_lremovexattr, |v, _nr, a| {
            v.sys_removexattr(Target::Path(a[0], false), a[1])
        }),
        (libc::SYS_fremovexattr, |v, _nr, a| {
            v.sys_removexattr(Target::Fd(int(a[0])), a[1])
        }),
    ];

    /// The node a call names and whether it is a plain file or
    /// directory. Objects outside the tree (pipes, sockets, `/proc`)
    /// keep no attributes: EOPNOTSUPP.
    fn xattr_node(&mut self, t: Target) -> Result<(u64, bool), i64> {
        let h = match t {
            Target::Path(p, follow) => {
                let p = self.user_path(p)?;
                self.lookup_at(AT_FDCWD, &p, follow)?
            }
            Target::Fd(fd) => self.fd_handle(fd, EOPNOTSUPP)?,
        };
        if proc_item(h).is_some() {
            return Err(EOPNOTSUPP);
        }
        let plain = matches!(self.fs.inode(h).kind, Kind::File { .. } | Kind::Dir(_));
        Ok((h, plain))
    }

    /// An attribute name from the vproc (ERANGE when too long).
    fn xattr_name(&mut self, p: u64) -> Result<Vec<u8>, i64> {
        if p == 0 {
            return Err(EFAULT);
        }
        self.mm
            .read_cstr(p, crate::fs::xattr::NAME_MAX + 1)
            .map_err(|e| match e {
                crate::mm::MmError::Invalid => ERANGE,
                e => e.errno(),
            })
    }

    /// Copy `data` out for a get/list call: its size when `size` is 0,
    /// ERANGE when it does not fit.
    fn xattr_out(&mut self, data: &[u8], buf: u64, size: u64) -> R {
        if size == 0 {
            return Ok(data.len() as i64);
        }
        if usize::try_from(size).is_ok_and(|s| s < data.len()) {
            return Err(ERANGE);
        }
        self.mm.write(buf, data)?;
        Ok(data.len() as i64)
    }

    fn sys_getxattr(&mut self, t: Target, name: u64, buf: u64, size: u64) -> R {
        let (h, plain) = self.xattr_node(t)?;
        let name = self.xattr_name(name)?;
        check_name(&name, true).map_err(XattrError::errno)?;
        if !plain && name.starts_with(b"user.") {
            return Err(ENODATA);
        }
        let v = self.fs.xattrs().get(h, &name).map_err(XattrError::errno)?;
        self.xattr_out(&v, buf, size)
    }

    fn sys_setxattr(&mut self, t: Target, name: u64, value: u64, size: u64, flags: u64) -> R {
        let (h, plain) = self.xattr_node(t)?;
        let name = self.xattr_name(name)?;
        check_name(&name, plain).map_err(XattrError::errno)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= crate::fs::xattr::SIZE_MAX)
            .ok_or(E2BIG)?;
        let v = if size > 0 {
            self.mm.read_vec(value, size)?
        } else {
            Vec::new()
        };
        self.fs
            .xattrs()
            .set(h, &name, &v, super::uint32(flags))
            .map_err(XattrError::errno)?;
        self.fs.touch_ctime(h);
        Ok(0)
    }

    fn sys_listxattr(&mut self, t: Target, buf: u64, size: u64) -> R {
        let (h, _) = self.xattr_node(t)?;
        let list = self.fs.xattrs().list(h);
        self.xattr_out(&list, buf, size)
    }

    fn sys_removexattr(&mut self, t: Target, name: u64) -> R {
        let (h, plain) = self.xattr_node(t)?;
        let name = self.xattr_name(name)?;
        check_name(&name, plain).map_err(XattrError::errno)?;
        self.fs
            .xattrs()
            .remove(h, &name)
            .map_err(XattrError::errno)?;
        self.fs.touch_ctime(h);
        Ok(0)
    }
}
