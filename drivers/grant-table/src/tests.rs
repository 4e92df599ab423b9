//! Host tests over [`SimGrantTable`]: exhaustion and growth, the deferred path,
//! no reuse of a reference while in use, and re-granting after resume.

extern crate std;

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::*;
use crate::sim::{POISON, SimError, SimGrantTable, SimPage};
use xen_abi::grant_table::{GTF_IN_USE, GTF_READING, GTF_TYPE_MASK, GTF_WRITING};

const BACKEND: DomId = 0;
const OTHER: DomId = 7;

type Table = GrantTable<SimGrantTable, SimPage>;

fn table(initial: u32, max: u32) -> Table {
    GrantTable::new(SimGrantTable::new(initial, max), Config::default())
}

fn grant(t: &mut Table, gfn: u64, access: Access) -> Grant<SimPage> {
    match t.grant_access(BACKEND, SimPage::new(gfn), access) {
        Ok(g) => g,
        Err((_, e)) => panic!("grant of gfn {gfn} failed: {e:?}"),
    }
}

fn check_accounting(t: &Table) {
    let s = t.stats();
    assert_eq!(
        s.free + s.active + s.deferred + s.leaked,
        s.capacity,
        "{s:?}"
    );
    assert_eq!(s.capacity, s.frames * 512 - 8);
}

#[test]
fn entries_are_written_as_grant_table_h_says() {
    let mut t = table(1, 4);
    let ro = grant(&mut t, 0x1234, Access::ReadOnly);
    let rw = grant(&mut t, 0x5678, Access::ReadWrite);
    let e = t.memory().entry(ro.gref()).expect("entry");
    assert_eq!(
        (e.flags, e.domid, e.frame),
        (GTF_PERMIT_ACCESS | GTF_READONLY, BACKEND, 0x1234)
    );
    let e = t.memory().entry(rw.gref()).expect("entry");
    assert_eq!(
        (e.flags, e.domid, e.frame),
        (GTF_PERMIT_ACCESS, BACKEND, 0x5678)
    );
    assert_eq!(ro.domid(), BACKEND);
    assert_eq!(ro.access(), Access::ReadOnly);
    assert_eq!(ro.buffer().gfn(), 0x1234);
    // Ending access invalidates the entry and gives the page back.
    let page = t.end_access(ro).map_err(|(_, e)| e).expect("end");
    assert_eq!(page, SimPage::new(0x1234));
    assert_eq!(t.memory().entry(8).map(|e| e.flags), Some(0));
    let _ = t.end_access(rw).map_err(|(_, e)| e).expect("end");
    check_accounting(&t);
}

#[test]
fn reserved_entries_are_never_handed_out() {
    let mut t = table(1, 1);
    let mut grants = Vec::new();
    while let Ok(g) = t.grant_access(BACKEND, SimPage::new(1), Access::ReadOnly) {
        grants.push(g);
    }
    assert_eq!(grants.len(), 504);
    let refs: BTreeSet<GrantRef> = grants.iter().map(|g| g.gref()).collect();
    assert_eq!(refs.len(), 504, "all distinct");
    assert_eq!(refs.first(), Some(&8));
    assert_eq!(refs.last(), Some(&511));
    for g in grants {
        assert!(t.end_access(g).is_ok());
    }
    check_accounting(&t);
}

