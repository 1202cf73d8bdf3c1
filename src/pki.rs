//! Keys, CSRs, certificate chains, and the contents of the TLS Secret.
//!
//! Pure functions over bytes: nothing here talks to the API server or the CA.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::api::certificate::{KeyAlgorithm, KeyEncoding, OutputFormatType, PrivateKeySpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkiError {
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("cannot build the CSR: {0}")]
    Csr(String),
}

/// The key settings a Certificate asks for, with defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySettings {
    pub algorithm: KeyAlgorithm,
    pub size: u32,
    pub encoding: KeyEncoding,
}

impl KeySettings {
    /// Resolves defaults and checks the combination.
    pub fn from_spec(spec: Option<&PrivateKeySpec>) -> Result<KeySettings, String> {
        let algorithm = spec.and_then(|s| s.algorithm).unwrap_or_default();
        let encoding = spec.and_then(|s| s.encoding).unwrap_or_default();
        let size = spec.and_then(|s| s.size);
        let size = match (algorithm, size) {
            (KeyAlgorithm::Ecdsa, None) => 256,
            (KeyAlgorithm::Ecdsa, Some(s @ (256 | 384))) => s,
            (KeyAlgorithm::Ecdsa, Some(s)) => {
                return Err(format!(
                    "privateKey.size {s} is not valid for ECDSA: use 256 or 384"
                ));
            }
            (KeyAlgorithm::Rsa, None) => 2048,
            (KeyAlgorithm::Rsa, Some(s @ (2048 | 3072 | 4096))) => s,
            (KeyAlgorithm::Rsa, Some(s)) => {
                return Err(format!(
                    "privateKey.size {s} is not valid for RSA: use 2048, 3072 or 4096"
                ));
            }
            (KeyAlgorithm::Ed25519, None | Some(256)) => 256,
            (KeyAlgorithm::Ed25519, Some(s)) => {
                return Err(format!(
                    "privateKey.size {s} is not valid for Ed25519: leave it unset"
                ));
            }
        };
        if encoding == KeyEncoding::Pkcs1 && algorithm != KeyAlgorithm::Rsa {
            return Err(
                "privateKey.encoding PKCS1 is RSA's format: use PKCS8 (default) for ECDSA and Ed25519"
                    .into(),
            );
        }
        Ok(KeySettings {
            algorithm,
            size,
            encoding,
        })
    }

    fn rcgen_algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match (self.algorithm, self.size) {
            (KeyAlgorithm::Ecdsa, 384) => &rcgen::PKCS_ECDSA_P384_SHA384,
            (KeyAlgorithm::Ecdsa, _) => &rcgen::PKCS_ECDSA_P256_SHA256,
            (KeyAlgorithm::Ed25519, _) => &rcgen::PKCS_ED25519,
            (KeyAlgorithm::Rsa, _) => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Whether an existing key (PEM) has these settings (algorithm and size).
    pub fn matches(&self, key_pem: &str) -> bool {
        let Ok(key) = load_key(key_pem) else {
            return false;
        };
        if key.algorithm() != self.rcgen_algorithm() {
            return false;
        }
        self.algorithm != KeyAlgorithm::Rsa || rsa_bits(key_pem) == Some(self.size)
    }
}

/// The size in bits of an RSA key (PEM, PKCS#1 or PKCS#8).
fn rsa_bits(key_pem: &str) -> Option<u32> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(key_pem))
        .ok()?;
    u32::try_from(key.size() * 8).ok()
}

/// Loads a private key from PEM: PKCS#8 (any algorithm) or PKCS#1 (RSA).
pub fn load_key(key_pem: &str) -> Result<KeyPair, PkiError> {
    if key_pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(key_pem)
            .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
        return KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| PkiError::InvalidKey(e.to_string()));
    }
    KeyPair::from_pem(key_pem).map_err(|e| PkiError::InvalidKey(e.to_string()))
}

/// A private key as PKCS#8 PEM (what Azure Key Vault takes): PKCS#1 RSA keys converted,
/// PKCS#8 ones as they are.
pub fn pkcs8_pem(key_pem: &str) -> Result<String, PkiError> {
    if !key_pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return Ok(key_pem.to_string());
    }
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(key_pem)
        .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let pem =
        (key.to_pkcs8_pem(LineEnding::LF)).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    Ok(pem.to_string())
}

/// A new private key as PEM, in the requested encoding (PKCS#8, or PKCS#1 for RSA).
///
/// RSA keys come from the `rsa` crate (ring signs with RSA keys but cannot make them).
pub fn generate_key(settings: &KeySettings) -> Result<String, PkiError> {
    if settings.algorithm == KeyAlgorithm::Rsa {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let bits = usize::try_from(settings.size).expect("small");
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
            .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
        let pem = match settings.encoding {
            KeyEncoding::Pkcs1 => key
                .to_pkcs1_pem(LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string()),
            KeyEncoding::Pkcs8 => key
                .to_pkcs8_pem(LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string()),
        }
        .map_err(PkiError::UnsupportedKey)?;
        return Ok(pem);
    }
    let key = KeyPair::generate_for(settings.rcgen_algorithm())
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    Ok(key.serialize_pem())
}

