//! Pseudo-terminals for vprocs: opening `/dev/ptmx`, `/dev/pts/N` and a
//! controlling `/dev/tty`, reading and writing either end (blocking and
//! waking around the line discipline of [`crate::fs::pty`]), the
//! terminal ioctls, sessions' controlling terminals and job control
//! (SIGTTIN/SIGTTOU for background groups).

use super::errno::*;
use super::R;
use crate::files::{self, FileKind, OpenFile, PtyEnd, Shared};
use crate::fs::pty::{pts_rdev, Pty, PTMX_RDEV};
use crate::fs::termios::{lflag, Termios, TERMIOS2_SIZE, TERMIOS_SIZE};
use crate::signal::{self, SIGTTIN, SIGTTOU};
use crate::Vproc;

/// O_NOCTTY.
const O_NOCTTY: u32 = 0o400;
/// The group of `/dev/pts/N` (Debian's `tty`).
const TTY_GID: u32 = 5;
/// SIGWINCH.
const SIGWINCH: i32 = 28;

/// Size of the old `struct termio` (TCGETA): four 16-bit flag words, the
/// line, 8 control characters.
const TERMIO_SIZE: usize = 18;

/// `t` as a `struct termio` (the low 16 bits of each flag word).
fn termio_bytes(t: &Termios) -> [u8; TERMIO_SIZE] {
    let mut b = [0u8; TERMIO_SIZE];
    for (i, f) in [t.iflag, t.oflag, t.cflag, t.lflag].into_iter().enumerate() {
        // The low half of each flag word, as Linux's termio.
        let low = (f & 0xffff) as u16;
        b[2 * i..2 * i + 2].copy_from_slice(&low.to_le_bytes());
    }
    b[8] = t.line;
    b[9..17].copy_from_slice(&t.cc[..8]);
    b
}

/// Change `pty` with `f`; when it succeeds, wake the pair's waiters
/// (with the pair unlocked: they look again).
fn change(pty: &Shared<Pty>, f: impl FnOnce(&mut Pty) -> R) -> R {
    let mut p = pty.borrow_mut();
    let r = f(&mut p);
    let w = if r.is_ok() {
        p.take_waiters()
    } else {
        Vec::new()
    };
    drop(p);
    files::wake_all(w);
    r
}

/// What a job-control check decided for a caller outside the foreground.
enum Job {
    /// Go on (the foreground, no controlling terminal, or allowed).
    Go,
    /// Fail with this errno.
    Fail(i64),
}

impl Vproc {
    /// This process's group and session.
    pub(super) fn job_ids(&self) -> (i32, i32) {
        let me = self.thread.tgid;
        self.k
            .as_ref()
            .and_then(|k| k.job_ids(me))
            .unwrap_or((me, me))
    }

    /// Is `sig` ignored or blocked by this thread?
    fn sig_ignored_or_blocked(&self, sig: i32) -> bool {
        if self.sig.blocked & signal::bit(sig) != 0 {
            return true;
        }
        self.action(sig).handler == signal::SIG_IGN
    }

    /// Open `/dev/ptmx`: a new pair, its master.
    pub(super) fn open_ptmx(&mut self, flags: u32, keep: u32) -> R {
        let Some(p) = self.fs.pts_create(0, TTY_GID) else {
            return Err(ENOSPC);
        };
        {
            let mut q = p.borrow_mut();
            q.signaller = self.k.clone().map(|k| k as std::sync::Arc<dyn files::Wake>);
            q.tree = Some(std::sync::Arc::downgrade(&self.fs));
        }
        let end = PtyEnd {
            pty: p,
            master: true,
        };
        let f = OpenFile::new(FileKind::Pty(end), keep, b"/dev/ptmx");
        self.install_file(f, flags)
    }

    /// Open the slave of pair `index`: EIO while it is locked or its
    /// master is gone, EBUSY under TIOCEXCL. A session leader without a
    /// controlling terminal gets this one (unless O_NOCTTY).
    pub(super) fn open_pts(&mut self, index: u32, flags: u32, keep: u32) -> R {
        let Some(p) = self.fs.devpts().get(index) else {
            return Err(EIO);
        };
        {
            let q = p.borrow();
            if q.locked || q.hung_up() {
                return Err(EIO);
            }
            if q.exclusive {
                return Err(EBUSY);
            }
        }
        if flags & O_NOCTTY == 0 {
            self.maybe_acquire(&p);
        }
        self.install_slave(p, flags, keep)
    }