#[test]
fn exhaustion_and_growth() {
    let mut t = table(1, 3);
    assert_eq!(t.stats().capacity, 504);
    let mut grants = Vec::new();
    for i in 0..504 {
        grants.push(grant(&mut t, i, Access::ReadWrite));
    }
    assert_eq!(t.stats().frames, 1);
    // The 505th grant grows the table by one frame.
    grants.push(grant(&mut t, 504, Access::ReadWrite));
    let s = t.stats();
    assert_eq!((s.frames, s.grows, s.capacity, s.active), (2, 1, 1016, 505));
    assert_eq!(t.memory().frames(), 2);
    assert_eq!(grants.last().map(Grant::gref), Some(512));
    // A failing grow hands the page back and changes nothing.
    for i in 505..1016 {
        grants.push(grant(&mut t, i, Access::ReadWrite));
    }
    t.memory_mut().fail_next_grow(GrowError::Hypervisor(-12));
    match t.grant_access(BACKEND, SimPage::new(9999), Access::ReadOnly) {
        Err((page, GrantError::Grow(GrowError::Hypervisor(-12)))) => assert_eq!(page.gfn(), 9999),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.stats().frames, 2);
    // Grow to the maximum, then exhaustion.
    for i in 0..512 {
        grants.push(grant(&mut t, 2000 + i, Access::ReadWrite));
    }
    let s = t.stats();
    assert_eq!((s.frames, s.capacity, s.free, s.active), (3, 1528, 0, 1528));
    match t.grant_access(BACKEND, SimPage::new(4242), Access::ReadOnly) {
        Err((page, GrantError::Exhausted)) => assert_eq!(page.gfn(), 4242),
        other => panic!("unexpected {other:?}"),
    }
    // Ending one makes room again without growing.
    let first = grants.remove(0);
    let freed = first.gref();
    assert!(t.end_access(first).is_ok());
    let again = grant(&mut t, 4242, Access::ReadOnly);
    assert_eq!(again.gref(), freed);
    assert_eq!(t.stats().grows, 2);
    check_accounting(&t);
}

