//! `process.terminal` with `--console-socket`: the runtime makes a
//! pseudo-terminal, sends its master over the Unix socket (SCM_RIGHTS, as
//! runc does: conmon and containerd's shim read it from there) and gives
//! the slave to the vkernel as its stdin, stdout and stderr, and as its
//! controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Errors of the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No pseudo-terminal could be made.
    #[error("cannot open a pseudo-terminal: {0} (is /dev/pts mounted? out of ptys?)")]
    Openpty(nix::Error),
    /// The console socket did not answer.
    #[error("--console-socket {path}: {source} (give the socket the caller listens on)")]
    Connect {
        /// The socket's path.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// Sending the master failed.
    #[error("--console-socket {path}: sending the terminal failed: {source}")]
    Send {
        /// The socket's path.
        path: String,
        /// The host error.
        source: nix::Error,
    },
    /// `process.terminal` is set but no `--console-socket` was given.
    #[error("process.terminal is true but no --console-socket was given: give one (podman and containerd do), or set terminal to false")]
    NoSocket,
}

/// A pseudo-terminal whose master went to the console socket: the slave
/// is what the container gets.
pub struct Pty {
    /// The slave side.
    pub slave: OwnedFd,
}

/// Open a pseudo-terminal (of `size` rows and columns, when given) and
/// send its master over `socket`.
pub fn send_pty(socket: &Path, size: Option<(u16, u16)>) -> Result<Pty, ConsoleError> {
    let winsize = size.map(|(rows, cols)| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let pty = nix::pty::openpty(winsize.as_ref(), None).map_err(ConsoleError::Openpty)?;
    let path = socket.display().to_string();
    let stream = UnixStream::connect(socket).map_err(|source| ConsoleError::Connect {
        path: path.clone(),
        source,
    })?;
    let fds = [pty.master.as_raw_fd()];
    // The payload names the terminal, as runc's does; receivers use the fd.
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|source| ConsoleError::Send { path, source })?;
    // The master is the caller's now: ours closes here.
    drop(pty.master);
    Ok(Pty { slave: pty.slave })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSliceMut;
    use std::os::fd::{FromRawFd, RawFd};
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_master_arrives_and_talks_to_the_slave() {
        let dir = std::env::temp_dir().join(format!("vkoci-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("console.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let pty = send_pty(&sock, Some((33, 101))).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(f) => Some(f[0]),
                _ => None,
            })
            .unwrap();
        // SAFETY: `fd` was just received and nothing else owns it.
        let master = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut ws = zeroed_winsize();
        // SAFETY: TIOCGWINSZ fills the valid, writable `ws`.
        let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(r, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
        let mut slave = std::fs::File::from(pty.slave);
        use std::io::{Read, Write};
        slave.write_all(b"hi\n").unwrap();
        let mut got = [0u8; 8];
        let n = (&master).read(&mut got).unwrap();
        assert!(got[..n].starts_with(b"hi"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn zeroed_winsize() -> libc::winsize {
        libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}
