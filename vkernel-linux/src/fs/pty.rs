//! Pseudo-terminals: a pair's line discipline and the devpts registry.
//!
//! [`Pty`] is one master/slave pair: what the master writes goes through
//! the input side of the line discipline (input translations, canonical
//! line editing, echo, the signal characters) to the slave's readers;
//! what the slave writes goes through output post-processing to the
//! master's readers. It is pure state: the syscall layer
//! (`syscalls/pty.rs`) blocks and wakes vprocs around it, sends the
//! signals it asks for and keeps sessions and foreground groups.
//! [`Devpts`] numbers the pairs (`/dev/pts/N`) and finds them by index.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::pipe::{Shared, Waiters, Wake, WeakShared};
use super::termios::{cc, iflag, lflag, oflag, Termios};

/// Major number of the slaves (`/dev/pts/N`).
pub const PTS_MAJOR: u32 = 136;
/// Device number of `/dev/ptmx` (5, 2).
pub const PTMX_RDEV: u32 = 5 << 8 | 2;
/// Bytes of input a pair holds before the master's writers wait.
pub const INPUT_MAX: usize = 65536;
/// Bytes of output a pair holds before the slave's writers wait.
pub const OUTPUT_MAX: usize = 65536;
/// Longest line canonical mode edits (Linux's N_TTY_BUF_SIZE - 1):
/// further characters are dropped until a line ends.
pub const LINE_MAX: usize = 4095;
/// Most pairs open at once (Linux's default `kernel/pty/max`).
pub const PTY_MAX: usize = 4096;

/// SIGINT, SIGQUIT, SIGTSTP as the line discipline asks for them.
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTSTP: i32 = 20;
const SIGHUP: i32 = 1;
const SIGCONT: i32 = 18;

/// The rdev (Linux's encoding) of `/dev/pts/index`.
pub fn pts_rdev(index: u32) -> u32 {
    (index & 0xff) | PTS_MAJOR << 8 | (index & !0xff) << 12
}

/// The index of the slave with device number `rdev`, if it is one.
pub fn pts_index(rdev: u32) -> Option<u32> {
    ((rdev >> 8) & 0xfff == PTS_MAJOR).then_some((rdev & 0xff) | (rdev >> 12) & !0xff)
}

/// One line canonical mode completed.
#[derive(Debug, Default)]
struct Line {
    /// Its bytes, with the newline/EOL that ended it (EOF is not kept).
    bytes: Vec<u8>,
    /// How many of them were read already.
    read: usize,
}

/// A master/slave pair.
pub struct Pty {
    /// Its number: the slave is `/dev/pts/{index}`.
    pub index: u32,
    /// The slave's attributes (the master shares them).
    pub termios: Termios,
    /// `struct winsize` (rows, columns, xpixel, ypixel).
    pub winsize: [u16; 4],
    /// The slave cannot be opened (TIOCSPTLCK; new pairs are locked
    /// until `unlockpt`).
    pub locked: bool,
    /// TIOCEXCL: no further opens of the slave.
    pub exclusive: bool,
    /// TIOCPKT: master reads start with a status byte.
    pub packet: bool,
    /// Packet mode status bits not yet read (TIOCPKT_FLUSHREAD...).
    pub packet_status: u8,
    /// The session this is the controlling terminal of (0: none).
    pub session: i32,
    /// The foreground process group (0: none).
    pub fgpgrp: i32,
    /// Open descriptions of the master.
    pub masters: usize,
    /// Open descriptions of the slave.
    pub slaves: usize,
    /// The slave was opened at least once (only then does its last close
    /// make the master's reads fail with EIO).
    pub slave_opened: bool,
    /// Output stopped by VSTOP (IXON) or TCOOFF.
    pub stopped: bool,
    /// The line being edited (canonical mode).
    edit: Vec<u8>,
    /// Lines complete and not yet read (canonical mode).
    lines: VecDeque<Line>,
    /// Input not in lines (non-canonical mode).
    raw: VecDeque<u8>,
    /// The next input character is taken literally (VLNEXT).
    literal: bool,
    /// Slave output waiting for the master.
    output: VecDeque<u8>,
    /// The output column (for ONOCR).
    column: usize,
    /// Vprocs waiting on either side.
    pub waiters: Waiters,
    /// Bumped on every change waiters are woken for.
    pub seq: u64,
    /// What sends the signals of a hangup (the process table).
    pub signaller: Option<Arc<dyn Wake>>,
    /// The tree whose `/dev/pts` names the pair.
    pub tree: Option<std::sync::Weak<super::Fs>>,
}

