//! `SimXenstored`: an in-memory xenstored for host tests, with misbehaviour knobs.
//!
//! Behaviour follows `docs/misc/xenstore.txt` (Xen 4.17) for one unprivileged
//! guest connection:
//! - a tree of nodes (`/` always exists); `WRITE`/`MKDIR` create missing
//!   parents; `RM` removes a subtree (`ENOENT` only if the parent is missing
//!   too); relative paths resolve under `/local/domain/<domid>`;
//! - transactions work on a copy of the tree and record the generation of every
//!   node they touch; a commit fails with `EAGAIN` if any of those nodes changed
//!   meanwhile (as C xenstored's per-node conflict detection does); watches of
//!   a transaction fire on commit;
//! - watches fire on writes, mkdir and rm of the path or anything below it, and
//!   once on registration (after the `WATCH` reply), as xenstored does;
//! - `DIRECTORY` of a list longer than a payload gives `E2BIG`;
//!   `DIRECTORY_PART` is served in C xenstored's format;
//! - privileged operations (`INTRODUCE`, `CONTROL`, ...) give `EACCES`;
//!   permissions are not modelled (`GET_PERMS` answers `b<domid>`).
//!
//! Misbehaviour knobs: [`SimXenstored::fault_next_reply`] ([`ReplyFault`]:
//! wrong length, missing NUL, wrong type, unknown error name, duplicate or lost
//! reply), `inject_*` (unknown `req_id` replies, oversized frames, unknown
//! types, spurious or malformed watch events, raw garbage),
//! [`SimXenstored::set_max_chunk`] (split delivery across ring wraps),
//! [`SimXenstored::set_reverse_replies`] (out-of-order replies) and
//! [`SimXenstored::fail_next_commits`] (forced `EAGAIN`).
//!
//! Use [`SimXenstored`] directly at the byte-stream level with a sans-IO
//! [`crate::Client`], or through [`SimRing`], which shares a [`VecPage`] ring
//! with a [`crate::Xenstore`] and services it on `kick`/`wait`.
//!
//! This is test support: it may panic to fail a test (a guest waiting on a
//! daemon with nothing left to send is reported as a deadlock).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use xen_abi::xenstore as abi;

use crate::blocking::{Platform, Xenstore};
use crate::error::XsError;
use crate::ring::{self, RingMemory, VecPage};
use crate::wire::{self, Body, Decoder, Message, MsgType, parse_decimal};

/// A fault applied to the next reply frame (watch events are not affected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyFault {
    /// The header's `len` is off by this much (saturating); the payload is
    /// sent unchanged, so the stream loses framing.
    BadLength(i64),
    /// The payload's trailing NUL is removed.
    DropNul,
    /// The reply is sent with type `XS_IS_DOMAIN_INTRODUCED` instead.
    WrongType,
    /// The reply is replaced by `XS_ERROR "EWHATEVER"`.
    UnknownErrorName,
    /// The reply is sent twice.
    Duplicate,
    /// The reply is never sent.
    Drop,
}

/// Counters of what the simulated daemon saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests handled, by type.
    pub requests: BTreeMap<MsgType, u64>,
    /// Watch events sent.
    pub events_sent: u64,
    /// Successful commits.
    pub commits: u64,
    /// Commits refused with `EAGAIN`.
    pub conflicts: u64,
    /// Request frames that could not be decoded.
    pub bad_requests: u64,
}

impl SimStats {
    /// Requests of one type handled so far.
    pub fn count(&self, t: MsgType) -> u64 {
        self.requests.get(&t).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
struct Node {
    value: Vec<u8>,
    node_gen: u64,
}

type Tree = BTreeMap<String, Node>;

#[derive(Debug)]
struct SimTx {
    nodes: Tree,
    /// Generation (None = absent) of each touched node when first touched.
    accessed: BTreeMap<String, Option<u64>>,
    /// Nodes created, modified or removed.
    changed: BTreeSet<String>,
    /// Watch events to fire on commit: (path, recursive removal).
    fire: Vec<(String, bool)>,
}

#[derive(Debug)]
struct SimWatch {
    /// As given by the client (relative, absolute or `@special`).
    given: String,
    /// Absolute (or `@special`) form used for matching.
    abs: String,
    token: String,
}

/// One frame waiting to be serialised.
struct Frame {
    msg_type: u32,
    req_id: u32,
    tx_id: u32,
    payload: Vec<u8>,
    is_event: bool,
}

/// The in-memory xenstore daemon. See the module docs.
#[derive(Debug)]
pub struct SimXenstored {
    domid: u16,
    nodes: Tree,
    generation: u64,
    txs: BTreeMap<u32, SimTx>,
    next_tx: u32,
    watches: Vec<SimWatch>,
    decoder: Decoder,
    out: VecDeque<u8>,
    max_chunk: Option<usize>,
    reverse_replies: bool,
    endless_directory_part: bool,
    reply_faults: VecDeque<ReplyFault>,
    fail_commits: usize,
    killed: bool,
    stats: SimStats,
    /// Watch events (path, token) caused by the current operation.
    pending_events: Vec<(String, String)>,
}

fn is_child(path: &str, parent: &str) -> bool {
    path == parent
        || parent == "/"
        || (path.starts_with(parent) && path.as_bytes().get(parent.len()) == Some(&b'/'))
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => path.get(..i),
        None => None,
    }
}

fn leaf_children(nodes: &Tree, path: &str) -> Vec<String> {
    let prefix = if path == "/" {
        String::from("/")
    } else {
        format!("{path}/")
    };
    nodes
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, _)| k.get(prefix.len()..))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .map(String::from)
        .collect()
}

