//! Signal names and numbers as `kill` takes them (`TERM`, `SIGTERM`, `15`).

/// A signal `kill` does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal `{0}`: give a name (TERM, SIGKILL) or a number (1-64)")]
pub struct SignalError(pub String);

/// The names Linux gives its signals, by number.
const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("SYS", libc::SIGSYS),
];

/// The number of signal `s`.
pub fn parse(s: &str) -> Result<i32, SignalError> {
    let bad = || SignalError(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    // RTMIN+N / RTMAX-N.
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().ok()?
        };
        let n = base + sign * off;
        (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(libc::SIGRTMIN(), rest.trim_start_matches('+'), 1).ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(libc::SIGRTMAX(), rest.trim_start_matches('-'), -1).ok_or_else(bad);
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM"), Ok(15));
        assert_eq!(parse("SIGKILL"), Ok(9));
        assert_eq!(parse("sigint"), Ok(2));
        assert_eq!(parse("15"), Ok(15));
        assert_eq!(parse("RTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert!(parse("0").is_err());
        assert!(parse("NOPE").is_err());
        assert!(parse("65").is_err());
    }
}
