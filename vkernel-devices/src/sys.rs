//! Small fd helpers shared by the drivers (nix-based, no unsafe).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// `read(2)` that retries on EINTR. `WouldBlock` is returned as an error.
pub(crate) fn read_retry(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `write(2)` that retries on EINTR. `WouldBlock` is returned as an error.
pub(crate) fn write_retry(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::write(fd, buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `buf`, waiting with `poll(2)` whenever the fd is
/// non-blocking and full.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write_retry(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(fd)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// True if the fd reports a hang-up (`POLLHUP`) right now: a terminal
/// whose line went away, as opposed to one where Ctrl-D was typed.
pub(crate) fn hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::empty())];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => {
                return fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

/// Returns the fd's status flags (`F_GETFL`).
pub(crate) fn get_flags<F: AsFd>(fd: F) -> io::Result<OFlag> {
    Ok(OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?))
}

/// Sets the fd's status flags (`F_SETFL`).
pub(crate) fn set_flags<F: AsFd>(fd: F, flags: OFlag) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Sets `O_NONBLOCK`; returns the previous flags so they can be restored.
pub(crate) fn set_nonblocking<F: AsFd>(fd: F) -> io::Result<OFlag> {
    let old = get_flags(fd.as_fd())?;
    if !old.contains(OFlag::O_NONBLOCK) {
        set_flags(fd, old | OFlag::O_NONBLOCK)?;
    }
    Ok(old)
}