impl std::fmt::Debug for Pty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pty")
            .field("index", &self.index)
            .field("masters", &self.masters)
            .field("slaves", &self.slaves)
            .field("session", &self.session)
            .finish()
    }
}

impl Pty {
    /// A new pair numbered `index`, locked, with Linux's default
    /// attributes.
    pub fn new(index: u32) -> Pty {
        Pty {
            index,
            termios: Termios::default(),
            winsize: [0; 4],
            locked: true,
            exclusive: false,
            packet: false,
            packet_status: 0,
            session: 0,
            fgpgrp: 0,
            masters: 0,
            slaves: 0,
            slave_opened: false,
            stopped: false,
            edit: Vec::new(),
            lines: VecDeque::new(),
            raw: VecDeque::new(),
            literal: false,
            output: VecDeque::new(),
            column: 0,
            waiters: Waiters::default(),
            seq: 0,
            signaller: None,
            tree: None,
        }
    }

    /// The master's last description closed: the slave hangs up. Its
    /// session loses its controlling terminal; the session leader and
    /// the foreground group get SIGHUP and SIGCONT (as Linux's
    /// `tty_vhangup`). Returns the waiters to wake.
    pub fn hang_up(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        if let Some(s) = &self.signaller {
            // The leader once: when it leads the foreground group too,
            // that group's signal reaches it (two SIGHUPs could arrive
            // apart and run its handler twice; Linux sends one).
            let leader = if self.fgpgrp == self.session {
                0
            } else {
                self.session
            };
            for target in [leader, -self.fgpgrp] {
                if target != 0 {
                    s.signal(target, SIGHUP);
                    s.signal(target, SIGCONT);
                }
            }
        }
        self.session = 0;
        self.fgpgrp = 0;
        self.flush_input();
        if let Some(fs) = self.tree.take().and_then(|t| t.upgrade()) {
            fs.pts_remove(self.index);
        }
        self.take_waiters()
    }

