//! The local terminal of `exec -t`, `attach` and `run -t`: raw mode while a session runs, its
//! size, and the detach keys.
//!
//! Raw mode is a guard: [`RawMode`] restores the settings it found when dropped, which happens on
//! every way out of a session (its end, an error, a signal that ends it, a panic's unwinding),
//! since each of them returns through the function that holds it.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::termios::{self, OptionalActions, Termios};

/// A terminal in raw mode until dropped.
pub(crate) struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode: bytes reach testudoctl as typed (ctrl-c too, for
    /// the container's terminal to turn into a signal), without local echo.
    pub(crate) fn enable(fd: BorrowedFd<'static>) -> io::Result<RawMode> {
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Drain: what was written in raw mode is shown as such, before the settings change.
        if let Err(e) = termios::tcsetattr(self.fd, OptionalActions::Drain, &self.saved) {
            eprintln!("testudoctl: cannot restore the terminal: {e}");
        }
    }
}

/// Whether `fd` is a terminal.
pub(crate) fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    termios::isatty(fd)
}

/// The size of terminal `fd` as (columns, rows); `None` when it is not a terminal or reports
/// no size.
pub(crate) fn size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    termios::tcgetwinsize(fd)
        .ok()
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map(|w| (w.ws_col, w.ws_row))
}

/// ctrl-p ctrl-q, docker's default detach sequence.
const DETACH_SEQUENCE: [u8; 2] = [0x10, 0x11];

/// Finds the detach sequence in typed input, also when it is split across reads.
#[derive(Debug, Default)]
pub(crate) struct DetachKeys {
    /// How many bytes of the sequence ended the input so far, held back until the next byte
    /// tells whether they are the sequence or input.
    matched: usize,
}

/// What typed input amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Typed {
    /// Bytes for the process (possibly none, while a sequence may be starting).
    Input(Vec<u8>),
    /// The detach sequence, after these bytes for the process.
    Detach(Vec<u8>),
}

impl DetachKeys {
    /// Splits `bytes` into input and a detach.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> Typed {
        let mut input = Vec::with_capacity(bytes.len() + self.matched);
        for &byte in bytes {
            if byte == DETACH_SEQUENCE[self.matched] {
                self.matched += 1;
                if self.matched == DETACH_SEQUENCE.len() {
                    self.matched = 0;
                    return Typed::Detach(input);
                }
                continue;
            }
            // Not the sequence after all: what was held back is input.
            input.extend_from_slice(&DETACH_SEQUENCE[..self.matched]);
            self.matched = 0;
            if byte == DETACH_SEQUENCE[0] {
                self.matched = 1;
            } else {
                input.push(byte);
            }
        }
        Typed::Input(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_sequence_is_found_even_split_across_reads() {
        let mut keys = DetachKeys::default();
        assert_eq!(keys.scan(b"ls\r"), Typed::Input(b"ls\r".to_vec()));
        assert_eq!(keys.scan(b"a\x10"), Typed::Input(b"a".to_vec()));
        assert_eq!(keys.scan(b"\x11rest"), Typed::Detach(Vec::new()));
        assert_eq!(keys.scan(b"x\x10\x11"), Typed::Detach(b"x".to_vec()));
    }

    #[test]
    fn a_lone_ctrl_p_is_passed_on() {
        let mut keys = DetachKeys::default();
        assert_eq!(keys.scan(b"\x10"), Typed::Input(Vec::new()));
        assert_eq!(keys.scan(b"k"), Typed::Input(b"\x10k".to_vec()));
        assert_eq!(keys.scan(b"\x10\x10"), Typed::Input(b"\x10".to_vec()));
        assert_eq!(keys.scan(b"\x11"), Typed::Detach(Vec::new()));
    }
}