fn subtree(nodes: &Tree, path: &str) -> Vec<String> {
    nodes
        .keys()
        .filter(|k| is_child(k, path))
        .cloned()
        .collect()
}

impl SimXenstored {
    /// A daemon serving domain `domid`, with `/`, `/local/domain/<domid>`
    /// and nothing else.
    pub fn new(domid: u16) -> Self {
        let mut sim = SimXenstored {
            domid,
            nodes: Tree::new(),
            generation: 0,
            txs: BTreeMap::new(),
            next_tx: 1,
            watches: Vec::new(),
            decoder: Decoder::new(),
            out: VecDeque::new(),
            max_chunk: None,
            endless_directory_part: false,
            reverse_replies: false,
            reply_faults: VecDeque::new(),
            fail_commits: 0,
            killed: false,
            stats: SimStats::default(),
            pending_events: Vec::new(),
        };
        sim.nodes.insert(
            String::from("/"),
            Node {
                value: Vec::new(),
                node_gen: 0,
            },
        );
        let home = sim.home();
        sim.mkdir(&home);
        sim
    }

    fn home(&self) -> String {
        format!("/local/domain/{}", self.domid)
    }

    fn bump(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    // --- knobs --------------------------------------------------------------

    /// Delivers at most `n` response bytes per ring service (or per
    /// [`SimXenstored::take_output`]); `None` for no limit.
    pub fn set_max_chunk(&mut self, n: Option<usize>) {
        self.max_chunk = n.map(|n| n.max(1));
    }

    /// A hostile daemon: every `DIRECTORY_PART` reply carries the first
    /// names again and never the end marker, whatever the offset.
    pub fn set_endless_directory_part(&mut self, on: bool) {
        self.endless_directory_part = on;
    }

    /// Sends the replies produced by one batch of requests in reverse order.
    pub fn set_reverse_replies(&mut self, on: bool) {
        self.reverse_replies = on;
    }

    /// Applies `fault` to the next reply frame (faults queue up in order).
    pub fn fault_next_reply(&mut self, fault: ReplyFault) {
        self.reply_faults.push_back(fault);
    }

    /// Makes the next `n` commits fail with `EAGAIN` regardless of conflicts.
    pub fn fail_next_commits(&mut self, n: usize) {
        self.fail_commits = n;
    }

    /// Queues raw bytes into the response stream.
    pub fn inject_raw(&mut self, bytes: &[u8]) {
        self.out.extend(bytes);
    }

    fn inject_frame(&mut self, msg_type: u32, req_id: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; wire::HEADER_LEN];
        let mut view = wire::Header::new_unchecked(&mut h[..]);
        view.set_msg_type(msg_type);
        view.set_req_id(req_id);
        view.set_len(len);
        self.out.extend(h);
        self.out.extend(payload);
    }

    /// Queues a well-formed `READ` reply with a `req_id` nobody used.
    pub fn inject_unknown_req_id_reply(&mut self) {
        self.inject_frame(abi::XS_READ, 0xdead_beef, b"stray");
    }

    /// Queues a frame whose `len` (> 4096) is honoured: `len` bytes follow.
    pub fn inject_oversized(&mut self, len: u32) {
        self.inject_frame(abi::XS_READ, 0, &vec![b'x'; len as usize]);
    }

    /// Queues a frame of an unassigned type.
    pub fn inject_unknown_type(&mut self) {
        self.inject_frame(0x1234, 0, b"abc\0");
    }

