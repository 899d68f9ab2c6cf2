//! Certificates made for the tests, and a rustls client that reports which certificate the
//! server presented.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate and its key, written as PEM files.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pem {
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_file(&self.cert)
            .expect("a PEM certificate")
            .to_vec()
    }
}

/// A certificate authority that signs server and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub pem: Pem,
}

impl Authority {
    pub fn new(dir: &Path, name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let pem = write(dir, name, &cert.pem(), &key.serialize_pem());
        Authority {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names`, for a server (`client` false) or a client.
    pub fn issue(&self, dir: &Path, file_name: &str, names: &[&str], client: bool) -> Pem {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![match client {
            true => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            false => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        write(dir, file_name, &cert.pem(), &key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, cert: &str, key: &str) -> Pem {
    std::fs::create_dir_all(dir).unwrap();
    let pem = Pem {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pem.cert, cert).unwrap();
    std::fs::write(&pem.key, key).unwrap();
    pem
}

/// Connects to `127.0.0.1:port` as `localhost`, trusting `roots`, and returns the DER of the
/// certificate the server presented (or the handshake error).
pub async fn presented(port: u16, roots: &[&Path]) -> Result<Vec<u8>, String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(CertificateDer::from_pem_file(root).unwrap())
            .unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector
        .connect(name, socket)
        .await
        .map_err(|e| e.to_string())?;
    let (_, connection) = stream.get_ref();
    Ok(connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presents a certificate")
        .to_vec())
}