#[test]
fn frames_beyond_32_bits_are_refused() {
    let mut t = table(1, 1);
    match t.grant_access(BACKEND, SimPage::new(1 << 32), Access::ReadOnly) {
        Err((page, GrantError::FrameTooLarge(gfn))) => {
            assert_eq!(gfn, 1 << 32);
            assert_eq!(page.gfn(), 1 << 32);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.stats().active, 0);
    assert_eq!(t.memory().publishes(), 0);
    check_accounting(&t);
}

#[test]
fn end_access_fails_while_mapped_and_hands_the_grant_back() {
    let mut t = table(1, 1);
    t.memory_mut().set_page(0x42, b"secret");
    let g = grant(&mut t, 0x42, Access::ReadWrite);
    let gref = g.gref();
    t.memory_mut()
        .backend_map(BACKEND, gref, Access::ReadWrite)
        .expect("map");
    assert_eq!(
        t.memory().entry(gref).map(|e| e.flags & GTF_IN_USE),
        Some(GTF_READING | GTF_WRITING)
    );
    let g = match t.end_access(g) {
        Err((g, EndAccessError::InUse(InUse { flags }))) => {
            assert_eq!(flags & GTF_IN_USE, GTF_READING | GTF_WRITING);
            g
        }
        other => panic!("unexpected {other:?}"),
    };
    // Still granted, page intact, reference not reusable.
    assert_eq!(
        t.memory().entry(gref).map(|e| e.flags & GTF_TYPE_MASK),
        Some(GTF_PERMIT_ACCESS)
    );
    assert_eq!(
        t.memory()
            .backend_read(BACKEND, gref)
            .map(|p| p[..6].to_vec()),
        Ok(b"secret".to_vec())
    );
    let s = t.stats();
    assert_eq!((s.active, s.free), (1, 503));
    t.memory_mut()
        .backend_unmap(BACKEND, gref, Access::ReadWrite)
        .expect("unmap");
    let page = t
        .end_access(g)
        .map_err(|(_, e)| e)
        .expect("end after unmap");
    // The page came back and its contents were poisoned as access ended.
    assert!(
        t.memory()
            .page(page.gfn())
            .expect("page")
            .iter()
            .all(|b| *b == POISON)
    );
    assert_eq!(
        t.memory().backend_read(BACKEND, gref),
        Err(SimError::NotMapped)
    );
    check_accounting(&t);
}

#[test]
fn deferred_end_access_is_retried_and_released_later() {
    let mut t = table(1, 1);
    t.memory_mut().set_page(0x99, b"payload");
    let g = grant(&mut t, 0x99, Access::ReadOnly);
    let gref = g.gref();
    t.memory_mut()
        .backend_map(BACKEND, gref, Access::ReadOnly)
        .expect("map");
    // The back end refuses a write mapping of a read-only grant.
    assert_eq!(
        t.memory_mut().backend_map(BACKEND, gref, Access::ReadWrite),
        Err(SimError::ReadOnly)
    );
    assert_eq!(
        t.end_access_or_defer(g).map_err(|(_, e)| e),
        Ok(Ended::Deferred(gref))
    );
    let s = t.stats();
    assert_eq!((s.active, s.deferred, s.free), (0, 1, 503));
    check_accounting(&t);

    // While deferred: the page is neither released nor poisoned, and the
    // reference is never handed out again.
    let mut released = Vec::new();
    for _ in 0..3 {
        let r = t.poll_deferred(|p| released.push(p));
        assert_eq!(
            r,
            PollReport {
                released: 0,
                still_deferred: 1,
                gave_up: 0
            }
        );
    }
    assert!(released.is_empty());
    assert_eq!(
        t.memory()
            .backend_read(BACKEND, gref)
            .map(|p| p[..7].to_vec()),
        Ok(b"payload".to_vec())
    );
    let mut others = Vec::new();
    for i in 0..503 {
        let o = grant(&mut t, 1000 + i, Access::ReadOnly);
        assert_ne!(o.gref(), gref);
        others.push(o);
    }
    assert!(matches!(
        t.grant_access(BACKEND, SimPage::new(5), Access::ReadOnly),
        Err((_, GrantError::Exhausted))
    ));

    // The back end lets go; the next poll releases the page and the reference.
    t.memory_mut()
        .backend_unmap(BACKEND, gref, Access::ReadOnly)
        .expect("unmap");
    let r = t.poll_deferred(|p| released.push(p));
    assert_eq!(
        r,
        PollReport {
            released: 1,
            still_deferred: 0,
            gave_up: 0
        }
    );
    assert_eq!(released, [SimPage::new(0x99)]);
    assert!(
        t.memory()
            .page(0x99)
            .expect("page")
            .iter()
            .all(|b| *b == POISON)
    );
    let s = t.stats();
    assert_eq!((s.deferred, s.free, s.deferred_released), (0, 1, 1));
    let reuse = grant(&mut t, 6, Access::ReadOnly);
    assert_eq!(reuse.gref(), gref, "free again only now");
    check_accounting(&t);
}

#[test]
fn deferred_entries_can_be_given_up_on() {
    let mut t: Table = GrantTable::new(
        SimGrantTable::new(1, 1),
        Config {
            give_up_after: Some(2),
        },
    );
    let g = grant(&mut t, 3, Access::ReadWrite);
    let gref = g.gref();
    t.memory_mut()
        .backend_map(BACKEND, gref, Access::ReadWrite)
        .expect("map");
    assert!(matches!(t.end_access_or_defer(g), Ok(Ended::Deferred(_))));
    let mut released = 0;
    assert_eq!(t.poll_deferred(|_| released += 1).still_deferred, 1);
    assert_eq!(t.poll_deferred(|_| released += 1).gave_up, 1);
    // Even after the back end unmaps, a leaked entry is never retried or reused.
    t.memory_mut()
        .backend_unmap(BACKEND, gref, Access::ReadWrite)
        .expect("unmap");
    assert_eq!(t.poll_deferred(|_| released += 1), PollReport::default());
    assert_eq!(released, 0);
    let s = t.stats();
    assert_eq!((s.deferred, s.leaked, s.free), (0, 1, 503));
    check_accounting(&t);
}

#[test]
fn immediate_end_or_defer_when_unmapped() {
    let mut t = table(1, 1);
    let g = grant(&mut t, 77, Access::ReadOnly);
    match t.end_access_or_defer(g) {
        Ok(Ended::Released(p)) => assert_eq!(p.gfn(), 77),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.stats().deferred, 0);
}

#[test]
fn backend_checks_domain_and_type() {
    let mut t = table(1, 1);
    let g = grant(&mut t, 1, Access::ReadWrite);
    let m = t.memory_mut();
    assert_eq!(
        m.backend_map(OTHER, g.gref(), Access::ReadOnly),
        Err(SimError::WrongDomain)
    );
    assert_eq!(
        m.backend_map(BACKEND, 300, Access::ReadOnly),
        Err(SimError::NotGranted)
    );
    assert_eq!(
        m.backend_map(BACKEND, 100_000, Access::ReadOnly),
        Err(SimError::BadRef)
    );
    assert_eq!(
        m.backend_unmap(BACKEND, g.gref(), Access::ReadOnly),
        Err(SimError::NotMapped)
    );
    assert!(t.end_access(g).is_ok());
}

#[test]
fn grants_of_another_table_are_refused() {
    let mut a = table(1, 1);
    let mut b = table(1, 1);
    let g = grant(&mut a, 5, Access::ReadOnly);
    let g = match b.end_access(g) {
        Err((g, EndAccessError::ForeignTable)) => g,
        other => panic!("unexpected {other:?}"),
    };
    let g = match b.end_access_or_defer(g) {
        Err((g, EndAccessError::ForeignTable)) => g,
        other => panic!("unexpected {other:?}"),
    };
    let g = match b.regrant(g) {
        Err((g, GrantError::ForeignTable)) => g,
        other => panic!("unexpected {other:?}"),
    };
    // Table b's entry with the same number was never touched.
    assert_eq!(b.memory().entry(g.gref()).map(|e| e.flags), Some(0));
    assert!(a.end_access(g).is_ok());
}

#[test]
fn dropping_a_grant_leaks_it_safely() {
    let mut t = table(1, 1);
    let g = grant(&mut t, 5, Access::ReadOnly);
    let gref = g.gref();
    #[allow(clippy::drop_non_drop)]
    drop(g);
    for i in 0..503 {
        let o = grant(&mut t, 100 + i, Access::ReadOnly);
        assert_ne!(o.gref(), gref);
        // `o` is dropped here and leaks its reference too.
    }
    assert_eq!(t.stats().active, 504);
    assert_eq!(
        t.memory().entry(gref).map(|e| e.frame),
        Some(5),
        "still granted"
    );
}

/// A small deterministic generator for the randomized test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn no_reference_is_reused_while_in_use() {
    // Random grant / map / unmap / end / defer / poll interleavings. Invariant:
    // a newly issued reference is never one that is live, mapped or deferred;
    // pages come back only when unmapped; the counters always add up.
    let mut hits = [0u32; 4]; // in-use refusals, deferrals, exhaustions, poll releases
    for seed in 1..=20u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut t = table(1, 2);
        let mut live: Vec<Grant<SimPage>> = Vec::new();
        let mut mapped: BTreeSet<GrantRef> = BTreeSet::new();
        let mut deferred: BTreeSet<GrantRef> = BTreeSet::new();
        let mut next_gfn = 0u64;
        for _ in 0..6000 {
            match rng.below(6) {
                0 | 1 => {
                    next_gfn += 1;
                    match t.grant_access(BACKEND, SimPage::new(next_gfn), Access::ReadWrite) {
                        Ok(g) => {
                            let r = g.gref();
                            assert!(r >= 8);
                            assert!(!live.iter().any(|l| l.gref() == r), "reused a live ref");
                            assert!(!deferred.contains(&r), "reused a deferred ref");
                            assert!(!t.memory().is_mapped(r), "reused a mapped ref");
                            live.push(g);
                        }
                        Err((_, GrantError::Exhausted)) => {
                            assert_eq!(t.stats().free, 0);
                            hits[2] += 1;
                        }
                        Err((_, e)) => panic!("unexpected {e:?}"),
                    }
                }
                2 if !live.is_empty() => {
                    let r = live[rng.below(live.len())].gref();
                    if mapped.insert(r) {
                        t.memory_mut()
                            .backend_map(BACKEND, r, Access::ReadWrite)
                            .expect("map");
                    }
                }
                3 if !mapped.is_empty() => {
                    let r = *mapped.iter().nth(rng.below(mapped.len())).expect("nth");
                    t.memory_mut()
                        .backend_unmap(BACKEND, r, Access::ReadWrite)
                        .expect("unmap");
                    mapped.remove(&r);
                }
                4 if !live.is_empty() => {
                    let g = live.swap_remove(rng.below(live.len()));
                    let r = g.gref();
                    if rng.below(2) == 0 {
                        match t.end_access(g) {
                            Ok(_) => assert!(!mapped.contains(&r)),
                            Err((g, EndAccessError::InUse(_))) => {
                                assert!(mapped.contains(&r));
                                live.push(g);
                                hits[0] += 1;
                            }
                            Err((_, e)) => panic!("unexpected {e:?}"),
                        }
                    } else {
                        match t.end_access_or_defer(g) {
                            Ok(Ended::Released(_)) => assert!(!mapped.contains(&r)),
                            Ok(Ended::Deferred(d)) => {
                                assert_eq!(d, r);
                                assert!(mapped.contains(&r));
                                deferred.insert(r);
                                hits[1] += 1;
                            }
                            Err((_, e)) => panic!("unexpected {e:?}"),
                        }
                    }
                }
                5 => {
                    let mut back = Vec::new();
                    t.poll_deferred(|p| back.push(p));
                    hits[3] += back.len() as u32;
                    deferred.retain(|r| mapped.contains(r));
                    assert_eq!(t.stats().deferred as usize, deferred.len());
                }
                _ => {}
            }
            check_accounting(&t);
            let s = t.stats();
            assert_eq!(s.active as usize, live.len());
        }
    }
    assert!(
        hits.iter().all(|h| *h > 0),
        "every path exercised: {hits:?}"
    );
}