    /// Queues a watch event nobody caused (an unknown or a known token).
    pub fn inject_watch_event(&mut self, path: &str, token: &str) {
        let mut p = Vec::new();
        wire::WatchEvent {
            path: String::from(path),
            token: String::from(token),
        }
        .emit_payload(&mut p);
        self.inject_frame(abi::XS_WATCH_EVENT, 0, &p);
    }

    /// Queues a watch event with only one string.
    pub fn inject_malformed_watch_event(&mut self) {
        self.inject_frame(abi::XS_WATCH_EVENT, 0, b"/only-a-path\0");
    }

    // --- inspection and out-of-band changes ---------------------------------

    /// Counters.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Registered watches as `(path as given, token)`.
    pub fn watches(&self) -> Vec<(String, String)> {
        self.watches
            .iter()
            .map(|w| (w.given.clone(), w.token.clone()))
            .collect()
    }

    /// Open transactions.
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    /// Whether the guest sent something that makes real xenstored drop the
    /// connection (a frame over `XENSTORE_PAYLOAD_MAX`).
    pub fn connection_killed(&self) -> bool {
        self.killed
    }

    fn resolve_local(&self, path: &str) -> String {
        if path.starts_with('/') {
            String::from(path)
        } else {
            format!("{}/{}", self.home(), path)
        }
    }