    /// A new open description of the slave of `p`, as `/dev/pts/N`.
    fn install_slave(&mut self, p: Shared<Pty>, flags: u32, keep: u32) -> R {
        let path = format!("/dev/pts/{}", p.borrow().index);
        let end = PtyEnd {
            pty: p,
            master: false,
        };
        let f = OpenFile::new(FileKind::Pty(end), keep, path.as_bytes());
        self.install_file(f, flags)
    }

    /// A session leader opening a terminal that is nobody's controlling
    /// terminal, while it has none, makes it its own.
    fn maybe_acquire(&self, p: &Shared<Pty>) {
        let (pgid, sid) = self.job_ids();
        if sid != self.thread.tgid || self.fs.devpts().of_session(sid).is_some() {
            return;
        }
        let mut q = p.borrow_mut();
        if q.session == 0 {
            q.session = sid;
            q.fgpgrp = pgid;
        }
    }

    /// `/dev/tty` when the caller's session has a pseudo-terminal as its
    /// controlling terminal: that slave. None: it has none.
    pub(super) fn open_ctty(&mut self, flags: u32, keep: u32) -> Option<R> {
        let (_, sid) = self.job_ids();
        let p = self.fs.devpts().of_session(sid)?;
        Some(self.install_slave(p, flags, keep))
    }

    /// The job-control check of a slave read (`sig` SIGTTIN) or write
    /// (SIGTTOU, only under TOSTOP) or attribute change (SIGTTOU): a
    /// caller in a background group of the terminal's session gets the
    /// signal sent to its group and the call restarts once it continues;
    /// EIO when the signal is ignored or blocked (a read) or the group is
    /// orphaned (it would never be continued).
    fn job_check(&mut self, p: &Shared<Pty>, sig: i32) -> Job {
        let (session, fg) = {
            let q = p.borrow();
            (q.session, q.fgpgrp)
        };
        if session == 0 {
            return Job::Go;
        }
        let (pgid, sid) = self.job_ids();
        if sid != session || pgid == fg {
            return Job::Go;
        }
        if self.sig_ignored_or_blocked(sig) {
            return if sig == SIGTTIN {
                Job::Fail(EIO)
            } else {
                Job::Go
            };
        }
        let Some(k) = &self.k else {
            return Job::Go;
        };
        if k.pgrp_orphaned(pgid) {
            return Job::Fail(EIO);
        }
        files::Wake::signal(k.as_ref(), -pgid, sig);
        Job::Fail(super::ERESTART)
    }

    /// read(2) of a pseudo-terminal end.
    pub(super) fn pty_read(&mut self, end: &PtyEnd, nonblock: bool, data: &mut [u8]) -> R {
        if !end.master {
            if let Job::Fail(e) = self.job_check(&end.pty, SIGTTIN) {
                return Err(e);
            }
        }
        let mut p = end.pty.borrow_mut();
        let ready = if end.master {
            p.master_ready()
        } else {
            p.slave_ready(data.len())
        };
        if data.is_empty() {
            return Ok(0);
        }
        if !ready {
            if end.master && p.slaves == 0 && p.slave_opened {
                // The slave side closed: EIO, as Linux's pty master.
                return Err(EIO);
            }
            if !end.master && p.hung_up() {
                return Ok(0);
            }
            if nonblock {
                return Err(EAGAIN);
            }
            let timer = if end.master { None } else { p.read_timer() };
            if let Some(deadline) = timer.and_then(|t| self.call_deadline(Some(t))) {
                if std::time::Instant::now() >= deadline {
                    // VTIME ran out: what there is (maybe nothing).
                    let n = p.read_slave(data);
                    let w = p.take_waiters();
                    drop(p);
                    files::wake_all(w);
                    return Ok(n as i64);
                }
            }
            let k = self.kernel()?;
            p.wait(self.pid, k);
            drop(p);
            return self.block();
        }
        let n = if end.master {
            p.read_master(data)
        } else {
            p.read_slave(data)
        };
        let w = p.take_waiters();
        drop(p);
        files::wake_all(w);
        Ok(n as i64)
    }

