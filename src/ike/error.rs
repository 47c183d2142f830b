//! The protocol error of the IKE layer (docs/design.md convention 4): what went wrong in operator
//! terms, and the notify it produces toward the peer.

use std::fmt;

use crate::wire::isakmp::NotifyType;

/// An exchange could not go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeError {
    /// The notify to send (or that was received); `None` for a silent drop.
    pub notify: Option<NotifyType>,
    /// Operator-readable reason for the log and `Event::Failed`.
    pub reason: String,
    /// Whether the exchange it happened in is over (`true`) or the message is merely dropped
    /// and the exchange may still complete (a forged or corrupted datagram).
    pub fatal: bool,
}

impl IkeError {
    /// Fatal, answered with `notify`.
    pub fn notify(notify: NotifyType, reason: impl Into<String>) -> Self {
        Self {
            notify: Some(notify),
            reason: reason.into(),
            fatal: true,
        }
    }

    /// Fatal, no notify.
    pub fn fatal(reason: impl Into<String>) -> Self {
        Self {
            notify: None,
            reason: reason.into(),
            fatal: true,
        }
    }

    /// The message is dropped; the exchange goes on.
    pub fn drop(reason: impl Into<String>) -> Self {
        Self {
            notify: None,
            reason: reason.into(),
            fatal: false,
        }
    }

    pub fn malformed(what: impl fmt::Display) -> Self {
        Self::notify(
            NotifyType::PAYLOAD_MALFORMED,
            format!("malformed message: {what}"),
        )
    }
}

impl fmt::Display for IkeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.notify {
            Some(n) => write!(f, "{} ({})", self.reason, n),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for IkeError {}

pub type IkeResult<T> = Result<T, IkeError>;
