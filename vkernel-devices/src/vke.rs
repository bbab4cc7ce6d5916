//! [`Vke`]: the virtual kernel's Ethernet, a Linux tap interface (the
//! analog of DragonFly's `vke` on a BSD tap).
//!
//! Frames the host sends out through the tap (its "wire") arrive as
//! [`Event::VkeFrame`] once the Vke is registered on an event loop; frames
//! the virtual kernel sends with [`Vke::send`] are received by the host's
//! network stack as if they came from the wire. Frames are whole Ethernet
//! frames without a packet-info header (`IFF_NO_PI`).
//!
//! The tap is created in the network namespace of the *calling thread*; the
//! fd keeps working from any thread afterwards. Creating a tap needs
//! `CAP_NET_ADMIN` and `/dev/net/tun`, unless a persistent tap owned by the
//! user already exists (`ip tuntap add dev NAME mode tap user USER`).
//! Configuring the host side (bringing it up, addresses, bridges) is left to
//! the host's tools.
//!
//! ```no_run
//! use std::time::Duration;
//! use vkernel_devices::{Event, EventLoop, Vke};
//!
//! let mut ev = EventLoop::new()?;
//! let mut vke = Vke::open("vke0")?;
//! vke.register(ev.handle())?;
//! for event in ev.poll_once(Some(Duration::from_secs(1)))? {
//!     if let Event::VkeFrame { frame, .. } = event {
//!         println!("{} byte frame from the host", frame.len());
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::event_loop::{Event, EventLoopError, LoopHandle, Registration, Source, SourceId};

/// Where the tun/tap clone device lives.
pub const TUN_DEVICE: &str = "/dev/net/tun";
/// Length of an Ethernet header; shorter frames are rejected by the tap.
pub const ETH_HEADER_LEN: usize = 14;
/// Receive buffer size: the largest frame a tap can deliver (64 KiB MTU
/// plus header).
const RECV_BUF: usize = 65536 + ETH_HEADER_LEN;

