//! The client's ceiling for `bench/serve`'s keep-alive downloads: a server that does nothing but
//! answer, as `storescp --ignore` is for DICOM. `http_ceiling FILE` listens on 127.0.0.1,
//! prints `endpoint=http://127.0.0.1:PORT`, and answers `GET /instances` with 100 made-up IDs
//! and every other request with FILE's bytes, held in memory with their headers and written in
//! one call on the connection's own thread. Serves until killed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn serve(stream: TcpStream, file: Arc<Vec<u8>>, list: Arc<Vec<u8>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let listing = line.starts_with("GET /instances ");
        // The headers, to the blank line; the client sends no body.
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            if header == "\r\n" {
                break;
            }
        }
        writer.write_all(if listing { &list } else { &file })?;
    }
}

fn response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn main() {
    let path = std::env::args().nth(1).expect("http_ceiling FILE");
    let body = std::fs::read(&path).expect("FILE");
    let file = Arc::new(response("application/dicom", &body));
    let ids: Vec<String> = (0..100).map(|i| format!("i{i}")).collect();
    let list = Arc::new(response(
        "application/json",
        serde_json::to_string(&ids).unwrap().as_bytes(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    println!("endpoint=http://{}", listener.local_addr().unwrap());
    for stream in listener.incoming().flatten() {
        let (file, list) = (file.clone(), list.clone());
        std::thread::spawn(move || serve(stream, file, list));
    }
}
