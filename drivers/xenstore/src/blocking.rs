//! A blocking xenstore facade over the sans-IO [`Client`] and the shared ring.
//!
//! The kernel supplies the ring page ([`RingMemory`]) and a [`Platform`] that
//! notifies the daemon's event channel and blocks until the next event. Every
//! call pumps the ring in both directions, so replies and watch events keep
//! flowing into their per-request / per-watch slots regardless of which caller
//! is waiting and whether any watch consumer is keeping up.

use alloc::string::String;
use alloc::vec::Vec;

use crate::client::{Client, RequestId, WatchId, WatchStats};
use crate::error::{ProtocolError, XsError};
use crate::ring::{self, RingMemory};
use crate::wire::{Reply, Request, TxId};

/// What the kernel provides besides the page: the event channel.
pub trait Platform {
    /// Notifies xenstored (`EVTCHNOP_send` on the xenstore event channel).
    fn kick(&mut self);
    /// Blocks until an event arrives on the xenstore event channel. Must return
    /// at once if an event was signalled since the previous `wait` returned
    /// (no lost wake-ups); may return spuriously.
    fn wait(&mut self);
}

/// Attempts [`Xenstore::directory`] makes when `DIRECTORY_PART` sees the
/// child list change under it.
const DIRECTORY_PART_ATTEMPTS: usize = 8;

/// The most bytes of child names [`Xenstore::directory`] gathers from
/// `DIRECTORY_PART` chunks (C xenstored's default quota allows 1000 nodes
/// per domain, far below this): a daemon that never sends the end marker
/// cannot grow the list without bound.
pub const DIRECTORY_MAX_BYTES: u32 = 256 * 1024;

/// Bytes moved from the response ring per read.
const READ_CHUNK: usize = xen_abi::xenstore::XENSTORE_RING_SIZE;

/// Reads per [`Xenstore::poll`]: a daemon that never stops producing cannot
/// keep a caller inside one poll forever.
const MAX_READS_PER_POLL: usize = 16;

/// A blocking xenstore connection.
#[derive(Debug)]
pub struct Xenstore<M: RingMemory, P: Platform> {
    client: Client,
    mem: M,
    platform: P,
}

impl<M: RingMemory, P: Platform> Xenstore<M, P> {
    /// Wraps an established ring (page mapped, event channel bound).
    pub fn new(mem: M, platform: P) -> Self {
        Xenstore {
            client: Client::new(),
            mem,
            platform,
        }
    }

    /// The sans-IO core (counters, watch state).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The sans-IO core, mutably (to submit requests without blocking).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The platform.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// The ring page.
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// Moves bytes without blocking: queued requests into `req`, available
    /// bytes out of `rsp` into the client; kicks the daemon if anything moved.
    /// Returns whether anything moved; it reads at most 16 KiB per call, so
    /// call it again while it returns `true`. Call it from the event-channel
    /// handler.
    pub fn poll(&mut self) -> Result<bool, XsError> {
        ring::check_server_error(&self.mem)?;
        let mut moved = false;
        loop {
            let out = self.client.output();
            if out.is_empty() {
                break;
            }
            let n = ring::write_requests(&mut self.mem, out)?;
            if n == 0 {
                break;
            }
            self.client.consume_output(n);
            moved = true;
        }
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..MAX_READS_PER_POLL {
            let n = ring::read_responses(&mut self.mem, &mut buf)?;
            if n == 0 {
                break;
            }
            self.client.receive(buf.get(..n).unwrap_or(&[]));
            moved = true;
        }
        if moved {
            self.platform.kick();
        }
        Ok(moved)
    }

    /// Pumps and waits until `done` holds. Blocks only after a poll that moved
    /// nothing, so bytes left in the ring by a bounded poll are never stranded.
    fn run_until(&mut self, mut done: impl FnMut(&mut Client) -> bool) -> Result<(), XsError> {
        loop {
            let moved = self.poll()?;
            if done(&mut self.client) {
                return Ok(());
            }
            if !moved {
                self.platform.wait();
            }
        }
    }

    /// Waits for the reply to a submitted request.
    pub fn wait_reply(&mut self, id: RequestId) -> Result<Reply, XsError> {
        let mut result = None;
        self.run_until(|c| {
            result = c.poll_reply(id);
            result.is_some()
        })?;
        result.unwrap_or(Err(XsError::NotInFlight))
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, tx: TxId, req: &Request<'_>) -> Result<Reply, XsError> {
        let id = self.client.submit(tx, req)?;
        self.wait_reply(id)
    }

    fn call_ok(&mut self, tx: TxId, req: &Request<'_>) -> Result<(), XsError> {
        match self.call(tx, req)? {
            Reply::Ok => Ok(()),
            _ => Err(ProtocolError::UnexpectedReply.into()),
        }
    }