    /// Reads a node (absolute or relative path) as another domain would.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.nodes
            .get(&self.resolve_local(path))
            .map(|n| n.value.clone())
    }

    /// Child names of a node.
    pub fn directory(&self, path: &str) -> Option<Vec<String>> {
        let p = self.resolve_local(path);
        self.nodes.get(&p).map(|_| leaf_children(&self.nodes, &p))
    }

    /// Writes a node as another domain (toolstack, backend) would: creates
    /// parents, conflicts with open transactions that touched it, fires watches.
    pub fn write(&mut self, path: &str, value: &[u8]) {
        let p = self.resolve_local(path);
        let _ = self.op_write(0, &p, value);
        self.flush_events();
    }

    /// Creates a node (and parents) out of band.
    pub fn mkdir(&mut self, path: &str) {
        let p = self.resolve_local(path);
        let _ = self.op_mkdir(0, &p);
        self.flush_events();
    }

    /// Removes a subtree out of band.
    pub fn rm(&mut self, path: &str) {
        let p = self.resolve_local(path);
        let _ = self.op_rm(0, &p);
        self.flush_events();
    }

    /// Fires a special event (`@releaseDomain`, `@introduceDomain`).
    pub fn fire_special(&mut self, path: &str) {
        self.fire(String::from(path), false);
        self.flush_events();
    }

    /// Forgets the connection as a ring reconnect does
    /// (`docs/misc/xenstore-ring.txt`): partial input, queued output, watches
    /// and transactions are dropped. The tree is kept.
    pub fn reset_connection(&mut self) {
        self.decoder.reset();
        self.out.clear();
        self.watches.clear();
        self.txs.clear();
        self.reply_faults.clear();
    }

    // --- byte stream ---------------------------------------------------------

    /// Handles request bytes from the guest (any chunking).
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.killed {
            return;
        }
        let mut frames = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (used, frame) = self.decoder.feed(rest);
            match frame {
                Some(Ok(msg)) => self.handle(msg, &mut frames),
                Some(Err(wire::DecodeError::Oversized { .. })) => {
                    // xenstored kills a connection that exceeds the payload limit.
                    self.stats.bad_requests += 1;
                    self.killed = true;
                    return;
                }
                Some(Err(e)) => {
                    self.stats.bad_requests += 1;
                    let req_id = e.req_id().unwrap_or(0);
                    frames.push(error_frame(req_id, 0, XsError::Einval));
                }
                None => {}
            }
            if used == 0 {
                break;
            }
            rest = rest.get(used..).unwrap_or(&[]);
        }
        if self.reverse_replies {
            frames.reverse();
        }
        for f in frames {
            self.emit(f);
        }
    }

    /// Response bytes waiting to be delivered.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Takes up to `max` response bytes (further limited by the chunk knob).
    pub fn take_output(&mut self, max: usize) -> Vec<u8> {
        let n = max
            .min(self.max_chunk.unwrap_or(usize::MAX))
            .min(self.out.len());
        self.out.drain(..n).collect()
    }

    fn emit(&mut self, mut f: Frame) {
        let mut copies = 1;
        let mut len_delta = 0i64;
        if !f.is_event {
            match self.reply_faults.pop_front() {
                None => {}
                Some(ReplyFault::BadLength(d)) => len_delta = d,
                Some(ReplyFault::DropNul) => {
                    if f.payload.last() == Some(&0) {
                        f.payload.pop();
                    }
                }
                Some(ReplyFault::WrongType) => f.msg_type = abi::XS_IS_DOMAIN_INTRODUCED,
                Some(ReplyFault::UnknownErrorName) => {
                    f.msg_type = abi::XS_ERROR;
                    f.payload = b"EWHATEVER\0".to_vec();
                }
                Some(ReplyFault::Duplicate) => copies = 2,
                Some(ReplyFault::Drop) => return,
            }
        } else {
            self.stats.events_sent += 1;
        }
        let len = i64::try_from(f.payload.len())
            .unwrap_or(i64::MAX)
            .saturating_add(len_delta)
            .clamp(0, i64::from(u32::MAX));
        let mut h = [0u8; wire::HEADER_LEN];
        let mut view = wire::Header::new_unchecked(&mut h[..]);
        view.set_msg_type(f.msg_type);
        view.set_req_id(f.req_id);
        view.set_tx_id(f.tx_id);
        view.set_len(u32::try_from(len).unwrap_or(u32::MAX));
        for _ in 0..copies {
            self.out.extend(h);
            self.out.extend(&f.payload);
        }
    }

    // --- request handling -----------------------------------------------------

    fn handle(&mut self, msg: Message, frames: &mut Vec<Frame>) {
        *self.stats.requests.entry(msg.msg_type).or_insert(0) += 1;
        let (req_id, tx_id) = (msg.req_id, msg.tx_id);
        let Body::Payload(payload) = msg.body else {
            // The guest sent XS_ERROR or XS_WATCH_EVENT.
            frames.push(error_frame(req_id, tx_id, XsError::Einval));
            return;
        };
        let result = self.dispatch(msg.msg_type, tx_id, &payload);
        match result {
            Ok(reply) => frames.push(Frame {
                msg_type: msg.msg_type.to_u32(),
                req_id,
                tx_id,
                payload: reply,
                is_event: false,
            }),
            Err(e) => frames.push(error_frame(req_id, tx_id, e)),
        }
        // Events caused by this request follow its reply.
        for (path, token) in core::mem::take(&mut self.pending_events) {
            frames.push(event_frame(&path, &token));
        }
    }

    fn dispatch(&mut self, t: MsgType, tx: u32, payload: &[u8]) -> Result<Vec<u8>, XsError> {
        let uses_tx = matches!(
            t,
            MsgType::Read
                | MsgType::Write
                | MsgType::Mkdir
                | MsgType::Rm
                | MsgType::Directory
                | MsgType::DirectoryPart
                | MsgType::GetPerms
                | MsgType::SetPerms
                | MsgType::TransactionEnd
        );
        let tx = if uses_tx { tx } else { 0 };
        if tx != 0 && !self.txs.contains_key(&tx) {
            return Err(XsError::Enoent);
        }
        let strings = || wire::split_strings(payload).map_err(|_| XsError::Einval);
        let ok = || Ok(b"OK\0".to_vec());
        match t {
            MsgType::Read => {
                let p = self.path_arg(one(&strings()?)?)?;
                self.op_read(tx, &p)
            }
            MsgType::Write => {
                let nul = payload
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(XsError::Einval)?;
                let (path, value) = (payload.get(..nul), payload.get(nul + 1..));
                let p = self.path_arg(path.unwrap_or(&[]))?;
                self.op_write(tx, &p, value.unwrap_or(&[]))?;
                ok()
            }
            MsgType::Mkdir => {
                let p = self.path_arg(one(&strings()?)?)?;
                self.op_mkdir(tx, &p)?;
                ok()
            }
            MsgType::Rm => {
                let p = self.path_arg(one(&strings()?)?)?;
                self.op_rm(tx, &p)?;
                ok()
            }
            MsgType::Directory => {
                let p = self.path_arg(one(&strings()?)?)?;
                self.op_directory(tx, &p)
            }
            MsgType::DirectoryPart => {
                let s = strings()?;
                let [path, offset] = s.as_slice() else {
                    return Err(XsError::Einval);
                };
                let p = self.path_arg(path)?;
                let offset = parse_decimal(offset).ok_or(XsError::Einval)?;
                self.op_directory_part(tx, &p, offset)
            }
            MsgType::GetPerms => {
                let p = self.path_arg(one(&strings()?)?)?;
                self.note_access(tx, &p);
                if !self.tree(tx).contains_key(&p) {
                    return Err(XsError::Enoent);
                }
                Ok(format!("b{}\0", self.domid).into_bytes())
            }
            MsgType::SetPerms => {
                let s = strings()?;
                let (path, perms) = s.split_first().ok_or(XsError::Einval)?;
                let p = self.path_arg(path)?;
                if perms.is_empty() || perms.iter().any(|q| wire::Perm::parse(q).is_err()) {
                    return Err(XsError::Einval);
                }
                self.note_access(tx, &p);
                if !self.tree(tx).contains_key(&p) {
                    return Err(XsError::Enoent);
                }
                self.touch(tx, &p, false);
                ok()
            }
            MsgType::Watch => {
                let s = strings()?;
                let [path, token] = s.as_slice() else {
                    return Err(XsError::Einval);
                };
                let (given, abs) = self.watch_path_arg(path)?;
                let token = String::from_utf8(token.to_vec()).map_err(|_| XsError::Einval)?;
                if self
                    .watches
                    .iter()
                    .any(|w| w.given == given && w.token == token)
                {
                    return Err(XsError::Eexist);
                }
                self.watches.push(SimWatch {
                    given: given.clone(),
                    abs,
                    token: token.clone(),
                });
                // The initial fire follows the reply (see handle()).
                self.pending_events.push((given, token));
                ok()
            }
            MsgType::Unwatch => {
                let s = strings()?;
                let [path, token] = s.as_slice() else {
                    return Err(XsError::Einval);
                };
                let before = self.watches.len();
                self.watches
                    .retain(|w| !(w.given.as_bytes() == *path && w.token.as_bytes() == *token));
                if self.watches.len() == before {
                    return Err(XsError::Enoent);
                }
                ok()
            }
            MsgType::TransactionStart => {
                let id = self.next_tx;
                self.next_tx = self.next_tx.wrapping_add(1).max(1);
                self.txs.insert(
                    id,
                    SimTx {
                        nodes: self.nodes.clone(),
                        accessed: BTreeMap::new(),
                        changed: BTreeSet::new(),
                        fire: Vec::new(),
                    },
                );
                Ok(format!("{id}\0").into_bytes())
            }
            MsgType::TransactionEnd => {
                let commit = match one(&strings()?)? {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(XsError::Einval),
                };
                if tx == 0 {
                    return Err(XsError::Einval);
                }
                self.op_commit(tx, commit)?;
                ok()
            }
            MsgType::GetDomainPath => {
                let domid = parse_decimal(one(&strings()?)?).ok_or(XsError::Einval)?;
                Ok(format!("/local/domain/{domid}\0").into_bytes())
            }
            MsgType::ResetWatches => {
                self.watches.clear();
                self.txs.clear();
                ok()
            }
            MsgType::WatchEvent | MsgType::Error => Err(XsError::Einval),
            MsgType::Control
            | MsgType::Introduce
            | MsgType::Release
            | MsgType::IsDomainIntroduced
            | MsgType::Resume
            | MsgType::SetTarget => Err(XsError::Eacces),
        }
    }

    fn path_arg(&self, raw: &[u8]) -> Result<String, XsError> {
        let s = core::str::from_utf8(raw).map_err(|_| XsError::Einval)?;
        let ok = !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-/_@".contains(&c))
            && !s.contains("//")
            && (s == "/" || !s.ends_with('/'));
        if !ok {
            return Err(XsError::Einval);
        }
        let abs = self.resolve_local(s);
        if abs.len() > abi::XENSTORE_ABS_PATH_MAX {
            return Err(XsError::Einval);
        }
        Ok(abs)
    }

    fn watch_path_arg(&self, raw: &[u8]) -> Result<(String, String), XsError> {
        if raw.first() == Some(&b'@') {
            let s = String::from_utf8(raw.to_vec()).map_err(|_| XsError::Einval)?;
            return Ok((s.clone(), s));
        }
        let abs = self.path_arg(raw)?;
        let given = String::from_utf8(raw.to_vec()).map_err(|_| XsError::Einval)?;
        Ok((given, abs))
    }

    fn tree(&mut self, tx: u32) -> &mut Tree {
        match self.txs.get_mut(&tx) {
            Some(t) if tx != 0 => &mut t.nodes,
            _ => &mut self.nodes,
        }
    }

    /// Records the first-seen generation of `path` in a transaction.
    fn note_access(&mut self, tx: u32, path: &str) {
        if let Some(t) = self.txs.get_mut(&tx).filter(|_| tx != 0) {
            let node_gen = t.nodes.get(path).map(|n| n.node_gen);
            t.accessed.entry(String::from(path)).or_insert(node_gen);
        }
    }

    /// Marks `path` changed (new generation) and queues its watch event.
    fn touch(&mut self, tx: u32, path: &str, recursive_rm: bool) {
        let node_gen = self.bump();
        if let Some(n) = self.tree(tx).get_mut(path) {
            n.node_gen = node_gen;
        }
        match self.txs.get_mut(&tx).filter(|_| tx != 0) {
            Some(t) => {
                t.changed.insert(String::from(path));
                t.fire.push((String::from(path), recursive_rm));
            }
            None => self.fire(String::from(path), recursive_rm),
        }
    }

    /// Creates `path` (and missing parents) with an empty value.
    fn create(&mut self, tx: u32, path: &str) {
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            self.note_access(tx, p);
            if self.tree(tx).contains_key(p) {
                break;
            }
            missing.push(String::from(p));
            cur = parent_of(p);
        }
        for p in missing.into_iter().rev() {
            let node_gen = self.bump();
            self.tree(tx).insert(
                p.clone(),
                Node {
                    value: Vec::new(),
                    node_gen,
                },
            );
            if let Some(parent) = parent_of(&p) {
                let parent = String::from(parent);
                if let Some(n) = self.tree(tx).get_mut(&parent) {
                    n.node_gen = node_gen;
                }
                if let Some(t) = self.txs.get_mut(&tx).filter(|_| tx != 0) {
                    t.changed.insert(parent);
                }
            }
            if let Some(t) = self.txs.get_mut(&tx).filter(|_| tx != 0) {
                t.changed.insert(p);
            }
        }
    }

    fn op_read(&mut self, tx: u32, p: &str) -> Result<Vec<u8>, XsError> {
        self.note_access(tx, p);
        self.tree(tx)
            .get(p)
            .map(|n| n.value.clone())
            .ok_or(XsError::Enoent)
    }

    fn op_write(&mut self, tx: u32, p: &str, value: &[u8]) -> Result<(), XsError> {
        self.create(tx, p);
        if let Some(n) = self.tree(tx).get_mut(p) {
            n.value = value.to_vec();
        }
        self.touch(tx, p, false);
        Ok(())
    }

    fn op_mkdir(&mut self, tx: u32, p: &str) -> Result<(), XsError> {
        self.note_access(tx, p);
        if self.tree(tx).contains_key(p) {
            return Ok(());
        }
        self.create(tx, p);
        self.touch(tx, p, false);
        Ok(())
    }

    fn op_rm(&mut self, tx: u32, p: &str) -> Result<(), XsError> {
        if p == "/" {
            return Err(XsError::Einval);
        }
        self.note_access(tx, p);
        if !self.tree(tx).contains_key(p) {
            let parent = String::from(parent_of(p).unwrap_or("/"));
            self.note_access(tx, &parent);
            return if self.tree(tx).contains_key(&parent) {
                Ok(())
            } else {
                Err(XsError::Enoent)
            };
        }
        // Fire before removal, while watched nodes inside the subtree still
        // exist (their watches see their own path).
        self.touch(tx, p, true);
        let doomed = subtree(self.tree(tx), p);
        for d in &doomed {
            self.note_access(tx, d);
            self.tree(tx).remove(d);
        }
        if let Some(t) = self.txs.get_mut(&tx).filter(|_| tx != 0) {
            t.changed.extend(doomed);
        }
        if let Some(parent) = parent_of(p) {
            let parent = String::from(parent);
            self.note_access(tx, &parent);
            let node_gen = self.bump();
            if let Some(n) = self.tree(tx).get_mut(&parent) {
                n.node_gen = node_gen;
            }
            if let Some(t) = self.txs.get_mut(&tx).filter(|_| tx != 0) {
                t.changed.insert(parent);
            }
        }
        Ok(())
    }

    fn op_directory(&mut self, tx: u32, p: &str) -> Result<Vec<u8>, XsError> {
        self.note_access(tx, p);
        if !self.tree(tx).contains_key(p) {
            return Err(XsError::Enoent);
        }
        let mut out = Vec::new();
        for c in leaf_children(self.tree(tx), p) {
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        }
        if out.len() > abi::XENSTORE_PAYLOAD_MAX {
            return Err(XsError::E2big);
        }
        Ok(out)
    }

    fn op_directory_part(&mut self, tx: u32, p: &str, offset: u64) -> Result<Vec<u8>, XsError> {
        self.note_access(tx, p);
        let node_gen = self
            .tree(tx)
            .get(p)
            .map(|n| n.node_gen)
            .ok_or(XsError::Enoent)?;
        let mut list = Vec::new();
        for c in leaf_children(self.tree(tx), p) {
            list.extend_from_slice(c.as_bytes());
            list.push(0);
        }
        let mut out = format!("{node_gen}\0").into_bytes();
        let off = if self.endless_directory_part {
            list.push(b'x');
            0
        } else {
            usize::try_from(offset).unwrap_or(usize::MAX)
        };
        if off >= list.len() {
            out.push(0);
            return Ok(out);
        }
        // Whole names from `off` that fit, then the end marker if the list ends.
        let max = abi::XENSTORE_PAYLOAD_MAX - out.len() - 1;
        let rest = list.get(off..).unwrap_or(&[]);
        let mut len = 0;
        for name in rest.split_inclusive(|&b| b == 0) {
            if len + name.len() > max {
                break;
            }
            len += name.len();
        }
        out.extend_from_slice(rest.get(..len).unwrap_or(&[]));
        if off + len == list.len() {
            out.push(0);
        }
        Ok(out)
    }

    fn op_commit(&mut self, tx: u32, commit: bool) -> Result<(), XsError> {
        let t = self.txs.remove(&tx).ok_or(XsError::Enoent)?;
        if !commit {
            return Ok(());
        }
        let conflict = t
            .accessed
            .iter()
            .any(|(p, node_gen)| self.nodes.get(p).map(|n| n.node_gen) != *node_gen);
        if conflict || self.fail_commits > 0 {
            self.fail_commits = self.fail_commits.saturating_sub(1);
            self.stats.conflicts += 1;
            return Err(XsError::Eagain);
        }
        // Events are computed against the tree before the commit applies, so a
        // removal still sees the watched nodes inside the removed subtree.
        for (path, recursive) in &t.fire {
            self.fire(path.clone(), *recursive);
        }
        for p in &t.changed {
            let node_gen = self.bump();
            match t.nodes.get(p) {
                Some(n) => {
                    self.nodes.insert(
                        p.clone(),
                        Node {
                            value: n.value.clone(),
                            node_gen,
                        },
                    );
                }
                None => {
                    self.nodes.remove(p);
                }
            }
        }
        self.stats.commits += 1;
        Ok(())
    }

    /// Queues events for a change at `path` to every matching watch.
    fn fire(&mut self, path: String, recursive_rm: bool) {
        let home = self.home();
        for w in &self.watches {
            let event_path = if is_child(&path, &w.abs) {
                // Relative watches get relative event paths.
                if w.given.starts_with('/') || w.given.starts_with('@') {
                    Some(path.clone())
                } else {
                    path.get(home.len() + 1..).map(String::from)
                }
            } else if recursive_rm && is_child(&w.abs, &path) && self.nodes.contains_key(&w.abs) {
                // Removal of a parent of the watched node reports the watch path.
                Some(w.given.clone())
            } else {
                None
            };
            if let Some(ep) = event_path {
                self.pending_events.push((ep, w.token.clone()));
            }
        }
    }

    /// Sends events queued by out-of-band changes.
    fn flush_events(&mut self) {
        for (path, token) in core::mem::take(&mut self.pending_events) {
            self.emit(event_frame(&path, &token));
        }
    }
}

