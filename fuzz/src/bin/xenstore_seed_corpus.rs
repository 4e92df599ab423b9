//! Writes seed inputs for `xenstore_decoder` from scripted `SimXenstored` sessions.
//!
//! Each seed is a chunking byte followed by the response stream a simulated
//! daemon produced for the target's `setup()` requests, with and without
//! misbehaviour. Usage: `cargo run --bin xenstore_seed_corpus [dir]`.

use std::path::PathBuf;

use xenrs_fuzz::xenstore_decoder::{SETUP_REQUESTS, setup};
use xenstore::sim::{ReplyFault, SimXenstored};

/// Runs the setup requests against a daemon prepared by `prepare` and returns
/// every byte the daemon sent back.
fn session(prepare: impl FnOnce(&mut SimXenstored)) -> Vec<u8> {
    let mut sim = SimXenstored::new(7);
    sim.write("name", b"guest");
    sim.write("data/y", b"2");
    for i in 0..40 {
        sim.write(&format!("data/many/entry-{i}"), b"v");
    }
    prepare(&mut sim);
    let (mut client, _) = setup();
    assert_eq!(client.in_flight(), SETUP_REQUESTS as usize);
    let out = client.output().to_vec();
    client.consume_output(out.len());
    sim.receive(&out);
    // Changes after the watches are set produce events too.
    sim.write("data/z", b"3");
    sim.rm("data/many");
    let stream = sim.take_output(usize::MAX);
    // Sanity: the client accepts its own session.
    client.receive(&stream);
    stream
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("corpus/xenstore_decoder"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let faults = [
        ReplyFault::DropNul,
        ReplyFault::WrongType,
        ReplyFault::UnknownErrorName,
        ReplyFault::Duplicate,
        ReplyFault::Drop,
        ReplyFault::BadLength(7),
        ReplyFault::BadLength(-3),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("clean".into(), session(|_| {})),
        ("reversed".into(), session(|s| s.set_reverse_replies(true))),
        (
            "injected".into(),
            session(|s| {
                s.inject_unknown_req_id_reply();
                s.inject_unknown_type();
                s.inject_watch_event("/local/domain/7/x", "xenrs-w1");
                s.inject_watch_event("/x", "stranger");
                s.inject_malformed_watch_event();
            }),
        ),
        ("oversized".into(), session(|s| s.inject_oversized(4097))),
    ];
    for (i, f) in faults.iter().enumerate() {
        seeds.push((
            format!("fault-{i}"),
            session(|s| {
                // Hit the third reply (the transaction start) and the fifth.
                s.fault_next_reply(ReplyFault::Duplicate);
                s.fault_next_reply(ReplyFault::Duplicate);
                s.fault_next_reply(*f);
                s.fault_next_reply(ReplyFault::Duplicate);
                s.fault_next_reply(*f);
            }),
        ));
    }
    for (chunk_seed, (name, stream)) in seeds.into_iter().enumerate() {
        let mut input = vec![chunk_seed as u8];
        input.extend(stream);
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, &input)?;
        println!("{} ({} bytes)", path.display(), input.len());
    }
    Ok(())
}
