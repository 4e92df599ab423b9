//! The sans-IO xenstore client: request multiplexing, watch queues, resume.
//!
//! [`Client`] never touches the ring. Callers move bytes: [`Client::output`] /
//! [`Client::consume_output`] towards the daemon, [`Client::receive`] from it.
//! Requests are matched to replies by `req_id` (xenstored may answer in any
//! order, `docs/misc/xenstore.txt`); watch events go into a bounded queue per
//! watch, so a consumer that stops reading one watch never delays replies or
//! other watches (the Linux "xenwatch stall" lesson). Everything the daemon
//! sends is untrusted: unknown `req_id`s, garbage and malformed frames are
//! counted in [`ClientStats`] and dropped; nothing here panics on peer data.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{ProtocolError, XsError};
use crate::wire::{Body, DecodeError, Decoder, Message, MsgType, Reply, Request, TxId};

/// Identifies one submitted request until its reply is collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u32);

/// Identifies one registered watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u32);

/// Registration state of a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchState {
    /// `XS_WATCH` sent, no reply yet (events may already arrive).
    Registering,
    /// The daemon acknowledged the watch.
    Active,
    /// The daemon refused the watch; no events will come.
    Failed(XsError),
}

/// Per-watch counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchStats {
    /// Registration state.
    pub state: WatchState,
    /// Events waiting in the queue.
    pub queued: usize,
    /// Queue capacity.
    pub capacity: usize,
    /// Events accepted into the queue over the watch's life.
    pub received: u64,
    /// Events folded into an already-queued one because the queue was full.
    pub coalesced: u64,
}

/// Client-wide counters of rejected input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Replies whose `req_id` matched no request in flight (includes duplicates).
    pub unknown_replies: u64,
    /// Frames the decoder rejected (oversized, unknown type, malformed).
    pub decode_errors: u64,
    /// Watch events whose token matched no registered watch.
    pub unmatched_events: u64,
    /// Replies of the wrong type or with a malformed payload, for a known request.
    pub bad_replies: u64,
    /// Requests failed with [`XsError::Cancelled`] by [`Client::resume`].
    pub cancelled: u64,
    /// Internal requests (watch re-registration, unwatch) the daemon refused.
    pub internal_failures: u64,
}

/// Who is waiting for a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The caller; the result is kept for [`Client::poll_reply`].
    User,
    /// A watch registration; `user` says whether the caller also polls it.
    Watch { watch: WatchId, user: bool },
    /// Fire-and-forget (unwatch of a dropped watch).
    Internal,
}

#[derive(Debug)]
struct Pending {
    kind: MsgType,
    purpose: Purpose,
    /// `Some` once answered (only kept for polled requests).
    result: Option<Result<Reply, XsError>>,
}

#[derive(Debug)]
struct Watch {
    path: String,
    token: String,
    queue: VecDeque<String>,
    capacity: usize,
    received: u64,
    coalesced: u64,
    state: WatchState,
}

impl Watch {
    /// Queues an event path. When the queue is full the event is coalesced: a
    /// path already queued absorbs it; otherwise the newest queued entry is
    /// replaced by the watched path itself, which means "anything below may
    /// have changed, rescan" (an event path is always at or below it).
    fn deliver(&mut self, path: String) {
        self.received += 1;
        if self.queue.len() < self.capacity {
            self.queue.push_back(path);
            return;
        }
        self.coalesced += 1;
        if self.queue.iter().any(|p| *p == path || *p == self.path) {
            return;
        }
        if let Some(last) = self.queue.back_mut() {
            last.clone_from(&self.path);
        }
    }
}

