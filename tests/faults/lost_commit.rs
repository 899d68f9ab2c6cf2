//! A COMMIT whose answer never comes back, as when PostgreSQL restarts or fails over with the
//! commit under way: the transaction may have committed, and the server cannot know. A relay
//! between the server and PostgreSQL passes the COMMIT on and cuts the connection before the
//! answer. The instance must not end up indexed without its file, and what is acknowledged,
//! then or when it is sent again, must be readable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::dcmtk;
use crate::common::pg::PgCluster;
use crate::common::s3::S3Server;
use crate::common::server::ServerConfig;
use crate::site::Site;

/// sqlx commits with a simple-protocol Query message: `Q`, its length, the SQL text.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

/// Relays connections to PostgreSQL; see the module's comment.
struct Relay {
    port: u16,
    state: Arc<RelayState>,
}

#[derive(Default)]
struct RelayState {
    upstream: u16,
    /// The next COMMIT is cut; with `refuse_after`, new connections are then closed at once.
    armed: AtomicBool,
    refuse_after: AtomicBool,
    refusing: AtomicBool,
    cuts: AtomicUsize,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(RelayState {
            upstream,
            ..RelayState::default()
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accepting.refusing.load(Ordering::SeqCst) {
                    tokio::spawn(relay(client, accepting.clone()));
                }
            }
        });
        Relay { port, state }
    }

    /// Cuts the next COMMIT's answer; with `then_refuse`, PostgreSQL is unreachable after it
    /// until `reachable`.
    fn cut_next_commit(&self, then_refuse: bool) {
        self.state.refuse_after.store(then_refuse, Ordering::SeqCst);
        self.state.armed.store(true, Ordering::SeqCst);
    }

    fn reachable(&self) {
        self.state.refusing.store(false, Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, state: Arc<RelayState>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", state.upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let answers = {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                if cut.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
        let chunk = &buf[..n];
        let commit = chunk.windows(COMMIT.len()).any(|w| w == COMMIT);
        if commit && state.armed.swap(false, Ordering::SeqCst) {
            cut.store(true, Ordering::SeqCst);
            if state.refuse_after.load(Ordering::SeqCst) {
                state.refusing.store(true, Ordering::SeqCst);
            }
            state.cuts.fetch_add(1, Ordering::SeqCst);
            let _ = to_server.write_all(chunk).await;
            // PostgreSQL commits meanwhile (its answer closes the client's side, unsent);
            // then the server's side is closed too.
            tokio::time::sleep(Duration::from_millis(300)).await;
            break;
        }
        if to_server.write_all(chunk).await.is_err() {
            break;
        }
    }
    answers.abort();
}

/// Bind the four in this order: the site is dropped first.
async fn relayed_site(db: &str) -> Option<(PgCluster, S3Server, Relay, Site)> {
    if !dcmtk::require_tool("storescu") {
        return None;
    }
    let pg = tokio::task::block_in_place(PgCluster::start)?;
    let s3 = S3Server::start();
    let relay = Relay::start(pg.port()).await;
    let site = tokio::task::block_in_place(|| {
        Site::cloud_through(&pg, &s3, db, relay.port, ServerConfig::default())
    });
    Some((pg, s3, relay, site))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_answer_is_lost_keeps_acknowledged_instances_readable() {
    let Some((pg, _s3, relay, site)) = relayed_site("lostcommit").await else {
        return;
    };
    site.assert_serves().await;
    let committed = |sop: &str| {
        let sql = format!("SELECT COUNT(*) FROM instances WHERE sop_instance_uid = '{sop}'");
        pg.psql("lostcommit", &sql).trim().to_string()
    };

    // The database is reachable again at once: writing the instance again finds the row
    // that did commit as its own, and the store is acknowledged with its file kept.
    let first = site.one();
    relay.cut_next_commit(false);
    site.assert_stores(&first).await;
    assert_eq!(relay.cuts(), 1, "the store's COMMIT was cut");
    site.expect_log(&["commit outcome unknown: writing again"])
        .await;
    assert_eq!(committed(&first.sop_instance_uid), "1");

    // It stays unreachable: the store is refused, but the row committed, so its file stays;
    // sent again, the instance is acknowledged and read from that file.
    let second = site.one();
    relay.cut_next_commit(true);
    let out = site.storescu(&[&second.path], &["-v"]).await;
    let text = dcmtk::text(&out);
    assert!(
        text.contains("Received Store Response (Refused: OutOfResources)"),
        "refused while the outcome is unknown: {text}"
    );
    assert_eq!(relay.cuts(), 2, "the store's COMMIT was cut");
    site.expect_log(&["commit outcome unknown: blob kept"])
        .await;
    assert_eq!(committed(&second.sop_instance_uid), "1");
    relay.reachable();
    site.assert_stores(&second).await;
    site.assert_blobs_match_rows().await;
    site.assert_serves().await;
}