    /// `READ`: the node's value.
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        match self.call(tx, &Request::Read { path })? {
            Reply::Value(v) => Ok(v),
            _ => Err(ProtocolError::UnexpectedReply.into()),
        }
    }

    /// `WRITE`: sets the node's value, creating missing parents.
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        self.call_ok(tx, &Request::Write { path, value })
    }

    /// `MKDIR`: ensures the node exists.
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.call_ok(tx, &Request::Mkdir { path })
    }

    /// `RM`: removes the node and its children.
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.call_ok(tx, &Request::Rm { path })
    }

    /// `DIRECTORY`: child leaf names. Falls back to `DIRECTORY_PART` when the
    /// list exceeds a payload (`E2BIG`), restarting if it changes meanwhile.
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        match self.call(tx, &Request::Directory { path }) {
            Ok(Reply::Directory(names)) => Ok(names),
            Ok(_) => Err(ProtocolError::UnexpectedReply.into()),
            Err(XsError::E2big) => self.directory_parts(tx, path),
            Err(e) => Err(e),
        }
    }

    fn directory_parts(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        'attempt: for _ in 0..DIRECTORY_PART_ATTEMPTS {
            let mut names = Vec::new();
            let mut offset = 0u32;
            let mut first_gen = None;
            loop {
                let Reply::DirectoryPart {
                    gencnt,
                    names: chunk,
                    chunk_len,
                    complete,
                } = self.call(tx, &Request::DirectoryPart { path, offset })?
                else {
                    return Err(ProtocolError::UnexpectedReply.into());
                };
                if *first_gen.get_or_insert(gencnt) != gencnt {
                    continue 'attempt;
                }
                names.extend(chunk);
                if complete {
                    return Ok(names);
                }
                if chunk_len == 0 {
                    // No progress and not complete: the daemon is misbehaving.
                    return Err(ProtocolError::UnexpectedReply.into());
                }
                offset = offset.saturating_add(chunk_len);
                if offset > DIRECTORY_MAX_BYTES {
                    return Err(ProtocolError::DirectoryTooLarge.into());
                }
            }
        }
        Err(ProtocolError::DirectoryUnstable.into())
    }

    /// `GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, XsError> {
        match self.call(TxId::NONE, &Request::GetDomainPath { domid })? {
            Reply::DomainPath(p) => Ok(p),
            _ => Err(ProtocolError::UnexpectedReply.into()),
        }
    }

    /// `TRANSACTION_START`.
    pub fn transaction_start(&mut self) -> Result<TxId, XsError> {
        match self.call(TxId::NONE, &Request::TransactionStart)? {
            Reply::Transaction(tx) => Ok(tx),
            _ => Err(ProtocolError::UnexpectedReply.into()),
        }
    }

    /// `TRANSACTION_END`: commit (`EAGAIN` on conflict) or abort.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        self.call_ok(tx, &Request::TransactionEnd { commit })
    }

    /// Runs `body` in a transaction and commits it, retrying the whole
    /// transaction when the body or the commit fails with `EAGAIN`, at most
    /// `attempts` times (at least once). Any other error from the body aborts
    /// the transaction and is returned; after the last attempt the final
    /// `EAGAIN` is returned.
    pub fn transaction<T>(
        &mut self,
        attempts: usize,
        mut body: impl FnMut(&mut Self, TxId) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let mut last = XsError::Eagain;
        for _ in 0..attempts.max(1) {
            let tx = match self.transaction_start() {
                Ok(tx) => tx,
                Err(XsError::Eagain) => continue,
                Err(e) => return Err(e),
            };
            match body(self, tx) {
                Ok(value) => match self.transaction_end(tx, true) {
                    Ok(()) => return Ok(value),
                    Err(XsError::Eagain) => last = XsError::Eagain,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    // Abort; its outcome does not change what we report.
                    let _ = self.transaction_end(tx, false);
                    if e != XsError::Eagain {
                        return Err(e);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Registers a watch and waits for xenstored's acknowledgement. The initial
    /// event xenstored fires follows shortly.
    pub fn watch(&mut self, path: &str, capacity: usize) -> Result<WatchId, XsError> {
        let (id, req) = self.client.watch(path, capacity)?;
        match self.wait_reply(req) {
            Ok(_) => Ok(id),
            Err(e) => {
                // Drop the failed watch locally (no XS_UNWATCH for a refused watch).
                let _ = self.client.unwatch(id);
                Err(e)
            }
        }
    }

    /// Removes a watch (does not wait for the `XS_UNWATCH` reply).
    pub fn unwatch(&mut self, id: WatchId) -> Result<(), XsError> {
        self.client.unwatch(id)?;
        self.poll().map(|_| ())
    }

    /// Takes a queued event of `id` without blocking (after pumping the ring).
    pub fn next_event(&mut self, id: WatchId) -> Result<Option<String>, XsError> {
        self.poll()?;
        if self.client.watch_stats(id).is_none() {
            return Err(XsError::NoSuchWatch);
        }
        Ok(self.client.next_event(id))
    }

    /// Blocks until `id` has an event and returns it.
    pub fn wait_event(&mut self, id: WatchId) -> Result<String, XsError> {
        let mut event = None;
        self.run_until(|c| {
            if c.watch_stats(id).is_none() {
                return true;
            }
            event = c.next_event(id);
            event.is_some()
        })?;
        event.ok_or(XsError::NoSuchWatch)
    }

    /// Counters of one watch.
    pub fn watch_stats(&self, id: WatchId) -> Option<WatchStats> {
        self.client.watch_stats(id)
    }

    /// Whether no request is in flight or queued.
    pub fn is_idle(&self) -> bool {
        self.client.is_idle()
    }

    /// Pumps until no request is in flight (quiesce before suspend). Watches
    /// stay registered; stop submitting before calling this.
    pub fn quiesce(&mut self) -> Result<(), XsError> {
        self.run_until(|c| c.is_idle())
    }

    /// After the ring was re-established (resume): cancels what was in flight,
    /// re-registers every watch and waits for the daemon to acknowledge them.
    pub fn resume(&mut self) -> Result<(), XsError> {
        self.client.resume();
        self.quiesce()
    }
}
