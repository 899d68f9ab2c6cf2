//! Waiting for a new connection's association request (PS3.8's ARTIM timer) without holding an
//! association slot: a socket that stays silent must not lock real peers out, and one whose
//! request has arrived is admitted or answered with an A-ASSOCIATE-RJ straight away.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// The most of a plain request waited for: a large A-ASSOCIATE-RQ (every storage class proposed)
/// is a few kilobytes; anything bigger is read by the association layer itself.
const WAIT_FOR_BYTES: usize = 16 * 1024;
/// The PDU type of an A-ASSOCIATE-RQ.
const ASSOCIATE_RQ: u8 = 0x01;

/// Returns once the peer's first PDU has arrived, unread: on a plain port the whole
/// A-ASSOCIATE-RQ (if it is at most [`WAIT_FOR_BYTES`]), on a TLS port the start of its handshake (the
/// request follows it, encrypted, and cannot be looked at here). Anything that is not an
/// association request is let through at once for the association layer to refuse.
pub async fn request_arrived(socket: &TcpStream, tls: bool) -> io::Result<()> {
    let mut buffer = vec![0; WAIT_FOR_BYTES];
    loop {
        let n = socket.peek(&mut buffer).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if tls || buffer[0] != ASSOCIATE_RQ {
            return Ok(());
        }
        if n >= 6 {
            let length = u32::from_be_bytes([buffer[2], buffer[3], buffer[4], buffer[5]]);
            // A request larger than we wait for (an absurd length included) is the association
            // layer's to read, or to refuse.
            let whole = length as usize + 6;
            if whole > WAIT_FOR_BYTES || n >= whole {
                return Ok(());
            }
        }
        // Part of the request is there: `peek` would answer at once again, so wait a little
        // for the rest rather than spin (rare: a request fits in one segment).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn waits_for_the_whole_request_and_leaves_it_unread() {
        let (mut client, server) = pair().await;
        let request = [[0x01, 0x00, 0, 0, 0, 4].as_slice(), b"abcd"].concat();
        client.write_all(&request[..7]).await.unwrap();
        let waiting = tokio::spawn(async move {
            request_arrived(&server, false).await.unwrap();
            server
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "three bytes of the request are missing"
        );
        client.write_all(&request[7..]).await.unwrap();
        let server = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the whole request is there")
            .unwrap();
        let mut unread = [0; 10];
        assert_eq!(server.peek(&mut unread).await.unwrap(), 10);
        assert_eq!(unread.as_slice(), request.as_slice());
    }

    #[tokio::test]
    async fn other_pdus_tls_and_huge_requests_pass_at_once_and_a_close_is_an_error() {
        let (mut client, server) = pair().await;
        client.write_all(&[0x16]).await.unwrap();
        request_arrived(&server, true).await.unwrap();
        request_arrived(&server, false).await.unwrap();
        let (mut client, server) = pair().await;
        client
            .write_all(&[0x01, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0])
            .await
            .unwrap();
        request_arrived(&server, false).await.unwrap();
        let (client, server) = pair().await;
        drop(client);
        assert!(request_arrived(&server, false).await.is_err());
    }
}
