//! Serving the router on accepted HTTP(S) connections: `TCP_NODELAY` on every socket, a
//! deadline for each request's headers that also ends kept-alive connections left idle, and a
//! graceful shutdown. Written over hyper's connection builder rather than `axum::serve`, which
//! sets no timer, so hyper's header timeout never runs there and a client sending a header byte
//! a second holds its connection (and a file descriptor) forever.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpStream;
use tower::ServiceExt;
use tracing::{debug, warn};

/// How long requests under way get to finish once the server is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Sets `TCP_NODELAY`: without it, a response written in two parts (headers, then body) waits
/// for the client's delayed ACK, ~40 ms per request on a kept-alive connection.
pub fn no_delay(socket: &TcpStream) {
    if let Err(e) = socket.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Serves `router` on every connection `listener` accepts until `shutdown` completes, then
/// lets the requests under way finish. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`, as with axum's own `serve`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            match connection.await {
                Ok(()) => {}
                // Also how kept-alive connections left idle end: not worth more than debug.
                Err(e) if e.is_timeout() => {
                    debug!(%peer, "HTTP connection closed: no complete request headers in time");
                }
                Err(e) => debug!(%peer, error = %e, "HTTP connection ended with an error"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("HTTP requests still under way at shutdown were cut off");
    }
}
