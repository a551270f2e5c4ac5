//! The signals testudoctl watches while it holds a session with a container: those that end an
//! attached session, and those a foreground `run` passes on.

use std::future::poll_fn;
use std::task::Poll;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::CtlError;

/// The signals that end an attached session (exec, attach, `run -i`).
pub(crate) const ENDING: [SignalKind; 3] = [
    SignalKind::interrupt(),
    SignalKind::terminate(),
    SignalKind::hangup(),
];

/// The signals a foreground `run` passes on to its container (those a terminal or `kill`
/// sends to a foreground job; not SIGKILL, SIGSTOP or the terminal's job control).
pub(crate) const PROXIED: [SignalKind; 6] = [
    SignalKind::interrupt(),
    SignalKind::terminate(),
    SignalKind::hangup(),
    SignalKind::quit(),
    SignalKind::user_defined1(),
    SignalKind::user_defined2(),
];

/// A set of watched signals, caught from [`Signals::watch`] on.
pub(crate) struct Signals(Vec<(i32, Signal)>);

impl Signals {
    /// Catches `kinds` from now on.
    pub(crate) fn watch(kinds: &[SignalKind]) -> Result<Signals, CtlError> {
        kinds
            .iter()
            .map(|&kind| Ok((kind.as_raw_value(), signal(kind)?)))
            .collect::<Result<_, std::io::Error>>()
            .map(Signals)
            .map_err(CtlError::Signals)
    }

    /// The number of the next signal that comes (never, once the signal driver is gone).
    pub(crate) async fn next(&mut self) -> i32 {
        poll_fn(|cx| {
            for (number, signal) in &mut self.0 {
                if let Poll::Ready(Some(())) = signal.poll_recv(cx) {
                    return Poll::Ready(*number);
                }
            }
            Poll::Pending
        })
        .await
    }
}