/// A CSR (DER) for the names, signed with the key (PEM).
pub fn csr_der(
    key_pem: &str,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    common_name: Option<&str>,
) -> Result<Vec<u8>, PkiError> {
    let key = load_key(key_pem)?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(|e| PkiError::Csr(e.to_string()))?;
    params
        .subject_alt_names
        .extend(ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// What matters about an issued certificate (the leaf of a chain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// The leaf's SubjectPublicKeyInfo, DER.
    pub public_key_spki: Vec<u8>,
    /// Number of certificates in the chain. Not for decisions: the watch cache keeps
    /// only the leaf of managed Secrets (`shared::cached_secret`), so it is 1 there.
    pub chain_len: usize,
}

/// The PEM blocks of type CERTIFICATE in `pem`, as DER.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::InvalidCertificate(format!("bad PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    Ok(out)
}

/// Parses a PEM chain (leaf first).
pub fn parse_chain(pem: &str) -> Result<CertInfo, PkiError> {
    let ders = pem_certificates(pem)?;
    let leaf_der = ders
        .first()
        .ok_or_else(|| PkiError::InvalidCertificate("no CERTIFICATE block".into()))?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let ts = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp())
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))
    };
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns_names.push(n.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap())),
                    16 => ip_addresses.push(IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: ts(leaf.validity().not_before)?,
        not_after: ts(leaf.validity().not_after)?,
        dns_names,
        ip_addresses,
        serial: leaf.raw_serial_as_string().replace(':', ""),
        public_key_spki: leaf.public_key().raw.to_vec(),
        chain_len: ders.len(),
    })
}

/// Of the chains a CA offers (its default first), the one to use for `preferred`
/// (cert-manager's rule): the first whose top-most certificate is issued by the Common
/// Name `preferred`; else the default. Returns the chain's index.
pub fn preferred_chain(chains: &[String], preferred: &str) -> usize {
    let preferred = preferred.trim();
    let matches = |pem: &String| -> bool {
        let Some(top) = pem_certificates(pem).ok().and_then(|d| d.last().cloned()) else {
            return false;
        };
        let Ok((_, cert)) = X509Certificate::from_der(&top) else {
            return false;
        };
        let cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name()
                .filter_map(|a| a.as_str().ok())
                .any(|n| n == preferred)
        };
        cn(cert.issuer())
    };
    chains.iter().position(matches).unwrap_or(0)
}

/// The SubjectPublicKeyInfo (DER) of a private key (PEM).
pub fn public_key_spki(key_pem: &str) -> Result<Vec<u8>, PkiError> {
    use rcgen::PublicKeyData;
    let key = load_key(key_pem)?;
    Ok(key.subject_public_key_info())
}

/// The key algorithm of a SubjectPublicKeyInfo (DER): RSA or Ed25519 by their OIDs,
/// ECDSA otherwise.
pub fn spki_algorithm(spki: &[u8]) -> KeyAlgorithm {
    use x509_parser::oid_registry::{OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519};
    let Ok((_, info)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) else {
        return KeyAlgorithm::Ecdsa;
    };
    match &info.algorithm.algorithm {
        oid if *oid == OID_PKCS1_RSAENCRYPTION => KeyAlgorithm::Rsa,
        oid if *oid == OID_SIG_ED25519 => KeyAlgorithm::Ed25519,
        _ => KeyAlgorithm::Ecdsa,
    }
}

