//! Where the certificate comes from: PEM files the site provides, or a self-signed one made at
//! first start for the site name and kept in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tracing::info;

/// The certificate and key files the server reads (and watches for changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads a certificate chain and its private key from PEM files.
pub fn load(files: &CertFiles) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", files.cert.display()))?;
    if chain.is_empty() {
        bail!("{}: no certificate in it", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("{}: no PEM private key in it", files.key.display()))?;
    let signer = any_supported_type(&key)
        .with_context(|| format!("{}: unsupported private key", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().with_context(|| {
        format!(
            "{} does not match {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// The self-signed certificate for `site_name` under `dir`, made now if missing.
pub fn self_signed(dir: &Path, site_name: &str) -> anyhow::Result<CertFiles> {
    let files = CertFiles {
        cert: dir.join(format!("{site_name}.crt")),
        key: dir.join(format!("{site_name}.key")),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert_pem, key_pem) = generate(site_name)?;
    write_private(&files.key, key_pem.as_bytes())?;
    std::fs::write(&files.cert, cert_pem)
        .with_context(|| format!("cannot write {}", files.cert.display()))?;
    info!(
        cert = %files.cert.display(),
        site_name,
        "generated a self-signed certificate; clients must be given it to trust (or use a certificate from a CA)"
    );
    Ok(files)
}

/// A self-signed RSA certificate valid for the site name, localhost and the loopback
/// addresses, for ten years. RSA rather than ECDSA: the TLS 1.2 suites of the DICOM BCP 195
/// profiles (what dcmtk and dcm4che offer) are all RSA ones.
fn generate(site_name: &str) -> anyhow::Result<(String, String)> {
    use rsa::pkcs8::EncodePrivateKey;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .context("cannot generate an RSA key")?;
    let der = rsa_key
        .to_pkcs8_der()
        .context("cannot encode the RSA key")?;
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &der.as_bytes().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .context("cannot use the RSA key")?;

    let mut names = vec![site_name.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).context("invalid site name")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, site_name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Orthweb (self-signed)");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    // Client too: it is what we present to DICOM TLS peers that ask for a certificate.
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .self_signed(&key_pair)
        .context("cannot sign the certificate")?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed(dir.path(), "pacs.example.org").unwrap();
        let first = std::fs::read(&files.cert).unwrap();
        let key = load(&files).unwrap();
        assert_eq!(key.cert.len(), 1);
        // A second start keeps the same certificate (clients have been told to trust it).
        let again = self_signed(dir.path(), "pacs.example.org").unwrap();
        assert_eq!(std::fs::read(&again.cert).unwrap(), first);
        let mode = std::fs::metadata(&files.key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
            0,
            "the key is private"
        );
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let a = self_signed(one.path(), "a.example").unwrap();
        let b = self_signed(two.path(), "b.example").unwrap();
        let mixed = CertFiles {
            cert: a.cert,
            key: b.key,
        };
        let error = load(&mixed).unwrap_err();
        assert!(format!("{error:#}").contains("does not match"), "{error:#}");
    }
}