    /// Register `pid` as waiting on the pair.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// Something changed: the waiters to wake (with the pair unlocked).
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.seq = self.seq.wrapping_add(1);
        self.waiters.take()
    }

    /// The master is gone: the slave is hung up.
    pub fn hung_up(&self) -> bool {
        self.masters == 0
    }

    /// Input bytes held (what bounds the master's writes).
    fn input_len(&self) -> usize {
        self.edit.len()
            + self.raw.len()
            + self
                .lines
                .iter()
                .map(|l| l.bytes.len() - l.read)
                .sum::<usize>()
    }

    /// Room for more input from the master.
    pub fn input_room(&self) -> usize {
        INPUT_MAX.saturating_sub(self.input_len())
    }

    /// Bytes a slave read could take now (FIONREAD on the slave): the
    /// complete lines in canonical mode, everything otherwise.
    pub fn slave_readable(&self) -> usize {
        if self.termios.canonical() {
            self.lines.iter().map(|l| l.bytes.len() - l.read).sum()
        } else {
            self.raw.len()
        }
    }

    /// Would a slave read of up to `want` bytes return now? (A complete
    /// line, an end of file, or VMIN bytes; VMIN 0 never waits.)
    pub fn slave_ready(&self, want: usize) -> bool {
        if self.termios.canonical() {
            return !self.lines.is_empty();
        }
        let min = self.termios.cc[cc::VMIN] as usize;
        if min == 0 {
            // VTIME 0: never waits; else waits for a byte or the timer.
            return self.termios.cc[cc::VTIME] == 0 || !self.raw.is_empty();
        }
        self.raw.len() >= min.min(want).max(1)
    }

    /// How long a non-canonical slave read that is not ready may wait
    /// before it returns what there is (VTIME tenths of a second): from
    /// the call with VMIN 0, from the first byte with VMIN above 0 (the
    /// inter-byte timer, counted from when the reader first saw a byte).
    /// None: it waits for VMIN bytes (or, canonical, a line).
    pub fn read_timer(&self) -> Option<std::time::Duration> {
        let t = self.termios;
        let vtime = t.cc[cc::VTIME];
        if t.canonical() || vtime == 0 || (t.cc[cc::VMIN] > 0 && self.raw.is_empty()) {
            return None;
        }
        Some(std::time::Duration::from_millis(100 * u64::from(vtime)))
    }

    /// Bytes waiting for the master (FIONREAD on the master, TIOCOUTQ on
    /// the slave).
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Room for more output from the slave.
    pub fn output_room(&self) -> usize {
        OUTPUT_MAX.saturating_sub(self.output.len())
    }

    /// A slave read: one line (or its part that fits) in canonical mode,
    /// what is there otherwise. 0 at an end of file (VEOF on an empty
    /// line). The caller checked [`Pty::slave_ready`].
    pub fn read_slave(&mut self, buf: &mut [u8]) -> usize {
        if self.termios.canonical() {
            let Some(l) = self.lines.front_mut() else {
                return 0;
            };
            let n = (l.bytes.len() - l.read).min(buf.len());
            buf[..n].copy_from_slice(&l.bytes[l.read..l.read + n]);
            l.read += n;
            if l.read == l.bytes.len() {
                self.lines.pop_front();
            }
            return n;
        }
        let n = self.raw.len().min(buf.len());
        for (d, s) in buf.iter_mut().zip(self.raw.drain(..n)) {
            *d = s;
        }
        n
    }

    /// A master read: the slave's output, after a status byte in packet
    /// mode (a status alone when one is pending). Returns the bytes put
    /// in `buf`.
    pub fn read_master(&mut self, buf: &mut [u8]) -> usize {
        if buf.is_empty() {
            return 0;
        }
        let mut at = 0;
        if self.packet {
            if self.packet_status != 0 {
                buf[0] = std::mem::take(&mut self.packet_status);
                return 1;
            }
            buf[0] = 0;
            at = 1;
        }
        let n = self.output.len().min(buf.len() - at);
        for (d, s) in buf[at..].iter_mut().zip(self.output.drain(..n)) {
            *d = s;
        }
        at + n
    }

    /// Is there something for a master read (output, or a packet status)?
    pub fn master_ready(&self) -> bool {
        !self.output.is_empty() || (self.packet && self.packet_status != 0)
    }

    /// The slave writes `data`: output post-processing into the master's
    /// queue, as much as fits whole. Returns the bytes of `data` taken.
    pub fn write_slave(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        for &c in data {
            if self.output_room() < 2 {
                break;
            }
            self.put_output(c);
            taken += 1;
        }
        taken
    }

    /// One character of output through OPOST.
    fn put_output(&mut self, c: u8) {
        let t = self.termios;
        if t.oflag & oflag::OPOST == 0 {
            self.output.push_back(c);
            return;
        }
        match c {
            b'\n' => {
                if t.oflag & oflag::ONLRET != 0 {
                    self.column = 0;
                }
                if t.oflag & oflag::ONLCR != 0 {
                    self.column = 0;
                    self.output.push_back(b'\r');
                }
                self.output.push_back(b'\n');
            }
            b'\r' => {
                if t.oflag & oflag::ONOCR != 0 && self.column == 0 {
                    return;
                }
                if t.oflag & oflag::OCRNL != 0 {
                    if t.oflag & oflag::ONLRET != 0 {
                        self.column = 0;
                    }
                    self.output.push_back(b'\n');
                    return;
                }
                self.column = 0;
                self.output.push_back(b'\r');
            }
            b'\t' => {
                self.column = (self.column | 7) + 1;
                self.output.push_back(c);
            }
            8 => {
                self.column = self.column.saturating_sub(1);
                self.output.push_back(c);
            }
            _ => {
                if !c.is_ascii_control() {
                    self.column += 1;
                }
                self.output.push_back(c);
            }
        }
    }

    /// Echo `c` (as `^X` for a control character under ECHOCTL).
    fn echo_char(&mut self, c: u8) {
        let ctl = (c < 0x20 && c != b'\t' && c != b'\n') || c == 0x7f;
        if ctl && self.termios.lflag & lflag::ECHOCTL != 0 {
            self.put_output(b'^');
            self.put_output(c ^ 0x40);
        } else {
            self.put_output(c);
        }
    }

    /// Erase the last character of the line being edited (and on the
    /// screen under ECHOE). False when the line was empty.
    fn erase_one(&mut self) -> bool {
        let Some(c) = self.edit.pop() else {
            return false;
        };
        let t = self.termios;
        if t.lflag & lflag::ECHO != 0 && t.lflag & lflag::ECHOE != 0 {
            let ctl = (c < 0x20 && c != b'\t') || c == 0x7f;
            let cols = if ctl && t.lflag & lflag::ECHOCTL != 0 {
                2
            } else {
                1
            };
            for _ in 0..cols {
                self.put_output(8);
                self.put_output(b' ');
                self.put_output(8);
            }
        }
        true
    }

    /// The master writes `data`: the input side of the line discipline,
    /// as much as there is room for. Returns the bytes of `data` taken
    /// and the signals for the foreground group (ISIG).
    pub fn write_master(&mut self, data: &[u8]) -> (usize, Vec<i32>) {
        let mut sigs = Vec::new();
        let mut taken = 0;
        for &c in data {
            if self.input_room() == 0 {
                break;
            }
            taken += 1;
            if let Some(s) = self.receive(c) {
                sigs.push(s);
            }
        }
        (taken, sigs)
    }

    /// One input character. Returns a signal for the foreground group.
    fn receive(&mut self, c: u8) -> Option<i32> {
        let t = self.termios;
        let mut c = if t.iflag & iflag::ISTRIP != 0 {
            c & 0x7f
        } else {
            c
        };
        if self.literal {
            self.literal = false;
            if t.lflag & lflag::ECHO != 0 && t.lflag & lflag::ECHOCTL != 0 {
                // Take back the "^" shown for VLNEXT.
                self.put_output(8);
            }
            self.store(c);
            return None;
        }
        if t.iflag & iflag::IXON != 0 {
            if t.is(cc::VSTOP, c) {
                self.stopped = true;
                return None;
            }
            if t.is(cc::VSTART, c) {
                self.stopped = false;
                return None;
            }
            if t.iflag & iflag::IXANY != 0 {
                self.stopped = false;
            }
        }
        if t.lflag & lflag::ISIG != 0 {
            let sig = if t.is(cc::VINTR, c) {
                Some(SIGINT)
            } else if t.is(cc::VQUIT, c) {
                Some(SIGQUIT)
            } else if t.is(cc::VSUSP, c) {
                Some(SIGTSTP)
            } else {
                None
            };
            if let Some(s) = sig {
                if t.lflag & lflag::NOFLSH == 0 {
                    self.flush_input();
                    self.output.clear();
                }
                if t.lflag & lflag::ECHO != 0 {
                    self.echo_char(c);
                }
                return Some(s);
            }
        }
        match c {
            b'\r' if t.iflag & iflag::IGNCR != 0 => return None,
            b'\r' if t.iflag & iflag::ICRNL != 0 => c = b'\n',
            b'\n' if t.iflag & iflag::INLCR != 0 => c = b'\r',
            _ => {}
        }
        if !t.canonical() {
            if t.lflag & lflag::ECHO != 0 {
                self.echo_char(c);
            }
            self.raw.push_back(c);
            return None;
        }
        let ext = t.lflag & lflag::IEXTEN != 0;
        let echo = t.lflag & lflag::ECHO != 0;
        if t.is(cc::VERASE, c) {
            self.erase_one();
        } else if ext && t.is(cc::VWERASE, c) {
            while self.edit.last().is_some_and(u8::is_ascii_whitespace) {
                self.erase_one();
            }
            while self.edit.last().is_some_and(|b| !b.is_ascii_whitespace()) {
                self.erase_one();
            }
        } else if t.is(cc::VKILL, c) {
            if echo && t.lflag & lflag::ECHOKE != 0 && t.lflag & lflag::ECHOE != 0 {
                while self.erase_one() {}
            } else {
                self.edit.clear();
                if echo {
                    self.echo_char(c);
                    if t.lflag & lflag::ECHOK != 0 {
                        self.put_output(b'\n');
                    }
                }
            }
        } else if ext && t.is(cc::VLNEXT, c) {
            self.literal = true;
            if echo && t.lflag & lflag::ECHOCTL != 0 {
                self.put_output(b'^');
            }
        } else if ext && t.is(cc::VREPRINT, c) {
            if echo {
                self.echo_char(c);
                self.put_output(b'\n');
                for b in self.edit.clone() {
                    self.echo_char(b);
                }
            }
        } else if t.is(cc::VEOF, c) {
            let bytes = std::mem::take(&mut self.edit);
            self.lines.push_back(Line { bytes, read: 0 });
        } else if c == b'\n' || t.is(cc::VEOL, c) || t.is(cc::VEOL2, c) {
            if echo || (c == b'\n' && t.lflag & lflag::ECHONL != 0) {
                self.echo_char(c);
            }
            let mut bytes = std::mem::take(&mut self.edit);
            bytes.push(c);
            self.lines.push_back(Line { bytes, read: 0 });
        } else {
            self.store(c);
        }
        None
    }

    /// Keep an ordinary character (echoed under ECHO).
    fn store(&mut self, c: u8) {
        let t = self.termios;
        if t.lflag & lflag::ECHO != 0 {
            self.echo_char(c);
        }
        if t.canonical() {
            if self.edit.len() < LINE_MAX {
                self.edit.push(c);
            }
        } else {
            self.raw.push_back(c);
        }
    }

    /// TCIFLUSH: drop the input not yet read.
    pub fn flush_input(&mut self) {
        self.edit.clear();
        self.lines.clear();
        self.raw.clear();
        if self.packet {
            self.packet_status |= 1; // TIOCPKT_FLUSHREAD
        }
    }

    /// TCOFLUSH: drop the output not yet read.
    pub fn flush_output(&mut self) {
        self.output.clear();
        if self.packet {
            self.packet_status |= 2; // TIOCPKT_FLUSHWRITE
        }
    }

    /// TCSETS: new attributes. Leaving canonical mode makes what was
    /// typed readable as it is; entering it makes the unread input the
    /// start of the line being edited.
    pub fn set_termios(&mut self, t: Termios) {
        let was = self.termios.canonical();
        self.termios = t;
        match (was, t.canonical()) {
            (true, false) => {
                for l in self.lines.drain(..) {
                    self.raw.extend(&l.bytes[l.read..]);
                }
                self.raw.extend(self.edit.drain(..));
            }
            (false, true) => {
                let mut bytes: Vec<u8> = self.raw.drain(..).collect();
                // Lines already ended by a newline stay lines.
                while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
                    let rest = bytes.split_off(i + 1);
                    self.lines.push_back(Line { bytes, read: 0 });
                    bytes = rest;
                }
                self.edit = bytes;
            }
            _ => {}
        }
    }
}

