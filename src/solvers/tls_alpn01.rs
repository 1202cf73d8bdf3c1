//! TLS-ALPN-01 (RFC 8737): the operator's own TLS listener answers `acme-tls/1`
//! handshakes for a name with a self-signed certificate carrying the `acmeIdentifier`
//! extension (the SHA-256 of the key authorization).
//!
//! Like HTTP-01, answers come from the [`ChallengeIndex`] (the watched Certificates'
//! status), so every replica answers. Getting the CA's connection on port 443 of the name to this listener (a
//! LoadBalancer Service, or an SNI-passthrough route) is the cluster's part.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::index::ChallengeIndex;
use super::{Kind, Solver};
use crate::api::ChallengeType;

pub const ALPN: &[u8] = b"acme-tls/1";

/// The challenge certificate for `name` and a key authorization (RFC 8737 section 3).
pub fn challenge_certificate(name: &str, key_authorization: &str) -> Result<CertifiedKey, String> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![match name.parse::<std::net::IpAddr>() {
        Ok(ip) => rcgen::SanType::IpAddress(ip),
        Err(_) => {
            rcgen::SanType::DnsName(name.try_into().map_err(|e: rcgen::Error| e.to_string())?)
        }
    }];
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest.as_ref()));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

/// The IP address a reverse-mapping name stands for: an IP identifier's TLS-ALPN-01
/// handshake names it so (RFC 8738 section 6), e.g. `4.3.2.1.in-addr.arpa` for
/// 1.2.3.4 and 32 nibbles under `ip6.arpa` for IPv6.
pub fn ip_of_reverse_name(sni: &str) -> Option<std::net::IpAddr> {
    let sni = sni.trim_end_matches('.');
    if let Some(v4) = sni.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = v4
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(std::net::IpAddr::from(<[u8; 4]>::try_from(octets).ok()?));
    }
    let v6 = sni.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(std::net::IpAddr::from(bytes))
}

/// Picks the challenge certificate by SNI, for `acme-tls/1` handshakes only.
#[derive(Debug)]
struct Resolver {
    index: Arc<ChallengeIndex>,
    /// The last certificates made, by (name, key authorization): the CA connects
    /// several times (multi-perspective validation).
    cache: Mutex<Vec<(String, String, Arc<CertifiedKey>)>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ALPN));
        if !acme {
            return None;
        }
        let sni = hello.server_name()?.to_ascii_lowercase();
        let name = ip_of_reverse_name(&sni).map_or(sni, |ip| ip.to_string());
        let key_auth = self.index.tls_alpn01(&name)?;
        let mut cache = self.cache.lock().expect("resolver cache");
        if let Some((_, _, ck)) = cache.iter().find(|(n, k, _)| *n == name && *k == key_auth) {
            return Some(ck.clone());
        }
        let ck = Arc::new(challenge_certificate(&name, &key_auth).ok()?);
        cache.push((name, key_auth, ck.clone()));
        if cache.len() > 64 {
            cache.remove(0);
        }
        Some(ck)
    }
}

/// Serves TLS-ALPN-01 answers on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    index: Arc<ChallengeIndex>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            index,
            cache: Mutex::new(Vec::new()),
        }));
    config.alpn_protocols = vec![ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "TLS-ALPN-01 solver listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The handshake is the answer; the validator closes the connection.
                    match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
                        Ok(Ok(_)) => tracing::debug!(%peer, "answered a TLS-ALPN-01 handshake"),
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS-ALPN-01 handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS-ALPN-01 handshake timed out"),
                    }
                });
            }
        }
    }
}

/// TLS-ALPN-01 behind the [`Solver`] trait: the listener answers from the index, so
/// there is nothing to put in place or remove.
pub struct TlsAlpn01;

impl Solver for TlsAlpn01 {
    fn kind(&self) -> Kind {
        Kind(ChallengeType::TlsAlpn01, "tlsAlpn01", |c| {
            c.tls_alpn01.is_some()
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reverse_names_of_ip_identifiers() {
        use super::ip_of_reverse_name;
        assert_eq!(
            ip_of_reverse_name("1.0.0.127.in-addr.arpa"),
            Some("127.0.0.1".parse().unwrap())
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        assert_eq!(ip_of_reverse_name(v6), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(ip_of_reverse_name("example.com"), None);
        assert_eq!(ip_of_reverse_name("1.2.3.in-addr.arpa"), None);
        assert_eq!(ip_of_reverse_name("300.0.0.1.in-addr.arpa"), None);
    }

    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn challenge_certificate_carries_the_critical_acme_identifier() {
        let ck = challenge_certificate("a.example", "token.thumb").unwrap();
        let (_, cert) = X509Certificate::from_der(ck.cert[0].as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        let digest = ring::digest::digest(&ring::digest::SHA256, b"token.thumb");
        // The value is an OCTET STRING (0x04, 0x20) holding the digest.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], digest.as_ref());
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(sans, vec!["DNSName(a.example)"]);
    }
}
