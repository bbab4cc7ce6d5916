//! The stack's link: smoltcp's [`Device`] over the [`Vke`] tap driver.
//! Frames are read and written whole, one per tap read or write; a frame
//! the tap will not take is dropped (as a NIC drops it), and TCP sends it
//! again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use vkernel_devices::Vke;

/// The tap as smoltcp's device.
pub struct TapDevice {
    vke: Vke,
    rx: Vec<u8>,
    tx: Vec<u8>,
    mtu: usize,
    /// Bytes and frames in, bytes and frames out, frames the tap refused.
    pub counts: Arc<[AtomicU64; 5]>,
}

impl TapDevice {
    /// `vke` carrying IP packets of up to `mtu` bytes.
    pub fn new(vke: Vke, mtu: usize, counts: Arc<[AtomicU64; 5]>) -> TapDevice {
        TapDevice {
            vke,
            rx: vec![0; 65536 + 14],
            tx: Vec::with_capacity(mtu + 14),
            mtu,
            counts,
        }
    }
}

/// A frame read from the tap.
pub struct Rx<'a>(&'a [u8]);

/// Room for one frame to the tap.
pub struct Tx<'a> {
    vke: &'a Vke,
    buf: &'a mut Vec<u8>,
    counts: &'a [AtomicU64; 5],
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.resize(len, 0);
        let r = f(self.buf);
        match self.vke.send(self.buf) {
            Ok(()) => {
                self.counts[2].fetch_add(len as u64, Ordering::Relaxed);
                self.counts[3].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counts[4].fetch_add(1, Ordering::Relaxed);
                log::debug!("tap send of {len} bytes dropped: {e}");
            }
        }
        r
    }
}

impl Device for TapDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let n = match self.vke.recv(&mut self.rx) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("tap receive failed: {e}");
                return None;
            }
        };
        self.counts[0].fetch_add(n as u64, Ordering::Relaxed);
        self.counts[1].fetch_add(1, Ordering::Relaxed);
        Some((
            Rx(&self.rx[..n]),
            Tx {
                vke: &self.vke,
                buf: &mut self.tx,
                counts: &self.counts,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            vke: &self.vke,
            buf: &mut self.tx,
            counts: &self.counts,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = self.mtu + 14;
        c
    }
}