fn one<'a>(strings: &[&'a [u8]]) -> Result<&'a [u8], XsError> {
    match strings {
        [s] => Ok(s),
        _ => Err(XsError::Einval),
    }
}

fn error_frame(req_id: u32, tx_id: u32, e: XsError) -> Frame {
    let mut payload = e.wire_name().unwrap_or("EINVAL").as_bytes().to_vec();
    payload.push(0);
    Frame {
        msg_type: abi::XS_ERROR,
        req_id,
        tx_id,
        payload,
        is_event: false,
    }
}

fn event_frame(path: &str, token: &str) -> Frame {
    let mut payload = Vec::new();
    wire::WatchEvent {
        path: String::from(path),
        token: String::from(token),
    }
    .emit_payload(&mut payload);
    Frame {
        msg_type: abi::XS_WATCH_EVENT,
        req_id: 0,
        tx_id: 0,
        payload,
        is_event: true,
    }
}

// ---------------------------------------------------------------------------
// Ring glue
// ---------------------------------------------------------------------------

/// How many consecutive `wait`s with nothing to deliver count as a deadlock.
const DEADLOCK_WAITS: u32 = 10_000;

#[derive(Debug)]
struct Shared {
    sim: SimXenstored,
    page: VecPage,
    kicks: u64,
    idle_waits: u32,
    ring_error: Option<ring::RingError>,
}

