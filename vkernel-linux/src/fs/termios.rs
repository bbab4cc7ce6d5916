//! Terminal attributes as Linux's `struct termios`/`termios2` hold them:
//! the flags the pseudo-terminal line discipline ([`super::pty`]) obeys,
//! the control characters, and the byte layout the TCGETS/TCSETS family
//! of ioctls moves.

/// Size of `struct termios` (TCGETS): four flag words, the line, 19
/// control characters.
pub const TERMIOS_SIZE: usize = 36;
/// Size of `struct termios2` (TCGETS2): `termios` and the two speeds.
pub const TERMIOS2_SIZE: usize = 44;

/// Input flags (c_iflag).
pub mod iflag {
    /// Ignore carriage return on input.
    pub const IGNCR: u32 = 0o200;
    /// Translate carriage return to newline on input.
    pub const ICRNL: u32 = 0o400;
    /// Translate newline to carriage return on input.
    pub const INLCR: u32 = 0o100;
    /// Strip the eighth bit.
    pub const ISTRIP: u32 = 0o040;
    /// Start/stop output control (VSTART/VSTOP).
    pub const IXON: u32 = 0o2000;
    /// Any character restarts stopped output.
    pub const IXANY: u32 = 0o4000;
}

/// Output flags (c_oflag).
pub mod oflag {
    /// Post-process output.
    pub const OPOST: u32 = 0o1;
    /// Map newline to carriage return + newline on output.
    pub const ONLCR: u32 = 0o4;
    /// Map carriage return to newline on output.
    pub const OCRNL: u32 = 0o10;
    /// Do not output carriage return at column 0.
    pub const ONOCR: u32 = 0o20;
    /// Newline performs the carriage return function.
    pub const ONLRET: u32 = 0o40;
}

/// Local flags (c_lflag).
pub mod lflag {
    /// INTR, QUIT and SUSP generate signals.
    pub const ISIG: u32 = 0o1;
    /// Canonical mode: input arrives a line at a time, with editing.
    pub const ICANON: u32 = 0o2;
    /// Echo input characters.
    pub const ECHO: u32 = 0o10;
    /// ERASE erases the previous character on the screen.
    pub const ECHOE: u32 = 0o20;
    /// KILL is echoed as a newline.
    pub const ECHOK: u32 = 0o40;
    /// Echo newline even without ECHO.
    pub const ECHONL: u32 = 0o100;
    /// Do not flush the queues on INTR, QUIT, SUSP.
    pub const NOFLSH: u32 = 0o200;
    /// Background writers get SIGTTOU.
    pub const TOSTOP: u32 = 0o400;
    /// Echo control characters as `^X`.
    pub const ECHOCTL: u32 = 0o1000;
    /// KILL erases each character of the line on the screen.
    pub const ECHOKE: u32 = 0o4000;
    /// Extended input processing (LNEXT, WERASE, REPRINT).
    pub const IEXTEN: u32 = 0o100000;
}

/// Indexes of the control characters (c_cc).
pub mod cc {
    /// Interrupt (SIGINT).
    pub const VINTR: usize = 0;
    /// Quit (SIGQUIT).
    pub const VQUIT: usize = 1;
    /// Erase a character.
    pub const VERASE: usize = 2;
    /// Erase the line.
    pub const VKILL: usize = 3;
    /// End of file.
    pub const VEOF: usize = 4;
    /// Non-canonical read timeout (tenths of a second).
    pub const VTIME: usize = 5;
    /// Non-canonical read minimum.
    pub const VMIN: usize = 6;
    /// Restart output.
    pub const VSTART: usize = 8;
    /// Stop output.
    pub const VSTOP: usize = 9;
    /// Suspend (SIGTSTP).
    pub const VSUSP: usize = 10;
    /// Additional end of line.
    pub const VEOL: usize = 11;
    /// Reprint the line being edited.
    pub const VREPRINT: usize = 12;
    /// Erase a word.
    pub const VWERASE: usize = 14;
    /// Take the next character literally.
    pub const VLNEXT: usize = 15;
    /// Yet another end of line.
    pub const VEOL2: usize = 16;
}

/// B38400 | CS8 | CREAD | HUPCL: a new pseudo-terminal's c_cflag.
const DEFAULT_CFLAG: u32 = 0o000277;