#[test]
fn resume_forgets_everything_and_counts_regrants() {
    let mut t = table(1, 2);
    let ring = grant(&mut t, 0x10, Access::ReadWrite);
    let data = grant(&mut t, 0x11, Access::ReadOnly);
    let busy = grant(&mut t, 0x12, Access::ReadWrite);
    let (ring_ref, busy_ref) = (ring.gref(), busy.gref());
    t.memory_mut()
        .backend_map(BACKEND, busy_ref, Access::ReadWrite)
        .expect("map");
    assert!(matches!(
        t.end_access_or_defer(busy),
        Ok(Ended::Deferred(_))
    ));
    // Grow to two frames before suspending.
    let mut extra = Vec::new();
    for i in 0..510 {
        extra.push(grant(&mut t, 0x1000 + i, Access::ReadOnly));
    }
    assert_eq!(t.stats().frames, 2);

    // Resume in a new domain: Xen gives a fresh one-frame table.
    t.memory_mut().new_domain();
    let returned = t.reset_for_resume();
    assert_eq!(
        returned,
        [SimPage::new(0x12)],
        "the deferred page is free: its mappings died with the old domain"
    );
    let s = t.stats();
    assert_eq!((s.frames, s.active, s.deferred, s.free), (1, 0, 0, 504));
    assert!(t.is_stale(&ring));

    // A new grant may reuse an old number; a stale handle must not touch it.
    let fresh = grant(&mut t, 0x20, Access::ReadOnly);
    assert_eq!(fresh.gref(), ring_ref);
    let page = t
        .end_access(ring)
        .map_err(|(_, e)| e)
        .expect("stale end is immediate");
    assert_eq!(page.gfn(), 0x10);
    assert_eq!(t.stats().stale_released, 1);
    let e = t.memory().entry(fresh.gref()).expect("entry");
    assert_eq!(
        (e.flags, e.frame),
        (GTF_PERMIT_ACCESS | GTF_READONLY, 0x20),
        "fresh grant intact"
    );

    // Re-grant the rest: new references, same domain and access, counted.
    let data = match t.regrant(data) {
        Ok(g) => g,
        Err((_, e)) => panic!("regrant failed: {e:?}"),
    };
    assert!(!t.is_stale(&data));
    assert_eq!(data.access(), Access::ReadOnly);
    let e = t.memory().entry(data.gref()).expect("entry");
    assert_eq!(
        (e.flags, e.domid, e.frame),
        (GTF_PERMIT_ACCESS | GTF_READONLY, BACKEND, 0x11)
    );
    let mut regranted = Vec::new();
    for g in extra {
        match t.regrant(g) {
            Ok(g) => regranted.push(g),
            Err((_, e)) => panic!("regrant failed: {e:?}"),
        }
    }
    let s = t.stats();
    assert_eq!(s.regrants, 511);
    assert_eq!(s.frames, 2, "grew again on demand");
    // Re-granting a current grant is a no-op.
    let data = match t.regrant(data) {
        Ok(g) => g,
        Err((_, e)) => panic!("{e:?}"),
    };
    assert_eq!(t.stats().regrants, 511);
    assert!(t.end_access(data).is_ok());
    assert!(t.end_access(fresh).is_ok());
    for g in regranted {
        assert!(t.end_access(g).is_ok());
    }
    check_accounting(&t);
    assert_eq!(t.stats().active, 0);
}