/// A [`SimXenstored`] serving a shared [`VecPage`] ring.
#[derive(Clone, Debug)]
pub struct SimRing {
    shared: Rc<RefCell<Shared>>,
}

/// The guest's view of the [`SimRing`] page.
#[derive(Clone, Debug)]
pub struct SimPage {
    shared: Rc<RefCell<Shared>>,
}

/// The guest's event channel to the [`SimRing`]: `kick` and `wait` let the
/// simulated daemon service the ring.
#[derive(Clone, Debug)]
pub struct SimPlatform {
    shared: Rc<RefCell<Shared>>,
}

impl SimRing {
    /// Puts `sim` behind a fresh page whose indices all start at
    /// `start_index` (pick a value near `u32::MAX` to exercise index wrap).
    pub fn new(sim: SimXenstored, start_index: u32) -> Self {
        let mut page = VecPage::new();
        page.set_indices(start_index);
        SimRing {
            shared: Rc::new(RefCell::new(Shared {
                sim,
                page,
                kicks: 0,
                idle_waits: 0,
                ring_error: None,
            })),
        }
    }

    /// A blocking client connected to this ring.
    pub fn connect(&self) -> Xenstore<SimPage, SimPlatform> {
        Xenstore::new(self.page(), self.platform())
    }

    /// The guest's page handle.
    pub fn page(&self) -> SimPage {
        SimPage {
            shared: self.shared.clone(),
        }
    }