/// One terminal's attributes.
///
/// ```
/// use vkernel_linux::fs::termios::{lflag, Termios};
/// let t = Termios::default();
/// assert!(t.lflag & lflag::ICANON != 0);
/// let back = Termios::from_bytes(&t.to_bytes(false));
/// assert_eq!(back, t);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub iflag: u32,
    /// Output modes.
    pub oflag: u32,
    /// Control modes.
    pub cflag: u32,
    /// Local modes.
    pub lflag: u32,
    /// The line discipline (0: N_TTY).
    pub line: u8,
    /// Control characters.
    pub cc: [u8; 19],
    /// Input speed (termios2), in bits per second.
    pub ispeed: u32,
    /// Output speed (termios2), in bits per second.
    pub ospeed: u32,
}

impl Default for Termios {
    /// What Linux gives a new pseudo-terminal (`tty_std_termios`).
    fn default() -> Self {
        let mut c = [0u8; 19];
        for (i, v) in [
            (cc::VINTR, 3),
            (cc::VQUIT, 0x1c),
            (cc::VERASE, 0x7f),
            (cc::VKILL, 0x15),
            (cc::VEOF, 4),
            (cc::VMIN, 1),
            (cc::VSTART, 0x11),
            (cc::VSTOP, 0x13),
            (cc::VSUSP, 0x1a),
            (cc::VREPRINT, 0x12),
            (13, 0x0f), // VDISCARD
            (cc::VWERASE, 0x17),
            (cc::VLNEXT, 0x16),
        ] {
            c[i] = v;
        }
        Termios {
            iflag: iflag::ICRNL | iflag::IXON,
            oflag: oflag::OPOST | oflag::ONLCR,
            cflag: DEFAULT_CFLAG,
            lflag: lflag::ISIG
                | lflag::ICANON
                | lflag::ECHO
                | lflag::ECHOE
                | lflag::ECHOK
                | lflag::ECHOCTL
                | lflag::ECHOKE
                | lflag::IEXTEN,
            line: 0,
            cc: c,
            ispeed: 38400,
            ospeed: 38400,
        }
    }
}

impl Termios {
    /// `struct termios` (36 bytes) or, with `two`, `struct termios2`.
    pub fn to_bytes(&self, two: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(TERMIOS2_SIZE);
        for w in [self.iflag, self.oflag, self.cflag, self.lflag] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.push(self.line);
        b.extend_from_slice(&self.cc);
        if two {
            b.extend_from_slice(&self.ispeed.to_le_bytes());
            b.extend_from_slice(&self.ospeed.to_le_bytes());
        }
        b
    }

    /// Parse `struct termios` or `termios2` (by length). The speeds of a
    /// plain `termios` are those its c_cflag names (38400 otherwise).
    pub fn from_bytes(b: &[u8]) -> Termios {
        let w = |i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let mut c = [0u8; 19];
        c.copy_from_slice(&b[17..TERMIOS_SIZE]);
        let cflag = w(2);
        let (ispeed, ospeed) = if b.len() >= TERMIOS2_SIZE {
            (w(10), w(9))
        } else {
            let s = speed_of(cflag);
            (s, s)
        };
        Termios {
            iflag: w(0),
            oflag: w(1),
            cflag,
            lflag: w(3),
            line: b[16],
            cc: c,
            ispeed,
            ospeed,
        }
    }

    /// Canonical mode?
    pub fn canonical(&self) -> bool {
        self.lflag & lflag::ICANON != 0
    }

    /// Is `c` the (enabled) control character at index `i`?
    pub fn is(&self, i: usize, c: u8) -> bool {
        self.cc[i] != 0 && self.cc[i] == c
    }
}

/// Bits per second of the speed code in `cflag` (CBAUD), 38400 for
/// codes this table does not know.
fn speed_of(cflag: u32) -> u32 {
    const SPEEDS: [u32; 16] = [
        0, 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
    ];
    let code = cflag & 0o10017;
    match code {
        c if c < 16 => SPEEDS[c as usize],
        0o10001 => 57600,
        0o10002 => 115200,
        0o10003 => 230400,
        0o10004 => 460800,
        _ => 38400,
    }
}
