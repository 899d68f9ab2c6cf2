//! Clients that are silent, slow or many: idle DICOM connections hold no association slot and
//! are closed by the ARTIM timer, every association of a burst is accepted or rejected (never
//! dropped without a word), HTTP clients that trickle their request headers or sit idle on a
//! kept-alive connection are disconnected, and an upload whose body stops arriving gets 408
//! while a slow but steady one is stored. One server for all, the steps one after another.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::common::dcmtk;
use crate::common::scu::{self, Scu, blocking};
use crate::site::Site;
use crate::support::Contexts;

const ARTIM_SECS: u64 = 2;
const HEADER_TIMEOUT_SECS: u64 = 2;
const BODY_TIMEOUT_SECS: u64 = 2;
/// Generous: the point is "closed within seconds" against "never".
const CLOSED_WITHIN: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread")]
async fn silent_slow_and_many_clients_are_bounded() {
    if !dcmtk::require_tool("echoscu") {
        return;
    }
    let site = Site::configured(&format!(
        "max_associations = 2\ndicom_artim_secs = {ARTIM_SECS}\n\
         http_header_timeout_secs = {HEADER_TIMEOUT_SECS}\n\
         http_body_timeout_secs = {BODY_TIMEOUT_SECS}\n"
    ));
    idle_sockets_hold_no_slot(&site).await;
    a_burst_is_answered_every_one(&site).await;
    slow_http_clients_are_cut_off(&site).await;
    stalled_uploads_are_cut_off(&site).await;
    site.assert_serves().await;
}

/// More idle connections than slots: a real peer still associates at once, and the ARTIM timer
/// closes the idle ones.
async fn idle_sockets_hold_no_slot(site: &Site) {
    let port = site.port();
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let echo = site.echoscu("ORTHWEB").await;
    assert!(
        echo.status.success(),
        "an echo while 8 silent sockets are open: {}",
        dcmtk::text(&echo)
    );
    let started = Instant::now();
    blocking(move || {
        for socket in idle {
            assert_closed_by_server(socket, &[]);
        }
    })
    .await;
    assert!(
        started.elapsed() < CLOSED_WITHIN,
        "silent sockets closed after {:?}",
        started.elapsed()
    );
    site.expect_log(&["no association request in time (ARTIM)"])
        .await;
}

/// Many peers request an association at the same moment: each gets an A-ASSOCIATE-AC (at most
/// as many as there are slots, held until every peer has its answer) or an A-ASSOCIATE-RJ.
async fn a_burst_is_answered_every_one(site: &Site) {
    const PEERS: usize = 200;
    let port = site.port();
    let outcomes = blocking(move || {
        let start = Arc::new(Barrier::new(PEERS));
        let answered = Arc::new(Barrier::new(PEERS));
        let peers: Vec<_> = (0..PEERS)
            .map(|_| {
                let (start, answered) = (start.clone(), answered.clone());
                std::thread::spawn(move || {
                    let contexts: Contexts = &[(scu::VERIFICATION, &[scu::IMPLICIT_LE])];
                    start.wait();
                    let outcome = Scu::connect(port, "BURSTSCU", "ORTHWEB", contexts);
                    answered.wait();
                    match outcome {
                        Ok(mut scu) => {
                            assert_eq!(scu.echo().unwrap().status, 0);
                            scu.release().unwrap();
                            "accepted".to_string()
                        }
                        Err(e) if format!("{e:?}").contains("Rejected") => "rejected".to_string(),
                        Err(e) => format!("no answer: {e:?}"),
                    }
                })
            })
            .collect();
        peers
            .into_iter()
            .map(|p| p.join().unwrap())
            .collect::<Vec<_>>()
    })
    .await;
    let accepted = outcomes.iter().filter(|o| *o == "accepted").count();
    let rejected = outcomes.iter().filter(|o| *o == "rejected").count();
    let unanswered: Vec<_> = outcomes.iter().filter(|o| o.starts_with("no")).collect();
    assert!(
        unanswered.is_empty(),
        "{} of {PEERS} got no answer, e.g. {:?}",
        unanswered.len(),
        unanswered.first()
    );
    assert!(
        (1..=2).contains(&accepted) && accepted + rejected == PEERS,
        "{accepted} accepted, {rejected} rejected"
    );
    site.expect_log(&["too many associations: request rejected (local limit)"])
        .await;
}