    /// The guest's event-channel handle.
    pub fn platform(&self) -> SimPlatform {
        SimPlatform {
            shared: self.shared.clone(),
        }
    }

    /// Runs `f` on the daemon (to inspect it, turn knobs, or change the tree
    /// as another domain would).
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut SimXenstored) -> R) -> R {
        f(&mut self.shared.borrow_mut().sim)
    }

    /// Runs `f` on the raw page (to corrupt indices, for instance).
    pub fn with_page<R>(&self, f: impl FnOnce(&mut VecPage) -> R) -> R {
        f(&mut self.shared.borrow_mut().page)
    }

    /// One daemon pass over the ring; returns whether any byte moved.
    pub fn service(&self) -> bool {
        self.shared.borrow_mut().service()
    }

    /// Times the guest kicked the event channel.
    pub fn kicks(&self) -> u64 {
        self.shared.borrow().kicks
    }

    /// The last ring inconsistency the daemon side saw.
    pub fn ring_error(&self) -> Option<ring::RingError> {
        self.shared.borrow().ring_error
    }

    /// Simulates a ring reconnect / resume: the daemon forgets the connection
    /// ([`SimXenstored::reset_connection`]) and the rings restart empty at
    /// `start_index`.
    pub fn reconnect(&self, start_index: u32) {
        let mut s = self.shared.borrow_mut();
        s.sim.reset_connection();
        s.page.set_indices(start_index);
        s.ring_error = None;
    }
}

