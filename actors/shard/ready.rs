//! Readiness of a registered descriptor as a stream of "drain me" events, so the shard actor
//! owns the descriptor's state and drains it in batches from `StreamHandler::handle`: one event
//! per batch, never one actor message per packet.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix::prelude::Stream;
use tokio::io::unix::AsyncFd;

/// Which descriptor of the shard became readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Cleartext,
    Udp(usize),
    RawEsp(usize),
    RawAh(usize),
}

/// Yields `source` each time the descriptor becomes readable. Readiness is cleared before the
/// event is handed out and the handler reads until `EAGAIN`, so a packet that arrives during
/// the drain is either read by it or raises a fresh edge.
pub struct Readable<T: AsRawFd> {
    fd: Rc<AsyncFd<T>>,
    source: Source,
}

impl<T: AsRawFd> Readable<T> {
    pub fn new(fd: Rc<AsyncFd<T>>, source: Source) -> Self {
        Readable { fd, source }
    }
}

impl<T: AsRawFd> Stream for Readable<T> {
    type Item = Source;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Source>> {
        let this = self.get_mut();
        match this.fd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                Poll::Ready(Some(this.source))
            }
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