/// The numbered pairs of one virtual kernel (`/dev/pts`).
#[derive(Debug, Default)]
pub struct Devpts {
    ptys: Mutex<Vec<Option<WeakShared<Pty>>>>,
}

impl Devpts {
    /// A new pair with the lowest free number; None when [`PTY_MAX`] are
    /// open.
    pub fn alloc(&self) -> Option<Shared<Pty>> {
        let mut v = self.ptys.lock().unwrap_or_else(|e| e.into_inner());
        let free = v
            .iter()
            .position(|p| p.as_ref().and_then(WeakShared::upgrade).is_none());
        let i = match free {
            Some(i) => i,
            None if v.len() < PTY_MAX => {
                v.push(None);
                v.len() - 1
            }
            None => return None,
        };
        let p = Shared::new(Pty::new(u32::try_from(i).expect("below PTY_MAX")));
        v[i] = Some(p.downgrade());
        Some(p)
    }

    /// The pair numbered `index`, if its master is open.
    pub fn get(&self, index: u32) -> Option<Shared<Pty>> {
        let v = self.ptys.lock().unwrap_or_else(|e| e.into_inner());
        let p = v.get(index as usize)?.as_ref()?.upgrade()?;
        Some(p)
    }

    /// Forget `index` (its master closed; a slave still open keeps the
    /// pair alive but unreachable by name, as on Linux).
    pub fn release(&self, index: u32) {
        let mut v = self.ptys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = v.get_mut(index as usize) {
            *s = None;
        }
    }