impl Shared {
    fn service(&mut self) -> bool {
        let mut moved = false;
        let mut buf = [0u8; abi::XENSTORE_RING_SIZE];
        loop {
            match ring::server_read_requests(&mut self.page, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.sim.receive(buf.get(..n).unwrap_or(&[]));
                    moved = true;
                }
                Err(e) => {
                    self.ring_error = Some(e);
                    return moved;
                }
            }
        }
        // With a chunk limit, deliver one chunk per pass so that messages are
        // split across passes (and across the ring's wrap point).
        loop {
            let chunk = self.sim.max_chunk.unwrap_or(abi::XENSTORE_RING_SIZE);
            let n = chunk.min(self.sim.out.len());
            if n == 0 {
                break;
            }
            let data: Vec<u8> = self.sim.out.range(..n).copied().collect();
            match ring::server_write_responses(&mut self.page, &data) {
                Ok(0) => break,
                Ok(w) => {
                    self.sim.out.drain(..w);
                    moved = true;
                }
                Err(e) => {
                    self.ring_error = Some(e);
                    break;
                }
            }
            if self.sim.max_chunk.is_some() {
                break;
            }
        }
        moved
    }
}

impl RingMemory for SimPage {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.shared.borrow().page.read_bytes(offset, buf);
    }

    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        self.shared.borrow_mut().page.write_bytes(offset, data);
    }

    fn load_acquire(&self, offset: usize) -> u32 {
        self.shared.borrow().page.load_acquire(offset)
    }

    fn store_release(&mut self, offset: usize, value: u32) {
        self.shared.borrow_mut().page.store_release(offset, value);
    }
}

impl Platform for SimPlatform {
    fn kick(&mut self) {
        let mut s = self.shared.borrow_mut();
        s.kicks += 1;
        s.service();
    }

    fn wait(&mut self) {
        let mut s = self.shared.borrow_mut();
        if s.service() {
            s.idle_waits = 0;
        } else {
            s.idle_waits += 1;
            assert!(
                s.idle_waits < DEADLOCK_WAITS,
                "SimXenstored: guest waits but the daemon has nothing to send (deadlock)"
            );
        }
    }
}