    /// write(2) to a pseudo-terminal end. Writes wait for room; a slave
    /// whose master is gone fails with EIO.
    pub(super) fn pty_write(&mut self, end: &PtyEnd, nonblock: bool, data: &[u8]) -> R {
        if !end.master {
            let tostop = end.pty.borrow().termios.lflag & lflag::TOSTOP != 0;
            if tostop {
                if let Job::Fail(e) = self.job_check(&end.pty, SIGTTOU) {
                    return Err(e);
                }
            }
        }
        let done = self.call.progress.min(data.len());
        let rest = &data[done..];
        let mut p = end.pty.borrow_mut();
        if !end.master && p.hung_up() {
            return Err(EIO);
        }
        let (n, sigs) = if rest.is_empty() {
            (0, Vec::new())
        } else if end.master {
            p.write_master(rest)
        } else if p.stopped {
            (0, Vec::new())
        } else {
            (p.write_slave(rest), Vec::new())
        };
        let (session, fg) = (p.session, p.fgpgrp);
        let w = if n > 0 { p.take_waiters() } else { Vec::new() };
        let total = done + n;
        if total < data.len() {
            if nonblock {
                drop(p);
                files::wake_all(w);
                return if total > 0 {
                    Ok(total as i64)
                } else {
                    Err(EAGAIN)
                };
            }
            let k = self.kernel()?;
            p.wait(self.pid, k);
            drop(p);
            files::wake_all(w);
            self.call.progress = total;
            return self.block();
        }
        drop(p);
        files::wake_all(w);
        if session != 0 && fg != 0 {
            if let Some(k) = &self.k {
                for s in sigs {
                    // A stop from the keyboard is discarded for an
                    // orphaned group (nobody would continue it).
                    if s == 20 && k.pgrp_orphaned(fg) {
                        continue;
                    }
                    files::Wake::signal(k.as_ref(), -fg, s);
                }
            }
        }
        Ok(total as i64)
    }

    /// The poll(2) events of a pseudo-terminal end.
    pub(super) fn pty_events(p: &Pty, master: bool) -> u16 {
        use super::events::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
        let rd = POLLIN | POLLRDNORM;
        let wr = POLLOUT | POLLWRNORM;
        if master {
            let mut r = 0;
            if p.master_ready() {
                r |= rd;
            }
            if p.slaves == 0 && p.slave_opened {
                r |= POLLHUP;
            }
            if p.input_room() > 0 {
                r |= wr;
            }
            r
        } else if p.hung_up() {
            rd | wr | POLLERR | POLLHUP
        } else {
            let mut r = 0;
            if p.slave_ready(usize::MAX) && (p.termios.canonical() || p.slave_readable() > 0) {
                r |= rd;
            }
            if p.output_room() > 0 && !p.stopped {
                r |= wr;
            }
            r
        }
    }

    /// fstat of a pseudo-terminal end: the slave as its `/dev/pts/N` node
    /// (so ttyname's check matches), the master as `/dev/ptmx`.
    pub(super) fn pty_rdev(end: &PtyEnd) -> u32 {
        if end.master {
            PTMX_RDEV
        } else {
            pts_rdev(end.pty.borrow().index)
        }
    }

