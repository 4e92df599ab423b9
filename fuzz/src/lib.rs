//! Shared harness code for the fuzz targets: one module per target, so the
//! seed-corpus writer builds inputs against exactly the state the target uses.

#[path = "netfront.rs"]
pub mod netfront_hostile;

#[path = "blkfront.rs"]
pub mod blkfront_hostile;

pub mod xenstore_decoder {
    //! `xenstore_decoder`: response-ring bytes into the decoder and the client.
    //!
    //! Input layout: byte 0 seeds the chunking; the rest is the byte stream as
    //! it would come out of the `rsp` ring.

    use xenstore::client::{Client, RequestId, WatchId};
    use xenstore::wire::{Body, Decoder, MsgType, Perm, Reply, Request, TxId};

    /// Queue capacity of the fuzzed watches (small, so overflow is reached).
    pub const WATCH_CAPACITY: usize = 3;

    /// Requests the client has in flight when the input starts, one per reply
    /// shape, so replies with `req_id` 1..=N hit every parser. Returns the
    /// client and its two watches (`req_id`s 9 and 10, tokens `xenrs-w1/2`).
    pub fn setup() -> (Client, [WatchId; 2]) {
        let mut c = Client::new();
        let perms = [Perm {
            domid: 0,
            access: xenstore::wire::Access::Read,
        }];
        let requests = [
            Request::Read { path: "name" },
            Request::Directory {
                path: "/local/domain/7",
            },
            Request::TransactionStart,
            Request::GetDomainPath { domid: 7 },
            Request::DirectoryPart {
                path: "/local/domain/7",
                offset: 0,
            },
            Request::GetPerms { path: "name" },
            Request::Write {
                path: "data/x",
                value: b"1",
            },
            Request::SetPerms {
                path: "name",
                perms: &perms,
            },
        ];
        for r in &requests {
            // Every request above is valid; a failure would show as fewer
            // requests in flight, which the seed writer checks.
            let _ = c.submit(TxId::NONE, r);
        }
        let w1 = c.watch("/local/domain/7", WATCH_CAPACITY).map(|(w, _)| w);
        let w2 = c.watch("data", WATCH_CAPACITY).map(|(w, _)| w);
        (c, [w1.unwrap_or(WatchId(0)), w2.unwrap_or(WatchId(0))])
    }

    /// Number of requests [`setup`] leaves in flight.
    pub const SETUP_REQUESTS: u32 = 10;

    /// Chunk lengths derived from the seed byte (1..=64, varying).
    fn chunks(seed: u8, data: &[u8]) -> impl Iterator<Item = &[u8]> {
        let mut state = u32::from(seed) | 0x100;
        let mut rest = data;
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = (((state >> 16) % 64) as usize + 1).min(rest.len());
            let (a, b) = rest.split_at(n);
            rest = b;
            Some(a)
        })
    }

    /// The fuzz body. Panics only if an invariant of the client breaks.
    pub fn run(data: &[u8]) {
        let Some((&seed, stream)) = data.split_first() else {
            return;
        };

        // The decoder alone; every payload also goes through every reply parser.
        let mut d = Decoder::new();
        for chunk in chunks(seed, stream) {
            d.feed_all(chunk, |m| {
                if let Ok(m) = m
                    && let Body::Payload(p) = &m.body
                {
                    for t in MsgType::ALL {
                        let _ = Reply::parse(t, p);
                    }
                }
            });
        }

        // The client with requests and watches in flight.
        let (mut c, watches) = setup();
        let initial = c.in_flight();
        for chunk in chunks(seed, stream) {
            c.receive(chunk);
        }
        assert!(c.in_flight() <= initial);
        for id in 1..=SETUP_REQUESTS {
            let _ = c.poll_reply(RequestId(id));
        }
        for w in watches {
            if let Some(s) = c.watch_stats(w) {
                assert!(s.queued <= s.capacity);
                assert!(s.coalesced <= s.received);
            }
            while c.next_event(w).is_some() {}
        }
        // Resume mid-stream and replay the input against the re-registrations.
        c.resume();
        for chunk in chunks(seed.wrapping_add(1), stream) {
            c.receive(chunk);
        }
        for w in watches {
            if let Some(s) = c.watch_stats(w) {
                assert!(s.queued <= s.capacity);
            }
        }
        let _ = c.stats();
        let _ = c.is_idle();
    }
}
