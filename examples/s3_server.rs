//! A real S3 API server (s3s-fs) on 127.0.0.1 for benchmarks, as the tests use in-process.
//! Prints `endpoint=http://127.0.0.1:PORT root=DIR` and serves until killed. On SIGUSR1 it
//! goes away for two seconds (listener and open connections closed) and comes back on the same
//! port with the same objects: the "S3 restarted" fault of `bench/faults`. SIGTERM or SIGINT
//! stop it and remove its objects.

#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut server = s3::S3Server::start();
    println!(
        "endpoint={} root={}",
        server.endpoint(),
        server.root().display()
    );
    let mut outages = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    loop {
        tokio::select! {
            _ = outages.recv() => {
                server.stop().await;
                eprintln!("s3_server: down");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                server.restart();
                eprintln!("s3_server: up again");
            }
            // Returning drops the server, whose temporary root goes with it: a bench run
            // would otherwise leave its objects (hundreds of MB) behind.
            _ = terminate.recv() => return,
            _ = interrupt.recv() => return,
        }
    }
}