    /// The numbers of the pairs whose master is open, in order.
    pub fn indexes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .live()
            .into_iter()
            .filter_map(|p| {
                let p = p.borrow();
                (p.masters > 0).then_some(p.index)
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// The pair that is the controlling terminal of `session`.
    pub fn of_session(&self, session: i32) -> Option<Shared<Pty>> {
        if session <= 0 {
            return None;
        }
        // Pairs are looked at with the registry unlocked: a pair being
        // hung up holds itself and then the registry.
        self.live()
            .into_iter()
            .find(|p| p.borrow().session == session)
    }

    /// Every pair alive, taken with the registry locked only briefly.
    fn live(&self) -> Vec<Shared<Pty>> {
        let v = self.ptys.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().filter_map(|p| p.as_ref()?.upgrade()).collect()
    }
}

impl super::Fs {
    /// The pseudo-terminal pairs of this tree's `/dev/pts`.
    pub fn devpts(&self) -> &Devpts {
        &self.devpts
    }

    /// A new pair and its `/dev/pts/N` node (mode 0620, owned by `uid`,
    /// `gid`). None when [`PTY_MAX`] pairs are open.
    pub fn pts_create(&self, uid: u32, gid: u32) -> Option<Shared<Pty>> {
        let p = self.devpts.alloc()?;
        if self.pts_dir != 0 {
            let index = p.borrow().index;
            let rdev = pts_rdev(index);
            let mut t = self.lock();
            let name = index.to_string();
            let h = t.add_mem(
                self.pts_dir,
                name.as_bytes(),
                libc::S_IFCHR | 0o620,
                super::node::Body::Dev(rdev),
            );
            if let Ok(n) = t.get_mut(h) {
                (n.meta.rdev, n.meta.uid, n.meta.gid) = (rdev as u64, uid, gid);
            }
        }
        Some(p)
    }

    /// The node of `/dev/pts/{index}` (`Some`) or of `/dev/ptmx` (`None`),
    /// what fstat of a pair's end reports.
    pub fn pty_node(&self, index: Option<u32>) -> Option<u64> {
        if self.pts_dir == 0 {
            return None;
        }
        let t = self.lock();
        let (dir, name) = match index {
            Some(i) => (self.pts_dir, i.to_string().into_bytes()),
            None => (t.get(self.pts_dir).ok()?.parent, b"ptmx".to_vec()),
        };
        match t.get(dir).ok()?.dir()?.entries.get(&name[..]) {
            Some(super::node::Slot::Node(h)) => Some(*h),
            _ => None,
        }
    }

    /// The master of pair `index` closed: it leaves `/dev/pts`. (If the
    /// tree is busy, as when the last reference went with a node of the
    /// tree, the name stays until the number is used again; opening it
    /// meanwhile fails with EIO.)
    pub fn pts_remove(&self, index: u32) {
        self.devpts.release(index);
        if self.pts_dir == 0 {
            return;
        }
        let Ok(mut t) = self.table.try_lock() else {
            return;
        };
        let name = index.to_string();
        let h = match t.get(self.pts_dir).ok().and_then(|d| d.dir()) {
            Some(d) => match d.entries.get(name.as_bytes()) {
                Some(super::node::Slot::Node(h)) => *h,
                _ => return,
            },
            None => return,
        };
        if let Some(d) = t.get_mut(self.pts_dir).ok().and_then(|d| d.dir_mut()) {
            d.entries.remove(name.as_bytes());
        }
        t.drop_link(h);
    }
}

#[cfg(test)]
#[path = "pty_tests.rs"]
mod tests;
