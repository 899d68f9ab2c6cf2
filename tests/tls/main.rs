//! TLS on both listeners, with real clients: curl and openssl for HTTPS, dcmtk's echoscu and
//! storescu (`+tls`/`+tla`) for DICOM TLS. Certificates: the server's self-signed one, and
//! site-provided ones made here with rcgen (a CA, client certificates, a rogue CA).
//!
//! - [`https`]: the self-signed certificate, HSTS and security headers, TLS 1.0/1.1 refused,
//!   plain HTTP on the TLS port, the redirect listener, reloading certificate files;
//! - [`dicom`]: C-ECHO and C-STORE over TLS under each BCP 195 profile, mutual TLS, and
//!   clients on the wrong port;
//! - [`postgres`]: the index over TLS with `sslmode=verify-full`.

#[path = "../common/mod.rs"]
mod common;

mod certs;
mod dicom;
mod https;
mod postgres;
