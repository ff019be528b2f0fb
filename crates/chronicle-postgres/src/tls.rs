//! TLS to the server (feature `tls`): rustls with the webpki roots. Used when the URL's
//! `sslmode` is not `disable` (`prefer`, tokio-postgres's default, tries TLS first).

use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) fn connector() -> MakeRustlsConnect {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // The ring provider supports the default versions; fall back to the process default.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth(),
    };
    MakeRustlsConnect::new(config)
}