/// `sha256:` and the hex SHA-256 of a SubjectPublicKeyInfo (DER): names a key pair
/// without showing anything secret.
pub fn spki_fingerprint(spki: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The fingerprint ([`spki_fingerprint`]) of a private key's public half.
pub fn key_fingerprint(key_pem: &str) -> Result<String, PkiError> {
    public_key_spki(key_pem).map(|spki| spki_fingerprint(&spki))
}

/// Whether the private key (PEM) belongs to the chain's leaf.
pub fn key_matches(key_pem: &str, cert: &CertInfo) -> bool {
    public_key_spki(key_pem).is_ok_and(|spki| spki == cert.public_key_spki)
}

/// The `data` of the TLS Secret: `tls.crt` (leaf + chain), `tls.key`, and the extra
/// formats asked for.
pub fn secret_data(
    chain_pem: &str,
    key_pem: &str,
    formats: &[OutputFormatType],
) -> Result<BTreeMap<String, Vec<u8>>, PkiError> {
    let mut data = BTreeMap::new();
    data.insert("tls.crt".to_string(), chain_pem.as_bytes().to_vec());
    data.insert("tls.key".to_string(), key_pem.as_bytes().to_vec());
    for format in formats {
        match format {
            OutputFormatType::CombinedPem => {
                let mut combined = key_pem.trim_end().to_string();
                combined.push('\n');
                combined.push_str(chain_pem);
                data.insert("tls-combined.pem".to_string(), combined.into_bytes());
            }
            OutputFormatType::Der => {
                let key = load_key(key_pem)?;
                data.insert("key.der".to_string(), key.serialize_der());
            }
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str], key_pem: &str) -> String {
        let key = KeyPair::from_pem(key_pem).unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn key_settings_defaults_and_errors() {
        let s = KeySettings::from_spec(None).unwrap();
        assert_eq!(
            (s.algorithm, s.size, s.encoding),
            (KeyAlgorithm::Ecdsa, 256, KeyEncoding::Pkcs8)
        );
        let spec = PrivateKeySpec {
            size: Some(521),
            ..Default::default()
        };
        assert!(
            KeySettings::from_spec(Some(&spec))
                .unwrap_err()
                .contains("256 or 384")
        );
        let spec = PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Ed25519),
            ..Default::default()
        };
        assert_eq!(
            KeySettings::from_spec(Some(&spec)).unwrap().algorithm,
            KeyAlgorithm::Ed25519
        );
    }

    #[test]
    fn generated_keys_match_their_settings_and_certificates() {
        for size in [256, 384] {
            let settings = KeySettings {
                algorithm: KeyAlgorithm::Ecdsa,
                size,
                encoding: KeyEncoding::Pkcs8,
            };
            let key = generate_key(&settings).unwrap();
            assert!(settings.matches(&key));
            let other = KeySettings {
                size: if size == 256 { 384 } else { 256 },
                ..settings
            };
            assert!(!other.matches(&key));
            let cert = parse_chain(&self_signed(&["a.example", "b.example"], &key)).unwrap();
            assert_eq!(cert.dns_names, vec!["a.example", "b.example"]);
            assert!(key_matches(&key, &cert));
            let stranger = generate_key(&settings).unwrap();
            assert!(!key_matches(&stranger, &cert));
        }
    }

    #[test]
    fn a_public_key_names_its_algorithm() {
        for algorithm in [KeyAlgorithm::Ecdsa, KeyAlgorithm::Ed25519] {
            let settings = KeySettings {
                algorithm,
                size: if algorithm == KeyAlgorithm::Ecdsa {
                    256
                } else {
                    0
                },
                encoding: KeyEncoding::Pkcs8,
            };
            let key = generate_key(&settings).unwrap();
            assert_eq!(spki_algorithm(&public_key_spki(&key).unwrap()), algorithm);
        }
    }

    #[test]
    fn rsa_keys_in_both_encodings() {
        for (size, encoding, label) in [
            (2048, KeyEncoding::Pkcs1, "RSA PRIVATE KEY"),
            (2048, KeyEncoding::Pkcs8, "PRIVATE KEY"),
        ] {
            let settings = KeySettings {
                algorithm: KeyAlgorithm::Rsa,
                size,
                encoding,
            };
            let key = generate_key(&settings).unwrap();
            assert!(
                key.starts_with(&format!("-----BEGIN {label}-----")),
                "{key}"
            );
            assert!(settings.matches(&key));
            assert!(
                !KeySettings {
                    size: 3072,
                    ..settings
                }
                .matches(&key)
            );
            let csr = csr_der(&key, &["r.example".into()], &[], None).unwrap();
            assert!(!csr.is_empty());
            let data = secret_data("x", &key, &[OutputFormatType::Der]).unwrap();
            assert!(!data["key.der"].is_empty());
            assert_eq!(
                spki_algorithm(&public_key_spki(&key).unwrap()),
                KeyAlgorithm::Rsa
            );
            // Key Vault takes PKCS#8 only: the same key either way.
            let pkcs8 = pkcs8_pem(&key).unwrap();
            assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"), "{pkcs8}");
            assert_eq!(
                public_key_spki(&pkcs8).unwrap(),
                public_key_spki(&key).unwrap()
            );
        }
        let ecdsa_pkcs1 = PrivateKeySpec {
            encoding: Some(KeyEncoding::Pkcs1),
            ..Default::default()
        };
        assert!(
            KeySettings::from_spec(Some(&ecdsa_pkcs1))
                .unwrap_err()
                .contains("RSA's format")
        );
    }

    #[test]
    fn csr_carries_names_and_no_default_subject() {
        let key = generate_key(&KeySettings::from_spec(None).unwrap()).unwrap();
        let der = csr_der(
            &key,
            &["x.example".into()],
            &["10.0.0.1".parse().unwrap()],
            None,
        )
        .unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        assert_eq!(csr.certification_request_info.subject.to_string(), "");
    }

    #[test]
    fn secret_data_formats() {
        let key = generate_key(&KeySettings::from_spec(None).unwrap()).unwrap();
        let chain = self_signed(&["a.example"], &key);
        let data = secret_data(
            &chain,
            &key,
            &[OutputFormatType::CombinedPem, OutputFormatType::Der],
        )
        .unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            vec!["key.der", "tls-combined.pem", "tls.crt", "tls.key"]
        );
        let combined = String::from_utf8(data["tls-combined.pem"].clone()).unwrap();
        assert!(combined.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(combined.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_chain("not pem").is_err());
        assert!(
            parse_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(!key_matches(
            "garbage",
            &parse_chain(&self_signed(
                &["a"],
                &generate_key(&KeySettings::from_spec(None).unwrap()).unwrap()
            ))
            .unwrap()
        ));
    }
}
