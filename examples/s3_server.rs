//! A real S3 API server (s3s-fs) on 127.0.0.1 for benchmarks, as the tests use in-process.
//! Prints `endpoint=http://127.0.0.1:PORT root=DIR` and serves until killed.

#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let server = s3::S3Server::start();
    println!(
        "endpoint={} root={}",
        server.endpoint(),
        server.root().display()
    );
    std::future::pending::<()>().await;
}