    /// The terminal ioctls of a pseudo-terminal end.
    pub(super) fn pty_ioctl(&mut self, end: &PtyEnd, req: u32, arg: u64) -> R {
        let pty = &end.pty;
        match req {
            0x5401..=0x540B
            | 0x5425
            | 0x5427
            | 0x5428
            | 0x5456
            | 0x5457
            | 0x802c_542a
            | 0x402c_542b..=0x402c_542d => self.pty_termios_ioctl(end, req, arg),
            0x5420 | 0x8004_5438 | 0x8004_5430 | 0x4004_5431 | 0x8004_5439 | 0x5441
                if end.master =>
            {
                self.pty_master_ioctl(end, req, arg)
            }
            0x540C | 0x540D => {
                // TIOCEXCL, TIOCNXCL.
                pty.borrow_mut().exclusive = req == 0x540C;
                Ok(0)
            }
            0x8004_5440 => {
                // TIOCGEXCL.
                let x = pty.borrow().exclusive as u32;
                self.mm.write(arg, &x.to_le_bytes())?;
                Ok(0)
            }
            0x540E => self.pty_set_ctty(pty, arg),
            0x5422 => self.pty_notty(pty),
            0x540F | 0x5429 => {
                // TIOCGPGRP, TIOCGSID.
                let (_, sid) = self.job_ids();
                let p = pty.borrow();
                if !end.master && p.session != sid {
                    return Err(ENOTTY);
                }
                let v = if req == 0x5429 {
                    if p.session == 0 {
                        return Err(ENOTTY);
                    }
                    p.session
                } else if p.fgpgrp != 0 {
                    p.fgpgrp
                } else {
                    // No foreground group: Linux reports one that no
                    // process has.
                    0x7fff_ffff
                };
                drop(p);
                self.mm.write(arg, &v.to_le_bytes())?;
                Ok(0)
            }
            0x5410 => self.pty_set_fg(pty, arg),
            0x5411 => {
                // TIOCOUTQ: output not yet taken by the master.
                let n = if end.master {
                    0
                } else {
                    pty.borrow().output_len()
                };
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                self.mm.write(arg, &n.to_le_bytes())?;
                Ok(0)
            }
            0x541B => {
                // FIONREAD.
                let p = pty.borrow();
                let n = if end.master {
                    p.output_len()
                } else {
                    p.slave_readable()
                };
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                drop(p);
                self.mm.write(arg, &n.to_le_bytes())?;
                Ok(0)
            }
            0x5412 => {
                // TIOCSTI: input as if typed, on the caller's own terminal.
                let mut c = [0u8; 1];
                self.mm.read(arg, &mut c)?;
                let (_, sid) = self.job_ids();
                change(pty, |p| {
                    if p.session != sid {
                        return Err(EPERM);
                    }
                    p.write_master(&c);
                    Ok(0)
                })
            }
            0x5413 => {
                // TIOCGWINSZ.
                let ws = pty.borrow().winsize;
                let b: Vec<u8> = ws.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.mm.write(arg, &b)?;
                Ok(0)
            }
            0x5414 => {
                // TIOCSWINSZ: SIGWINCH to the foreground group on a change.
                let mut b = [0u8; 8];
                self.mm.read(arg, &mut b)?;
                let ws: [u16; 4] =
                    std::array::from_fn(|i| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]));
                let mut p = pty.borrow_mut();
                let changed = p.winsize != ws;
                p.winsize = ws;
                let fg = p.fgpgrp;
                drop(p);
                if changed && fg != 0 {
                    if let Some(k) = &self.k {
                        files::Wake::signal(k.as_ref(), -fg, SIGWINCH);
                    }
                }
                Ok(0)
            }
            0x5424 => {
                // TIOCGETD: N_TTY.
                self.mm.write(arg, &0u32.to_le_bytes())?;
                Ok(0)
            }
            0x5423 => {
                // TIOCSETD: only N_TTY is offered.
                let mut b = [0u8; 4];
                self.mm.read(arg, &mut b)?;
                if u32::from_le_bytes(b) == 0 {
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            0x5437 => Err(EPERM), // TIOCVHANGUP needs CAP_SYS_ADMIN
            _ => Err(ENOTTY),
        }
    }