/// A client that sends a header byte now and then, and one that stays connected after its
/// answer, are both disconnected once the header timeout has passed.
async fn slow_http_clients_are_cut_off(site: &Site) {
    let port = site.server.http_port;
    let started = Instant::now();
    blocking(move || {
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        let started = Instant::now();
        // A byte every 300 ms keeps the connection busy but never finishes the headers.
        let cut = loop {
            std::thread::sleep(Duration::from_millis(300));
            if slow.write_all(b"X").is_err() || started.elapsed() > CLOSED_WITHIN {
                break slow;
            }
            let mut probe = [0; 1];
            slow.set_nonblocking(true).unwrap();
            let read = slow.read(&mut probe);
            slow.set_nonblocking(false).unwrap();
            if matches!(read, Ok(0)) {
                break slow;
            }
        };
        assert_closed_by_server(cut, b"");

        let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        idle.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        assert_closed_by_server(idle, b"HTTP/1.1 200");
    })
    .await;
    assert!(
        started.elapsed() < 2 * CLOSED_WITHIN,
        "slow clients cut off after {:?}",
        started.elapsed()
    );
}

/// An upload that stops mid-body gets 408 and its connection closed; one that arrives slowly,
/// in pieces further apart than nothing but always within the body timeout, is stored.
async fn stalled_uploads_are_cut_off(site: &Site) {
    let port = site.server.http_port;
    let file = std::fs::read(site.one().path).unwrap();
    let started = Instant::now();
    blocking(move || {
        let request = |socket: &mut TcpStream| {
            let head = format!(
                "POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Content-Type: application/dicom\r\nContent-Length: {}\r\n\r\n",
                file.len()
            );
            socket.write_all(head.as_bytes()).unwrap();
        };
        let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
        request(&mut stalled);
        stalled.write_all(&file[..file.len() / 2]).unwrap();
        assert_closed_by_server(stalled, b"HTTP/1.1 408");

        // Four pieces, each after a pause of half the body timeout: longer than the timeout in
        // all, never silent for as long.
        let mut steady = TcpStream::connect(("127.0.0.1", port)).unwrap();
        request(&mut steady);
        for piece in file.chunks(file.len().div_ceil(4)) {
            std::thread::sleep(Duration::from_millis(BODY_TIMEOUT_SECS * 500));
            steady.write_all(piece).unwrap();
        }
        steady.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
        let mut answer = [0u8; 12];
        steady.read_exact(&mut answer).unwrap();
        assert_eq!(
            &answer,
            b"HTTP/1.1 200",
            "a slow, steady upload: {}",
            String::from_utf8_lossy(&answer)
        );
    })
    .await;
    assert!(
        started.elapsed() < 2 * CLOSED_WITHIN,
        "stalled upload cut off after {:?}",
        started.elapsed()
    );
    site.expect_log(&["reading a request body failed", "stopped arriving"])
        .await;
}

/// Reads until the server closes the connection (within [`CLOSED_WITHIN`]); what was read must
/// start with `answer`.
fn assert_closed_by_server(mut socket: TcpStream, answer: &[u8]) {
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
    let mut read = Vec::new();
    match socket.read_to_end(&mut read) {
        Ok(_) => {}
        // A reset is a close too (data we sent was left unread).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    assert!(
        read.starts_with(answer),
        "answered {:?}",
        String::from_utf8_lossy(&read)
    );
}