#[test]
fn a_cancelled_suspend_changes_nothing() {
    // Without reset_for_resume (cancelled suspend), grants stay valid and mapped
    // pages stay protected.
    let mut t = table(1, 1);
    let g = grant(&mut t, 1, Access::ReadWrite);
    t.memory_mut()
        .backend_map(BACKEND, g.gref(), Access::ReadWrite)
        .expect("map");
    assert!(!t.is_stale(&g));
    let g = match t.end_access(g) {
        Err((g, EndAccessError::InUse(_))) => g,
        other => panic!("unexpected {other:?}"),
    };
    t.memory_mut()
        .backend_unmap(BACKEND, g.gref(), Access::ReadWrite)
        .expect("unmap");
    assert!(t.end_access(g).is_ok());
}

#[test]
fn data_accessors_reach_the_contents() {
    struct Buf {
        gfn: u64,
        bytes: [u8; 8],
    }
    impl Grantable for Buf {
        fn gfn(&self) -> u64 {
            self.gfn
        }
    }
    impl Deref for Buf {
        type Target = [u8; 8];
        fn deref(&self) -> &[u8; 8] {
            &self.bytes
        }
    }
    impl DerefMut for Buf {
        fn deref_mut(&mut self) -> &mut [u8; 8] {
            &mut self.bytes
        }
    }
    let mut mem_table =
        GrantTable::<SimGrantTable, Buf>::new(SimGrantTable::new(1, 1), Config::default());
    let mut g = match mem_table.grant_access(
        BACKEND,
        Buf {
            gfn: 3,
            bytes: [0; 8],
        },
        Access::ReadOnly,
    ) {
        Ok(g) => g,
        Err((_, e)) => panic!("{e:?}"),
    };
    g.data_mut()[0] = 0xAB;
    assert_eq!(g.data()[0], 0xAB);
    let b = mem_table.end_access(g).map_err(|(_, e)| e).expect("end");
    assert_eq!(b.bytes[0], 0xAB);
}

#[test]
fn errors_display() {
    use alloc::string::ToString;
    assert_eq!(
        GrantError::FrameTooLarge(0x1_0000_0000).to_string(),
        "gfn 0x100000000 does not fit a v1 grant entry (32 bits)"
    );
    assert_eq!(
        GrantError::Grow(GrowError::Hypervisor(-12)).to_string(),
        "growing the grant table: hypervisor refused a grant frame: -12"
    );
    assert_eq!(
        EndAccessError::InUse(InUse { flags: 0x19 }).to_string(),
        "peer still uses the grant (flags 0x0019)"
    );
    assert_eq!(
        SimError::WrongDomain.to_string(),
        "entry grants another domain"
    );
}
