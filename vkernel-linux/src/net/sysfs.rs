//! `/sys/class/net` as the vprocs see it: the vkernel's own interfaces
//! (`lo`, and the tap network's `eth0`), not the host's. Written once into
//! the tree's overlay when the vkernel starts ([`install_sys_class_net`]):
//! the host's entries are hidden, and each interface is a directory of
//! the attribute files tools read (address, mtu, operstate, ifindex,
//! type, flags, carrier...).

use crate::fs::{Errno, Fs, ROOT};

use super::Net;

/// One interface's attribute files.
fn attributes(
    mac: [u8; 6],
    bcast: [u8; 6],
    mtu: usize,
    up: bool,
    index: u32,
    arphrd: u16,
    flags: u32,
) -> Vec<(&'static str, String)> {
    let hex = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    vec![
        ("address", hex(mac)),
        ("addr_len", "6".into()),
        ("broadcast", hex(bcast)),
        ("carrier", "1".into()),
        ("dev_id", "0x0".into()),
        ("flags", format!("{flags:#x}")),
        ("ifindex", index.to_string()),
        ("iflink", index.to_string()),
        ("mtu", mtu.to_string()),
        ("operstate", if up { "up" } else { "unknown" }.into()),
        ("tx_queue_len", "1000".into()),
        ("type", arphrd.to_string()),
    ]
}

/// Replace the tree's `/sys/class/net` with the vkernel's interfaces:
/// `lo`, and `eth0` when `net` is a tap network. A tree without one (an
/// image with no /sys) is left as it is.
pub fn install_sys_class_net(fs: &Fs, net: Option<&Net>) -> Result<(), Errno> {
    let Ok(dir) = fs.resolve(ROOT, b"/sys/class/net", true) else {
        return Ok(());
    };
    for (name, _) in fs.entries(dir) {
        if name != b"." && name != b".." {
            // The host's interfaces are not the vprocs'.
            let _ = fs
                .unlink(dir, &name, false)
                .or_else(|_| fs.unlink(dir, &name, true));
        }
    }
    let mut ifs = vec![("lo", attributes([0; 6], [0; 6], 65536, false, 1, 772, 0x9))];
    if let Some(n) = net.filter(|n| !n.is_host()) {
        let cfg = n.config();
        ifs.push((
            "eth0",
            attributes(
                cfg.map_or([0; 6], |c| c.mac),
                [0xff; 6],
                cfg.map_or(1500, |c| c.mtu),
                true,
                2,
                1,
                0x1003,
            ),
        ));
    }
    for (name, attrs) in ifs {
        let d = fs.mkdir(dir, name.as_bytes(), 0o755)?;
        for (file, value) in attrs {
            let (h, _) = fs.create(d, file.as_bytes(), 0o444, false)?;
            fs.write(h, Some(0), format!("{value}\n").as_bytes())?;
        }
    }
    Ok(())
}