/// The sans-IO xenstore client state machine.
#[derive(Debug)]
pub struct Client {
    next_req_id: u32,
    pending: BTreeMap<u32, Pending>,
    out: Vec<u8>,
    out_start: usize,
    decoder: Decoder,
    next_watch_id: u32,
    watches: BTreeMap<WatchId, Watch>,
    tokens: BTreeMap<String, WatchId>,
    open_txs: BTreeSet<u32>,
    stale_txs: BTreeSet<u32>,
    stats: ClientStats,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with nothing in flight and no watches.
    pub fn new() -> Self {
        Client {
            next_req_id: 1,
            pending: BTreeMap::new(),
            out: Vec::new(),
            out_start: 0,
            decoder: Decoder::new(),
            next_watch_id: 1,
            watches: BTreeMap::new(),
            tokens: BTreeMap::new(),
            open_txs: BTreeSet::new(),
            stale_txs: BTreeSet::new(),
            stats: ClientStats::default(),
        }
    }

    fn alloc_req_id(&mut self) -> u32 {
        loop {
            let id = self.next_req_id;
            self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn enqueue(
        &mut self,
        tx: TxId,
        req: &Request<'_>,
        purpose: Purpose,
    ) -> Result<RequestId, XsError> {
        let id = self.alloc_req_id();
        // Encode into the tail of the output buffer; on error nothing is kept.
        let before = self.out.len();
        if let Err(e) = req.encode(id, tx.0, &mut self.out) {
            self.out.truncate(before);
            return Err(e.into());
        }
        self.pending.insert(
            id,
            Pending {
                kind: req.msg_type(),
                purpose,
                result: None,
            },
        );
        Ok(RequestId(id))
    }

    /// Queues a request. `tx` is the transaction it belongs to
    /// ([`TxId::NONE`] for none).
    ///
    /// A transaction that was open when [`Client::resume`] ran no longer exists
    /// at the daemon: any request in it fails here with [`XsError::Eagain`]
    /// (retry the whole transaction), and its `TRANSACTION_END` forgets it.
    pub fn submit(&mut self, tx: TxId, req: &Request<'_>) -> Result<RequestId, XsError> {
        if tx != TxId::NONE && self.stale_txs.contains(&tx.0) {
            if matches!(req, Request::TransactionEnd { .. }) {
                self.stale_txs.remove(&tx.0);
            }
            return Err(XsError::Eagain);
        }
        let id = self.enqueue(tx, req, Purpose::User)?;
        if matches!(req, Request::TransactionEnd { .. }) {
            self.open_txs.remove(&tx.0);
        }
        Ok(id)
    }

    /// Collects the reply to `id`: `None` while it is in flight, then the
    /// result exactly once. Unknown or already-collected ids give
    /// `Some(Err(XsError::NotInFlight))`.
    pub fn poll_reply(&mut self, id: RequestId) -> Option<Result<Reply, XsError>> {
        let Some(p) = self.pending.get_mut(&id.0) else {
            return Some(Err(XsError::NotInFlight));
        };
        let result = p.result.take()?;
        self.pending.remove(&id.0);
        Some(result)
    }

    /// Drops interest in a request: its reply, when it comes, is discarded
    /// without being counted as unknown.
    pub fn forget(&mut self, id: RequestId) {
        if let Some(p) = self.pending.get_mut(&id.0) {
            if p.result.is_some() {
                self.pending.remove(&id.0);
            } else if p.purpose == Purpose::User {
                p.purpose = Purpose::Internal;
            }
        }
    }

    /// Bytes waiting to be written to the request ring.
    pub fn output(&self) -> &[u8] {
        self.out.get(self.out_start..).unwrap_or(&[])
    }

    /// Marks `n` bytes of [`Client::output`] as written to the ring.
    pub fn consume_output(&mut self, n: usize) {
        self.out_start = self.out_start.saturating_add(n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start > 4096 && self.out_start * 2 > self.out.len() {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// Feeds bytes read from the response ring, in any chunking. Completed
    /// replies become pollable; watch events are queued on their watch.
    pub fn receive(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (used, frame) = self.decoder.feed(rest);
            match frame {
                Some(Ok(msg)) => self.dispatch(msg),
                Some(Err(e)) => self.reject(e),
                None => {}
            }
            if used == 0 {
                break;
            }
            rest = rest.get(used..).unwrap_or(&[]);
        }
    }

    fn reject(&mut self, e: DecodeError) {
        self.stats.decode_errors += 1;
        // The frame was meant for a request (it is not a watch event): fail
        // that request rather than leave it waiting for a reply that came.
        let is_event = matches!(
            e,
            DecodeError::Malformed {
                msg_type: MsgType::WatchEvent,
                ..
            }
        );
        if let (false, Some(req_id)) = (is_event, e.req_id())
            && self.is_waiting(req_id)
        {
            self.complete(req_id, Err(ProtocolError::Decode(e).into()));
        }
    }

    fn is_waiting(&self, req_id: u32) -> bool {
        self.pending
            .get(&req_id)
            .is_some_and(|p| p.result.is_none())
    }

    fn dispatch(&mut self, msg: Message) {
        let payload = match msg.body {
            Body::WatchEvent(ev) => {
                match self
                    .tokens
                    .get(&ev.token)
                    .and_then(|id| self.watches.get_mut(id))
                {
                    Some(w) => w.deliver(ev.path),
                    None => self.stats.unmatched_events += 1,
                }
                return;
            }
            Body::Error(e) => Err(e),
            Body::Payload(p) => Ok(p),
        };
        let Some(kind) = self
            .pending
            .get(&msg.req_id)
            .filter(|p| p.result.is_none())
            .map(|p| p.kind)
        else {
            self.stats.unknown_replies += 1;
            return;
        };
        let result = match payload {
            Err(e) => Err(e),
            Ok(_) if msg.msg_type != kind => {
                self.stats.bad_replies += 1;
                Err(ProtocolError::UnexpectedReplyType {
                    expected: kind,
                    got: msg.msg_type,
                }
                .into())
            }
            Ok(p) => Reply::parse(kind, &p).map_err(|m| {
                self.stats.bad_replies += 1;
                ProtocolError::MalformedReply(m).into()
            }),
        };
        self.complete(msg.req_id, result);
    }

    fn complete(&mut self, req_id: u32, result: Result<Reply, XsError>) {
        let Some(p) = self.pending.get_mut(&req_id) else {
            return;
        };
        if let (MsgType::TransactionStart, Ok(Reply::Transaction(tx))) = (p.kind, &result) {
            self.open_txs.insert(tx.0);
        }
        match p.purpose {
            Purpose::User => p.result = Some(result),
            Purpose::Internal => {
                if result.is_err() {
                    self.stats.internal_failures += 1;
                }
                self.pending.remove(&req_id);
            }
            Purpose::Watch { watch, user } => {
                if user {
                    p.result = Some(result.clone());
                } else {
                    self.pending.remove(&req_id);
                }
                self.watch_registered(watch, user, result);
            }
        }
    }

    fn watch_registered(&mut self, id: WatchId, user: bool, result: Result<Reply, XsError>) {
        let Some(w) = self.watches.get_mut(&id) else {
            return; // unwatched meanwhile
        };
        w.state = match result {
            Ok(_) => WatchState::Active,
            // Re-registering after resume against a daemon that kept the
            // watch: it is still there, which is what we want.
            Err(XsError::Eexist) if !user => WatchState::Active,
            Err(e) => {
                if !user {
                    self.stats.internal_failures += 1;
                }
                self.tokens.remove(&w.token);
                WatchState::Failed(e)
            }
        };
    }

    /// Registers a watch on `path` (a path or `@special`) whose events queue up
    /// to `capacity` entries (at least 1). Returns the watch and the id of the
    /// `XS_WATCH` request; xenstored answers it and then fires the watch once.
    pub fn watch(&mut self, path: &str, capacity: usize) -> Result<(WatchId, RequestId), XsError> {
        let id = loop {
            let id = WatchId(self.next_watch_id);
            self.next_watch_id = self.next_watch_id.wrapping_add(1).max(1);
            if !self.watches.contains_key(&id) {
                break id;
            }
        };
        let token = format!("xenrs-w{}", id.0);
        let req = self.enqueue(
            TxId::NONE,
            &Request::Watch {
                path,
                token: &token,
            },
            Purpose::Watch {
                watch: id,
                user: true,
            },
        )?;
        // Registered before the reply: the initial event may follow it closely.
        self.tokens.insert(token.clone(), id);
        self.watches.insert(
            id,
            Watch {
                path: String::from(path),
                token,
                queue: VecDeque::new(),
                capacity: capacity.max(1),
                received: 0,
                coalesced: 0,
                state: WatchState::Registering,
            },
        );
        Ok((id, req))
    }

    /// Removes a watch locally (its queue is dropped, late events are counted as
    /// unmatched) and sends `XS_UNWATCH`; the reply is handled internally.
    pub fn unwatch(&mut self, id: WatchId) -> Result<(), XsError> {
        let w = self.watches.remove(&id).ok_or(XsError::NoSuchWatch)?;
        self.tokens.remove(&w.token);
        if matches!(w.state, WatchState::Failed(_)) {
            return Ok(());
        }
        self.enqueue(
            TxId::NONE,
            &Request::Unwatch {
                path: &w.path,
                token: &w.token,
            },
            Purpose::Internal,
        )?;
        Ok(())
    }

    /// Takes the oldest queued event path of a watch.
    pub fn next_event(&mut self, id: WatchId) -> Option<String> {
        self.watches.get_mut(&id)?.queue.pop_front()
    }

    /// Counters of one watch.
    pub fn watch_stats(&self, id: WatchId) -> Option<WatchStats> {
        self.watches.get(&id).map(|w| WatchStats {
            state: w.state,
            queued: w.queue.len(),
            capacity: w.capacity,
            received: w.received,
            coalesced: w.coalesced,
        })
    }

    /// The watched path of a watch.
    pub fn watch_path(&self, id: WatchId) -> Option<&str> {
        self.watches.get(&id).map(|w| w.path.as_str())
    }

    /// Ids of all registered watches.
    pub fn watch_ids(&self) -> impl Iterator<Item = WatchId> + '_ {
        self.watches.keys().copied()
    }

    /// Client-wide counters of rejected input.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Number of requests sent or queued and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| p.result.is_none()).count()
    }

    /// Whether nothing is in flight and nothing waits to be sent: the point at
    /// which the guest may suspend.
    pub fn is_idle(&self) -> bool {
        self.output().is_empty() && self.in_flight() == 0
    }

    /// Re-establishes the session after the ring was reset (resume from
    /// suspend, ring reconnect): fails every request in flight with
    /// [`XsError::Cancelled`], drops unsent bytes and any partial reply, marks
    /// open transactions stale (their later use gives `EAGAIN`), and queues
    /// `XS_WATCH` again for every registered watch with its old token. Queued
    /// events are kept; the daemon fires each re-registered watch once.
    pub fn resume(&mut self) {
        let waiting: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.result.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.stats.cancelled += 1;
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            match p.purpose {
                Purpose::User | Purpose::Watch { user: true, .. } => {
                    p.result = Some(Err(XsError::Cancelled));
                }
                Purpose::Internal | Purpose::Watch { user: false, .. } => {
                    self.pending.remove(&id);
                }
            }
        }
        self.out.clear();
        self.out_start = 0;
        self.decoder.reset();
        self.stale_txs.append(&mut self.open_txs);

        let watches: Vec<(WatchId, String, String)> = self
            .watches
            .iter()
            .map(|(id, w)| (*id, w.path.clone(), w.token.clone()))
            .collect();
        for (id, path, token) in watches {
            let req = Request::Watch {
                path: &path,
                token: &token,
            };
            let purpose = Purpose::Watch {
                watch: id,
                user: false,
            };
            // Paths were validated when first registered, so this cannot fail;
            // if it somehow did, the watch is marked failed instead.
            let state = match self.enqueue(TxId::NONE, &req, purpose) {
                Ok(_) => WatchState::Registering,
                Err(e) => WatchState::Failed(e),
            };
            self.tokens.insert(token, id);
            if let Some(w) = self.watches.get_mut(&id) {
                w.state = state;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests;
