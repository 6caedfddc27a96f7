//! Response bodies of the sample application: sized payloads and a paced stream.
//!
//! Payload bytes come from one shared 64 KiB buffer sliced per response, so a
//! response costs no copy and no per-request allocation beyond its headers; the
//! demo wants the CPU spent in the proxy, not in building filler. The export
//! endpoint streams its body at a fixed rate while holding its worker slot, so a
//! slow export occupies capacity the way a real report generator does; the slot
//! is released when the body ends or when the client goes away (the body is
//! dropped).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Size of the shared filler buffer and of each streamed chunk.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// The shared filler: printable text so a captured body reads as text.
fn filler() -> &'static Bytes {
    static FILLER: OnceLock<Bytes> = OnceLock::new();
    FILLER.get_or_init(|| {
        let line = b"headroom sample application payload 0123456789 abcdefghijklmnopqrstuvwxyz\n";
        Bytes::from(
            line.iter()
                .copied()
                .cycle()
                .take(CHUNK_BYTES)
                .collect::<Vec<u8>>(),
        )
    })
}

/// `len` filler bytes (repeating the buffer past 64 KiB). Allocates only above 64 KiB.
pub(crate) fn payload(len: usize) -> Bytes {
    if len <= CHUNK_BYTES {
        return filler().slice(..len);
    }
    let mut buffer = Vec::with_capacity(len);
    while buffer.len() < len {
        let take = (len - buffer.len()).min(CHUNK_BYTES);
        buffer.extend_from_slice(&filler()[..take]);
    }
    Bytes::from(buffer)
}

/// A body of `total` bytes sent in 64 KiB chunks at `bytes_per_sec`, holding a
/// worker slot (`S`, released by dropping it) until the last chunk is handed
/// to the connection.
///
/// Pacing is by deadline (chunk *n* is due at `start + n * chunk / rate`), so
/// timer granularity (about 1 ms in tokio) does not accumulate into drift.
/// A zero rate is treated as unpaced.
pub(crate) struct PacedBody<S> {
    remaining: u64,
    sent: u64,
    bytes_per_sec: u64,
    started: Instant,
    sleep: Pin<Box<Sleep>>,
    slot: Option<S>,
}

impl<S: Unpin> PacedBody<S> {
    /// A paced body that releases `slot` when it ends or is dropped.
    pub(crate) fn new(total: u64, bytes_per_sec: u64, slot: S) -> Self {
        let started = Instant::now();
        Self {
            remaining: total,
            sent: 0,
            bytes_per_sec,
            started,
            sleep: Box::pin(tokio::time::sleep_until(started)),
            slot: Some(slot),
        }
    }

    /// When the chunk after `sent` bytes is due.
    fn due(&self) -> Instant {
        if self.bytes_per_sec == 0 {
            return self.started;
        }
        let micros = u128::from(self.sent) * 1_000_000 / u128::from(self.bytes_per_sec);
        self.started + Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

impl<S: Unpin> Body for PacedBody<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            // The last chunk has been handed over: free the worker slot now,
            // not when hyper gets round to dropping the body.
            self.slot = None;
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let len = self.remaining.min(CHUNK_BYTES as u64);
        let chunk = filler().slice(..usize::try_from(len).expect("len <= CHUNK_BYTES"));
        self.remaining -= len;
        self.sent += len;
        let due = self.due();
        self.sleep.as_mut().reset(due);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use tokio::sync::{OwnedSemaphorePermit, Semaphore};

    use super::*;

    #[test]
    fn payload_has_the_requested_length_above_and_below_one_chunk() {
        assert_eq!(payload(0).len(), 0);
        assert_eq!(payload(1_000).len(), 1_000);
        assert_eq!(payload(3 * CHUNK_BYTES + 7).len(), 3 * CHUNK_BYTES + 7);
    }

    #[tokio::test]
    async fn paced_body_takes_its_time_and_frees_the_slot_at_the_end() {
        let slots = Arc::new(Semaphore::new(1));
        let permit = Arc::clone(&slots)
            .try_acquire_owned()
            .expect("one free slot");
        // 256 KiB at 8 MiB/s: four chunks due at 0, 7.8, 15.6 and 23.4 ms.
        let body: PacedBody<OwnedSemaphorePermit> =
            PacedBody::new(256 * 1024, 8 * 1024 * 1024, permit);
        assert_eq!(body.size_hint().exact(), Some(256 * 1024));
        let started = std::time::Instant::now();
        let collected = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(collected.len(), 256 * 1024);
        assert!(
            started.elapsed() >= Duration::from_millis(23),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(slots.available_permits(), 1);
    }
}