/// Errors of [`Vke`].
#[derive(Debug, thiserror::Error)]
pub enum VkeError {
    /// `/dev/net/tun` does not exist.
    #[error(
        "{TUN_DEVICE} is missing: load the tun module (`modprobe tun`), or in a container \
         pass the device through (e.g. `--device /dev/net/tun`)"
    )]
    NoTunDevice,
    /// Not allowed to open `/dev/net/tun` or to create the tap.
    #[error(
        "not permitted to create tap `{name}`: creating a tap needs CAP_NET_ADMIN (run as root \
         or grant the capability) and access to {TUN_DEVICE}; alternatively let an \
         administrator create a persistent tap you own: \
         `ip tuntap add dev {name} mode tap user $USER` ({source})"
    )]
    PermissionDenied {
        /// The requested interface name.
        name: String,
        /// The host error (EPERM or EACCES).
        #[source]
        source: io::Error,
    },
    /// The interface exists and is in use (or is not a tap).
    #[error("interface `{name}` is busy or exists and is not a free tap: {source}")]
    Busy {
        /// The requested interface name.
        name: String,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// The name is not usable as an interface name.
    #[error("invalid tap name `{0}` (at most 15 bytes, no '/', ':' or whitespace)")]
    BadName(String),
    /// Another failure while creating the tap.
    #[error("cannot create tap `{name}`: {source}")]
    Open {
        /// The requested interface name.
        name: String,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// A frame shorter than an Ethernet header.
    #[error("a {0}-byte frame is shorter than an Ethernet header ({ETH_HEADER_LEN} bytes)")]
    FrameTooShort(usize),
    /// Writing a frame failed (EIO means the tap is down).
    #[error("sending a frame on the tap failed: {0}")]
    Send(#[source] io::Error),
    /// Reading a frame failed.
    #[error("receiving a frame from the tap failed: {0}")]
    Recv(#[source] io::Error),
    /// Querying the tap failed.
    #[error("tap ioctl failed: {0}")]
    Ioctl(#[source] io::Error),
    /// Registering on the event loop failed.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
}

struct Inner {
    iface: tun_tap::Iface,
    buf: Mutex<Vec<u8>>,
}

impl Source for Inner {
    fn fds(&self) -> Vec<RawFd> {
        vec![self.iface.as_raw_fd()]
    }

    fn ready(&self, id: SourceId, _sub: usize, out: &mut Vec<Event>) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match self.iface.recv(&mut buf) {
                Ok(n) => out.push(Event::VkeFrame {
                    source: id,
                    frame: buf[..n].to_vec(),
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    out.push(Event::SourceError { source: id, error });
                    break;
                }
            }
        }
    }
}

/// A tap interface carrying the virtual kernel's Ethernet frames.
/// Dropping it deregisters it and (unless the tap is persistent) removes
/// the interface.
pub struct Vke {
    inner: Arc<Inner>,
    reg: Option<Registration>,
}

impl std::fmt::Debug for Vke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vke")
            .field("name", &self.name())
            .field("source", &self.reg.as_ref().map(|r| r.id()))
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

impl Vke {
    /// Creates (or attaches to a persistent) tap called `name` in the
    /// calling thread's network namespace and makes it non-blocking. An
    /// empty name or one containing `%d` lets the kernel pick; see
    /// [`Vke::name`]. The interface starts down.
    pub fn open(name: &str) -> Result<Vke, VkeError> {
        if !valid_name(name) {
            return Err(VkeError::BadName(name.to_string()));
        }
        if !Path::new(TUN_DEVICE).exists() {
            return Err(VkeError::NoTunDevice);
        }
        let iface =
            tun_tap::Iface::without_packet_info(name, tun_tap::Mode::Tap).map_err(|source| {
                let name = name.to_string();
                match source.raw_os_error() {
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        VkeError::PermissionDenied { name, source }
                    }
                    Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                        VkeError::NoTunDevice
                    }
                    Some(libc::EBUSY) | Some(libc::EINVAL) => VkeError::Busy { name, source },
                    _ => VkeError::Open { name, source },
                }
            })?;
        iface.set_non_blocking().map_err(|source| VkeError::Open {
            name: name.to_string(),
            source,
        })?;
        Ok(Vke {
            inner: Arc::new(Inner {
                iface,
                buf: Mutex::new(vec![0; RECV_BUF]),
            }),
            reg: None,
        })
    }

    /// The interface's real name (the kernel may have picked it).
    pub fn name(&self) -> &str {
        self.inner.iface.name()
    }

    /// Registers the tap: each frame from the host becomes
    /// [`Event::VkeFrame`]. Do not call [`Vke::recv`] on a registered tap;
    /// the loop drains it.
    pub fn register(&mut self, handle: &LoopHandle) -> Result<SourceId, VkeError> {
        Ok(Registration::register_into(
            &mut self.reg,
            handle,
            self.inner.clone(),
        )?)
    }

    /// The id this tap's events carry, if registered.
    pub fn source_id(&self) -> Option<SourceId> {
        self.reg.as_ref().map(|r| r.id())
    }

    /// Sends one Ethernet frame to the host (as if it arrived on the
    /// wire). The host drops frames it cannot queue, like a real NIC.
    /// Fails with EIO while the interface is down.
    pub fn send(&self, frame: &[u8]) -> Result<(), VkeError> {
        if frame.len() < ETH_HEADER_LEN {
            return Err(VkeError::FrameTooShort(frame.len()));
        }
        loop {
            match self.inner.iface.send(frame) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(VkeError::Send(e)),
            }
        }
    }

    /// Receives one frame into `buf` without the loop; `Ok(None)` if none
    /// is queued. Frames longer than `buf` are truncated.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>, VkeError> {
        loop {
            match self.inner.iface.recv(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(VkeError::Recv(e)),
            }
        }
    }

    /// The MAC address of the host side of the tap (`SIOCGIFHWADDR` on the
    /// tap fd, so it works from any namespace). The virtual kernel's own
    /// NIC should use a different address.
    pub fn host_mac(&self) -> Result<[u8; 6], VkeError> {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is the open tap; SIOCGIFHWADDR on a tun/tap fd
        // reads and writes exactly one `struct ifreq`, which `ifr` is.
        let rc = unsafe {
            libc::ioctl(
                self.inner.iface.as_raw_fd(),
                libc::SIOCGIFHWADDR as _,
                &mut ifr as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            return Err(VkeError::Ioctl(io::Error::last_os_error()));
        }
        // SAFETY: on success the kernel filled the hwaddr member.
        let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (m, d) in mac.iter_mut().zip(data.iter()) {
            *m = *d as u8;
        }
        Ok(mac)
    }
}

impl AsRawFd for Vke {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.iface.as_raw_fd()
    }
}
