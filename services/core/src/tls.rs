//! TLS client settings shared by every outgoing TLS connection we make ourselves (IRC over TLS):
//! server certificates checked against the system's roots — or the PEM file `SSL_CERT_FILE`
//! names, as OpenSSL and rustls-native-certs read it — with ring as the crypto provider.
//! (`rediss://` goes through the redis crate, which reads the same roots; the broker's TLS is
//! librdkafka's own, `ssl.ca.location` in `DROPLINE_KAFKA_CONFIG`.)

use std::sync::Arc;

/// No trusted root could be loaded.
#[derive(Debug, thiserror::Error)]
#[error("no TLS root certificates: {0} (install ca-certificates, or set SSL_CERT_FILE to a PEM file)")]
pub struct NoRoots(String);

/// A client configuration trusting the system's roots (or `SSL_CERT_FILE`'s).
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, NoRoots> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(NoRoots(why));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NoRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
