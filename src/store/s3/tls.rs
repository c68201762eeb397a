//! TLS and the HTTP agent: the trust roots (webpki's, or `AWS_CA_BUNDLE` added to the
//! system store found through `SSL_CERT_FILE` or the distribution's bundle) and the `ureq`
//! agent built on them with the configured timeouts and a resolver that keeps what it
//! looked up. It sends no request.

use super::resolve::KeptAddresses;
use crate::store::StoreError;
use std::time::Duration;

/// Where Debian, Alpine, Fedora/RHEL and SUSE keep the system's trust store.
const SYSTEM_TRUST_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The TLS settings: webpki (Mozilla) roots; with `AWS_CA_BUNDLE`, its certificates *added*
/// to the system's trust store (`SSL_CERT_FILE` or the distribution's bundle), so a private
/// CA works without losing the public ones. Verification is off only when configured.
pub(super) fn tls_config(skip_verify: bool) -> Result<ureq::tls::TlsConfig, StoreError> {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let mut b = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(skip_verify);
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
        let name = format!("AWS_CA_BUNDLE={}", path.to_string_lossy());
        let pem = std::fs::read(&path)
            .map_err(|e| StoreError::Permanent(format!("{name}: cannot read it: {e}")))?;
        let system_path = std::env::var_os("SSL_CERT_FILE")
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(SYSTEM_TRUST_FILES.iter().map(std::path::PathBuf::from))
            .find(|p| p.is_file());
        let system = system_path.as_ref().and_then(|p| std::fs::read(p).ok());
        if system.is_none() {
            crate::base::log::notice(&format!(
                "{name}: no system trust store found to add it to; trusting only the bundle"
            ));
        }
        let certs = trust_roots(&name, &pem, system.as_deref())?;
        b = b.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(b.build())
}

/// The certificates of `bundle` (which must hold at least one) followed by those of the
/// system store not already in it; the system store's unparsable entries are skipped.
fn trust_roots(
    name: &str,
    bundle: &[u8],
    system: Option<&[u8]>,
) -> Result<Vec<ureq::tls::Certificate<'static>>, StoreError> {
    use ureq::tls::PemItem;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(bundle) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c.to_owned()),
            Ok(_) => {}
            Err(e) => {
                return Err(StoreError::Permanent(format!(
                    "{name}: not a PEM bundle: {e}"
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(StoreError::Permanent(format!(
            "{name}: holds no certificates"
        )));
    }
    for item in ureq::tls::parse_pem(system.unwrap_or_default()) {
        if let Ok(PemItem::Certificate(c)) = item {
            if !certs.iter().any(|have| have.der() == c.der()) {
                certs.push(c.to_owned());
            }
        }
    }
    Ok(certs)
}

/// An agent and the resolver it looks the endpoint up with (see `super::resolve`).
pub(super) fn new_agent(
    tls: &ureq::tls::TlsConfig,
    connect: Duration,
    read: Duration,
) -> (ureq::Agent, KeptAddresses) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect))
        .timeout_send_request(Some(read))
        .timeout_recv_response(Some(read))
        // A body that stops moving for the read timeout fails (its total has a deadline too).
        .timeout_per_read(Some(read))
        .max_redirects(0)
        .user_agent(concat!("libreplica/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.clone())
        .build();
    let names = KeptAddresses::default();
    let connector = ureq::unversioned::transport::DefaultConnector::default();
    (
        ureq::Agent::with_parts(config, connector, names.clone()),
        names,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_adds_to_the_system_roots() {
        let system = std::fs::read(SYSTEM_TRUST_FILES[0]).expect("Debian's ca-certificates");
        let text = String::from_utf8_lossy(&system);
        let end = "-----END CERTIFICATE-----";
        let blocks: Vec<&str> = text
            .split_inclusive(end)
            .filter(|b| b.contains(end))
            .collect();
        assert!(blocks.len() > 10, "{} certificates", blocks.len());
        // A private CA (here: one public root standing in for it) plus the system store.
        let bundle = blocks[0].as_bytes();
        let rest: String = blocks[1..].concat();
        let all = trust_roots("bundle", bundle, Some(rest.as_bytes())).unwrap();
        assert_eq!(all.len(), blocks.len());
        // The bundle's own certificate is not counted twice when the system has it too.
        let again = trust_roots("bundle", bundle, Some(&system)).unwrap();
        assert_eq!(again.len(), blocks.len());
        assert_eq!(trust_roots("bundle", bundle, None).unwrap().len(), 1);
        let msg = trust_roots("AWS_CA_BUNDLE=/x", b"no pem here", Some(&system))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("AWS_CA_BUNDLE=/x") && msg.contains("no certificates"),
            "{msg}"
        );
    }
}
