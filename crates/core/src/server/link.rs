//! One connection as the server sees it: the framed stream and the
//! requests the client queued behind the one being served.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_lite::future::or;

use super::ConnStats;
use crate::conn::{Conn, ConnError, Wait, kind};
use crate::protocol::codec::Frame;
use crate::protocol::{FileRef, MAX_HAVE, Message};
use crate::runtime::Runtime;
use crate::transport::Stream;

/// While a request takes a while before its first answer (hashing a large
/// file, syncing an upload), the client hears `Working` this often, well
/// within the shortest stall timeout a client may set (one second).
const TICK: Duration = Duration::from_millis(200);

/// Longest raw name a request may carry: four bytes per character of the
/// longest valid name. Anything longer is not a mistake but an attack on
/// the queue's memory.
const MAX_RAW_NAME: usize = 4 * crate::name::MAX_NAME_BYTES;

pub(super) struct Link<St, R> {
    pub(super) conn: Conn<St, R>,
    /// Requests that arrived while an earlier one was being served.
    pub(super) queue: VecDeque<Message>,
    /// A refused upload whose data and manifest pages may still be on the
    /// way: they are dropped quietly, so the uploader reads the refusal
    /// instead of a reset connection.
    pub(super) discard: Option<u32>,
    /// "peer (address, cert …)", for logs.
    pub(super) who: String,
    /// The fingerprint the transport proved, if any.
    pub(super) identity: Option<crate::transport::Fingerprint>,
    /// What the gate made of the client.
    pub(super) standing: super::Standing,
    pub(super) stats: ConnStats,
    pub(super) max_queued: usize,
    /// The connection's number among the server's.
    pub(super) id: super::admission::ConnId,
    /// The host it comes from (its share of the send budget is per host).
    pub(super) host: std::sync::Arc<str>,
    /// Where it comes from (`host:port`).
    pub(super) remote: String,
    /// Its client's capability bits (it takes turns at partial sources
    /// with `CAP_CHOKE`, tells which blocks it got elsewhere with
    /// `CAP_GOT`).
    pub(super) caps: u32,
    /// Whether it was pointed elsewhere for a manifest (at most once: asked
    /// again, it is sent the manifest).
    pub(super) pointed: bool,
}

impl<St: Stream, R: Runtime> Link<St, R> {
    /// The next request: queued, or read from the stream (waiting up to
    /// `idle`). `None` when the client closed the connection.
    pub(super) async fn next_request(&mut self, idle: Duration) -> Result<Option<Message>, ConnError> {
        if let Some(m) = self.queue.pop_front() {
            return Ok(Some(m));
        }
        loop {
            match self.conn.read_frame(Wait::Idle(idle)).await? {
                None => return Ok(None),
                Some(Frame::Control(m)) => {
                    if self.is_discarded(&m) {
                        continue;
                    }
                    check_request(&m)?;
                    return Ok(Some(m));
                }
                Some(Frame::Data(d)) if Some(d.id) == self.discard => {}
                Some(Frame::Data(d)) => {
                    return Err(ConnError::Unexpected(format!("data for request {} that is not an upload", d.id)));
                }
            }
        }
    }

    /// Takes the requests that arrived while request `id` is being served,
    /// without waiting. Returns true if one of them cancels `id`.
    pub(super) async fn take_incoming(&mut self, id: u32) -> Result<bool, ConnError> {
        while let Some(frame) = self.conn.try_read_frame().await? {
            match frame {
                Frame::Control(m) => {
                    if self.take(m, id)? {
                        return Ok(true);
                    }
                }
                Frame::Data(d) if Some(d.id) == self.discard => {}
                Frame::Data(d) => {
                    return Err(ConnError::Unexpected(format!("data for request {} that is not an upload", d.id)));
                }
            }
        }
        Ok(false)
    }

    /// Takes one control message that arrived while request `id` runs.
    /// Returns true if it cancels `id`.
    pub(super) fn take(&mut self, m: Message, id: u32) -> Result<bool, ConnError> {
        if self.is_discarded(&m) {
            return Ok(false);
        }
        check_request(&m)?;
        match m {
            Message::Cancel { id: c } if c == id => Ok(true),
            Message::Cancel { id: c } => {
                let queued = self.queue.len();
                self.queue.retain(|q| request_id(q) != Some(c));
                // Not a queued request: perhaps a subscription, which the
                // request loop ends.
                if self.queue.len() == queued && self.queue.len() < self.max_queued {
                    self.queue.push_back(Message::Cancel { id: c });
                }
                Ok(false)
            }
            m => {
                if self.queue.len() >= self.max_queued {
                    return Err(ConnError::Unexpected(format!("more than {} requests queued", self.max_queued)));
                }
                self.queue.push_back(m);
                Ok(false)
            }
        }
    }

    fn is_discarded(&self, m: &Message) -> bool {
        matches!(m, Message::ManifestPage { id, .. } if Some(*id) == self.discard)
    }

    /// Runs `work` for request `id`, telling the client every [`TICK`] that
    /// it is still being worked on.
    pub(super) async fn working<T>(&mut self, id: u32, work: impl Future<Output = T>) -> Result<T, ConnError> {
        let mut work = pin!(work);
        loop {
            let tick = self.conn.rt().sleep(TICK);
            let done = or(async { Some(work.as_mut().await) }, async {
                tick.await;
                None
            })
            .await;
            match done {
                Some(v) => return Ok(v),
                // Sent outside the race, so a message is never cut short.
                None => self.conn.send(&Message::Working { id }).await?,
            }
        }
    }
}

/// Refuses anything a client may not send as a request, and requests too
/// large to be honest, before they take any room in the queue.
fn check_request(m: &Message) -> Result<(), ConnError> {
    let too_long = |name: &str| name.len() > MAX_RAW_NAME;
    match m {
        Message::List { .. }
        | Message::Read { .. }
        | Message::Cancel { .. }
        | Message::Subscribe { .. }
        | Message::Interest { .. } => Ok(()),
        Message::Got { blocks, .. } if blocks.len() <= MAX_HAVE => Ok(()),
        Message::Got { .. } => Err(ConnError::Unexpected(format!("a Got of more than {MAX_HAVE} blocks"))),
        Message::GetManifest { file: FileRef::Hash(_), .. } => Ok(()),
        Message::GetManifest { file: FileRef::Name(n), .. } | Message::Offer { name: n, .. } if !too_long(n) => Ok(()),
        Message::GetManifest { .. } | Message::Offer { .. } => {
            Err(ConnError::Unexpected(format!("a name of more than {MAX_RAW_NAME} bytes")))
        }
        other => Err(ConnError::Unexpected(format!("{} is not a request", kind(other)))),
    }
}

fn request_id(m: &Message) -> Option<u32> {
    match m {
        Message::List { id }
        | Message::GetManifest { id, .. }
        | Message::Read { id, .. }
        | Message::Subscribe { id, .. }
        | Message::Offer { id, .. } => Some(*id),
        _ => None,
    }
}