    /// The attribute ioctls (TCGETS/TCSETS and their termio and termios2
    /// forms, locks, breaks, flow control, flushes).
    fn pty_termios_ioctl(&mut self, end: &PtyEnd, req: u32, arg: u64) -> R {
        let pty = &end.pty;
        match req {
            0x5401 | 0x802c_542a => {
                // TCGETS, TCGETS2.
                let t = pty.borrow().termios;
                self.mm.write(arg, &t.to_bytes(req != 0x5401))?;
                Ok(0)
            }
            0x5402..=0x5404 | 0x402c_542b..=0x402c_542d => {
                // TCSETS, TCSETSW, TCSETSF (and the termios2 forms).
                let two = req > 0x5404;
                let mut b = vec![0u8; if two { TERMIOS2_SIZE } else { TERMIOS_SIZE }];
                self.mm.read(arg, &mut b)?;
                if !end.master {
                    if let Job::Fail(e) = self.job_check(pty, SIGTTOU) {
                        return Err(e);
                    }
                }
                let mut new = Termios::from_bytes(&b);
                change(pty, |p| {
                    if !two {
                        (new.ispeed, new.ospeed) = (p.termios.ispeed, p.termios.ospeed);
                        let s = Termios::from_bytes(&b);
                        if s.cflag & 0o10017 != p.termios.cflag & 0o10017 {
                            (new.ispeed, new.ospeed) = (s.ispeed, s.ospeed);
                        }
                    }
                    if matches!(req, 0x5404 | 0x402c_542d) {
                        p.flush_input();
                    }
                    p.set_termios(new);
                    Ok(0)
                })
            }
            0x5405 => {
                // TCGETA: the old `struct termio`.
                let t = pty.borrow().termios;
                self.mm.write(arg, &termio_bytes(&t))?;
                Ok(0)
            }
            0x5406..=0x5408 => {
                // TCSETA, TCSETAW, TCSETAF: the low 16 bits of each flag
                // word and the first 8 control characters change.
                let mut b = [0u8; TERMIO_SIZE];
                self.mm.read(arg, &mut b)?;
                if !end.master {
                    if let Job::Fail(e) = self.job_check(pty, SIGTTOU) {
                        return Err(e);
                    }
                }
                change(pty, |p| {
                    let mut t = p.termios;
                    let w = |i: usize| u32::from(u16::from_le_bytes([b[2 * i], b[2 * i + 1]]));
                    for (i, f) in [&mut t.iflag, &mut t.oflag, &mut t.cflag, &mut t.lflag]
                        .into_iter()
                        .enumerate()
                    {
                        *f = (*f & 0xffff_0000) | w(i);
                    }
                    t.line = b[8];
                    t.cc[..8].copy_from_slice(&b[9..17]);
                    if req == 0x5408 {
                        p.flush_input();
                    }
                    p.set_termios(t);
                    Ok(0)
                })
            }
            0x5456 => {
                // TIOCGLCKTRMIOS: no field is locked.
                self.mm.write(arg, &[0u8; TERMIOS_SIZE])?;
                Ok(0)
            }
            0x5457 => Err(EPERM), // TIOCSLCKTRMIOS needs CAP_SYS_ADMIN
            0x5409 | 0x5425 | 0x5427 | 0x5428 => Ok(0), // TCSBRK(P), TIOCSBRK, TIOCCBRK
            0x540A => self.pty_flow(pty, arg),
            0x540B => {
                // TCFLSH: queues as this end sees them.
                let (input, output) = match arg {
                    0 => (true, false),
                    1 => (false, true),
                    2 => (true, true),
                    _ => return Err(EINVAL),
                };
                let (slave_in, slave_out) = if end.master {
                    (output, input)
                } else {
                    (input, output)
                };
                change(pty, |p| {
                    if slave_in {
                        p.flush_input();
                    }
                    if slave_out {
                        p.flush_output();
                    }
                    Ok(0)
                })
            }
            _ => Err(ENOTTY),
        }
    }

    /// The master's own ioctls (packet mode, the pair's number and lock,
    /// opening the slave).
    fn pty_master_ioctl(&mut self, end: &PtyEnd, req: u32, arg: u64) -> R {
        let pty = &end.pty;
        match req {
            0x5420 => {
                // TIOCPKT.
                let mut b = [0u8; 4];
                self.mm.read(arg, &mut b)?;
                let mut p = pty.borrow_mut();
                p.packet = u32::from_le_bytes(b) != 0;
                p.packet_status = 0;
                Ok(0)
            }
            0x8004_5438 => {
                // TIOCGPKT.
                let x = pty.borrow().packet as u32;
                self.mm.write(arg, &x.to_le_bytes())?;
                Ok(0)
            }
            0x8004_5430 => {
                // TIOCGPTN.
                let i = pty.borrow().index;
                self.mm.write(arg, &i.to_le_bytes())?;
                Ok(0)
            }
            0x4004_5431 => {
                // TIOCSPTLCK.
                let mut b = [0u8; 4];
                self.mm.read(arg, &mut b)?;
                pty.borrow_mut().locked = u32::from_le_bytes(b) != 0;
                Ok(0)
            }
            0x8004_5439 => {
                // TIOCGPTLCK.
                let x = pty.borrow().locked as u32;
                self.mm.write(arg, &x.to_le_bytes())?;
                Ok(0)
            }
            0x8004_5432 => {
                // TIOCGDEV.
                let d = Self::pty_rdev(end);
                self.mm.write(arg, &d.to_le_bytes())?;
                Ok(0)
            }
            0x5441 => {
                // TIOCGPTPEER: open the slave (arg: the open flags).
                let index = pty.borrow().index;
                let flags = super::uint32(arg);
                let keep = (flags | files::O_LARGEFILE)
                    & !(files::O_CLOEXEC | files::O_CREAT | files::O_EXCL | files::O_TRUNC);
                self.open_pts(index, flags, keep)
            }
            _ => Err(ENOTTY),
        }
    }

