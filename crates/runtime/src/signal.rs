//! Signal names and numbers as `kill` accepts them (`TERM`, `SIGTERM`, `15`, `RTMIN+3`).

use thiserror::Error;

/// The signal given to `kill` is not one this system knows.
#[derive(Debug, Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

const NAMES: &[(&str, i32)] = &[
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
    ("CLD", libc::SIGCHLD),
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
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal name (with or without `SIG`, any case) or number.
pub fn parse_signal(text: &str) -> Result<i32, UnknownSignal> {
    let unknown = || UnknownSignal(text.to_string());
    let max = libc::SIGRTMAX();
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=max).contains(&n) {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(s, _)| *s == name) {
        return Ok(n);
    }
    let min = libc::SIGRTMIN();
    let realtime = if let Some(rest) = name.strip_prefix("RTMIN") {
        offset(rest, '+').map(|o| min + o)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        offset(rest, '-').map(|o| max - o)
    } else {
        None
    };
    realtime
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(unknown)
}

/// The `N` of `RTMIN+N` / `RTMAX-N`; zero when there is no suffix.
fn offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix(sign)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime_signals() {
        assert_eq!(parse_signal("TERM").ok(), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigkill").ok(), Some(libc::SIGKILL));
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("RTMIN+2").ok(), Some(libc::SIGRTMIN() + 2));
        assert_eq!(parse_signal("RTMAX-1").ok(), Some(libc::SIGRTMAX() - 1));
        for bad in ["FOO", "0", "65", "-1", "RTMIN+99", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
