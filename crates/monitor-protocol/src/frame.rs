//! Length-prefixed frames: a big-endian `u32` length, then that many bytes of JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// The largest frame body either side accepts (1 MiB: a list of thousands of containers).
pub const MAX_FRAME: usize = 1024 * 1024;

const HEADER: usize = 4;

/// Why a frame could not be made or read.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length prefix (or an outgoing body) exceeds [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge {
        /// The length.
        len: usize,
    },
    /// The body is not the expected JSON message.
    #[error("malformed message")]
    Malformed {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A message as one frame: header and body.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0; HEADER];
    serde_json::to_writer(&mut frame, message)
        .map_err(|source| FrameError::Malformed { source })?;
    let len = frame.len() - HEADER;
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_FRAME)
        .ok_or(FrameError::TooLarge { len })?;
    frame[..HEADER].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// The message in a frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|source| FrameError::Malformed { source })
}

/// Collects bytes as they arrive and yields complete frame bodies. It holds at most one partial
/// frame beyond what has been pushed, and frees its buffer when it has nothing pending.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    /// Bytes at the front of `buffer` already handed out.
    consumed: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed. After an error the stream
    /// cannot be resynchronised and the connection should be closed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let pending = &self.buffer[self.consumed..];
        let Some(header) = pending.first_chunk::<HEADER>() else {
            self.release_if_empty();
            return Ok(None);
        };
        let len = usize::try_from(u32::from_be_bytes(*header)).unwrap_or(usize::MAX);
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge { len });
        }
        if pending.len() < HEADER + len {
            return Ok(None);
        }
        let start = self.consumed + HEADER;
        self.consumed = start + len;
        Ok(Some(&self.buffer[start..start + len]))
    }

    /// How many bytes are buffered and not yet handed out.
    pub fn pending(&self) -> usize {
        self.buffer.len() - self.consumed
    }

    /// The bytes buffered and not yet handed out (a monitor hands them to its successor when it
    /// is upgraded in place, which [`push`](Self::push)es them into a new decoder).
    pub fn pending_bytes(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }

    fn release_if_empty(&mut self) {
        if self.pending() == 0 {
            self.buffer = Vec::new();
            self.consumed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Request;

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut bytes = encode(&Request::List).unwrap();
        bytes.extend(encode(&Request::Start { id: "a".into() }).unwrap());
        let mut decoder = FrameDecoder::new();
        let mut seen = Vec::new();
        for byte in bytes {
            decoder.push(&[byte]);
            while let Some(body) = decoder.next_frame().unwrap() {
                seen.push(decode::<Request>(body).unwrap());
            }
        }
        assert_eq!(seen, [Request::List, Request::Start { id: "a".into() }]);
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new();
        let len = u32::try_from(MAX_FRAME + 1).unwrap();
        decoder.push(&len.to_be_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { len }) if len == MAX_FRAME + 1
        ));
    }

    #[test]
    fn an_oversized_message_is_not_encoded() {
        let huge = Request::Start {
            id: "x".repeat(MAX_FRAME),
        };
        assert!(matches!(encode(&huge), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn a_body_that_is_no_request_is_malformed() {
        assert!(matches!(
            decode::<Request>(br#"{"request":"reboot"}"#),
            Err(FrameError::Malformed { .. })
        ));
    }
}