    /// TCXONC: stop or restart output (TCOOFF, TCOON); TCIOFF/TCION send
    /// VSTOP/VSTART, which no modem here listens to.
    fn pty_flow(&mut self, pty: &Shared<Pty>, arg: u64) -> R {
        change(pty, |p| {
            match arg {
                0 => p.stopped = true,
                1 => p.stopped = false,
                2 | 3 => {}
                _ => return Err(EINVAL),
            }
            Ok(0)
        })
    }

    /// TIOCSCTTY: a session leader without a controlling terminal takes
    /// this one (stealing it from another session needs `arg` 1, which
    /// root — every vproc — may give).
    fn pty_set_ctty(&mut self, pty: &Shared<Pty>, arg: u64) -> R {
        let (pgid, sid) = self.job_ids();
        let mut p = pty.borrow_mut();
        if p.session == sid {
            return Ok(0);
        }
        if sid != self.thread.tgid {
            return Err(EPERM);
        }
        drop(p);
        if self.fs.devpts().of_session(sid).is_some() {
            return Err(EPERM);
        }
        p = pty.borrow_mut();
        if p.session != 0 && arg != 1 {
            return Err(EPERM);
        }
        p.session = sid;
        p.fgpgrp = pgid;
        Ok(0)
    }

    /// TIOCNOTTY: a session leader gives up its controlling terminal
    /// (its foreground group gets SIGHUP and SIGCONT); for another
    /// process Linux only detaches that process, which this vkernel (one
    /// terminal per session) does not model: it succeeds and changes
    /// nothing.
    fn pty_notty(&mut self, pty: &Shared<Pty>) -> R {
        let (_, sid) = self.job_ids();
        let mut p = pty.borrow_mut();
        if p.session != sid {
            return Err(ENOTTY);
        }
        if sid != self.thread.tgid {
            return Ok(0);
        }
        let fg = p.fgpgrp;
        p.session = 0;
        p.fgpgrp = 0;
        drop(p);
        if fg != 0 {
            if let Some(k) = &self.k {
                files::Wake::signal(k.as_ref(), -fg, 1);
                files::Wake::signal(k.as_ref(), -fg, 18);
            }
        }
        Ok(0)
    }

    /// TIOCSPGRP (tcsetpgrp): the caller's controlling terminal only
    /// (ENOTTY), a group of its session (EPERM), from the background only
    /// with SIGTTOU ignored or blocked.
    fn pty_set_fg(&mut self, pty: &Shared<Pty>, arg: u64) -> R {
        let mut b = [0u8; 4];
        self.mm.read(arg, &mut b)?;
        let want = i32::from_le_bytes(b);
        if want < 0 {
            return Err(EINVAL);
        }
        let (_, sid) = self.job_ids();
        if pty.borrow().session != sid {
            return Err(ENOTTY);
        }
        if let Job::Fail(e) = self.job_check(pty, SIGTTOU) {
            return Err(e);
        }
        let in_session = match &self.k {
            Some(k) => k.group_in_session(want, sid),
            None => want == self.thread.tgid,
        };
        if !in_session {
            return Err(EPERM);
        }
        change(pty, |p| {
            p.fgpgrp = want;
            Ok(0)
        })
    }
}
