//! `multipart/related` bodies (RFC 2387) as DICOMweb writes them: a boundary of our own, each
//! part with its content type, streamed part by part.

use axum::body::Bytes;

/// A fresh boundary: random, so that no part's bytes can contain it by chance.
pub fn boundary() -> String {
    format!("orthweb-{}", uuid::Uuid::new_v4().simple())
}

/// The `Content-Type` of a multipart/related body of parts of `part_type`.
pub fn content_type(boundary: &str, part_type: &str, transfer_syntax: Option<&str>) -> String {
    let mut value = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    if let Some(ts) = transfer_syntax {
        value.push_str("; transfer-syntax=");
        value.push_str(ts);
    }
    value
}

/// What comes before part number `n` (from 0): the delimiter and the part's headers.
pub fn part_head(boundary: &str, n: usize, part_type: &str, location: Option<&str>) -> Bytes {
    let mut head = String::with_capacity(128);
    if n > 0 {
        head.push_str("\r\n");
    }
    head.push_str("--");
    head.push_str(boundary);
    head.push_str("\r\nContent-Type: ");
    head.push_str(part_type);
    if let Some(location) = location {
        head.push_str("\r\nContent-Location: ");
        head.push_str(location);
    }
    head.push_str("\r\n\r\n");
    Bytes::from(head)
}

/// The close delimiter, after the last part.
pub fn end(boundary: &str) -> Bytes {
    Bytes::from(format!("\r\n--{boundary}--\r\n"))
}
