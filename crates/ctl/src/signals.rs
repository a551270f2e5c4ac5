//! The signals testudoctl watches while it holds a session with a container: those that end an
//! exec session, and those a foreground `run`, `run -i/-t` and `attach` pass on to the container.

use std::future::poll_fn;
use std::task::Poll;

use testudo_client::Client;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::CtlError;

/// The signals that end an exec session.
pub(crate) const ENDING: [SignalKind; 3] = [
    SignalKind::interrupt(),
    SignalKind::terminate(),
    SignalKind::hangup(),
];

/// The signals a foreground `run`, `run -i/-t` and `attach` pass on to the container (those a
/// terminal or `kill` sends to a foreground job; not SIGKILL, SIGSTOP or the terminal's job
/// control).
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

/// Sends signal `number` to container `container` of `ns`. A signal the container can no
/// longer get (it is exiting) is reported and dropped: the session tells how it ended.
pub(crate) async fn pass_on(client: &mut Client, ns: &str, container: &str, number: i32) {
    let number = number.to_string();
    if let Err(e) = client.kill_container(ns, container, &number).await {
        eprintln!("testudoctl: signal {number} not passed on: {e}");
    }
}
