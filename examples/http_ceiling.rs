//! The client's ceiling for `bench/serve`'s keep-alive downloads: a server that does nothing but
//! answer, as `storescp --ignore` is for DICOM. `http_ceiling memory DIR` listens on 127.0.0.1,
//! prints `endpoint=http://127.0.0.1:PORT`, answers `GET /instances` with 100 made-up IDs, and
//! `GET /instances/{n}/file` with the n-th of the first 100 files under DIR (sorted paths),
//! held in memory with their headers and written in one call on the connection's own thread:
//! what a server answering from a memory cache (ours, Orthanc's) could do at best. Serves until
//! killed.
//!
//! `http_ceiling read DIR` instead reads the file asked for from the page cache on each
//! request: the floor of any server that sends a stored file with a read and a write, with
//! nothing else to do (no index, no authentication, no hand-off between threads).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// What a request is answered with.
enum Bodies {
    /// File `n`'s response, headers included.
    Memory(Vec<Vec<u8>>),
    /// File `n` of these, read when asked for.
    Files(Vec<std::path::PathBuf>),
}

impl Bodies {
    fn write(&self, request: &str, writer: &mut TcpStream) -> std::io::Result<()> {
        let n: usize = request
            .split('/')
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match self {
            Bodies::Memory(responses) => writer.write_all(&responses[n % responses.len()]),
            Bodies::Files(paths) => {
                let body = std::fs::read(&paths[n % paths.len()])?;
                let head = head("application/dicom", body.len());
                let mut parts = [
                    std::io::IoSlice::new(head.as_bytes()),
                    std::io::IoSlice::new(&body),
                ];
                let mut parts = &mut parts[..];
                while !parts.is_empty() {
                    let written = writer.write_vectored(parts)?;
                    std::io::IoSlice::advance_slices(&mut parts, written);
                }
                Ok(())
            }
        }
    }
}

fn serve(stream: TcpStream, bodies: Arc<Bodies>, list: Arc<Vec<u8>>) -> std::io::Result<()> {
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
        if listing {
            writer.write_all(&list)?;
        } else {
            bodies.write(&line, &mut writer)?;
        }
    }
}

fn head(content_type: &str, length: usize) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n")
}

fn response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = head(content_type, body.len()).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn main() {
    let usage = "http_ceiling memory|read DIR";
    let mode = std::env::args().nth(1).expect(usage);
    let dir = std::path::PathBuf::from(std::env::args().nth(2).expect(usage));
    let mut paths = files_under(&dir);
    paths.sort();
    paths.truncate(100);
    let bodies = match mode.as_str() {
        "memory" => Bodies::Memory(
            paths
                .iter()
                .map(|p| response("application/dicom", &std::fs::read(p).expect("a file")))
                .collect(),
        ),
        "read" => Bodies::Files(paths),
        _ => panic!("{usage}"),
    };
    let bodies = Arc::new(bodies);
    let ids: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
    let list = Arc::new(response(
        "application/json",
        serde_json::to_string(&ids).unwrap().as_bytes(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    println!("endpoint=http://{}", listener.local_addr().unwrap());
    for stream in listener.incoming().flatten() {
        let (bodies, list) = (bodies.clone(), list.clone());
        std::thread::spawn(move || serve(stream, bodies, list));
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("DIR").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
