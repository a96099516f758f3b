//! A body fed piece by piece through a small channel: a streamed body on
//! its way into an HTTP/2 stream (hyper polls it), with back-pressure.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Pieces in flight between a streamed body's reader and the HTTP/2
/// connection that sends them.
const CHANNEL: usize = 4;

/// A body fed through a channel (it holds a few pieces). An `Err` from the
/// feeder resets the stream.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    length: Option<u64>,
}

/// The feeding end of a [`ChannelBody`].
pub(crate) type Feed = mpsc::Sender<Result<Bytes, io::Error>>;

impl ChannelBody {
    /// A body of `length` bytes if known, and its feeding end.
    pub(crate) fn new(length: Option<u64>) -> (Feed, Self) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        (tx, Self { rx, length })
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A body an HTTP/2 peer is sent: whole, or fed through a channel.
pub(crate) type H2Body = http_body_util::Either<http_body_util::Full<Bytes>, ChannelBody>;
