//! The fake CA's signing: a leaf from a CSR's key and names, signed by the test CA.

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber, SignatureAlgorithm,
};
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use super::{Ca, Inner, Issued};

fn serial_bytes(n: u64) -> Vec<u8> {
    // A positive 9-byte serial: a leading 0x01, then the counter.
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes
}

/// A subject public key taken from a CSR, for rcgen to sign.
pub(super) struct CsrKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// The public key and the names a CSR asks for.
pub(super) fn read_csr(der: &[u8]) -> Result<(CsrKey, Vec<SanType>), String> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| e.to_string())?;
    let spki = &csr.certification_request_info.subject_pki;
    let raw = spki.subject_public_key.data.to_vec();
    // The algorithm whose SubjectPublicKeyInfo encoding is the CSR's, byte for byte.
    let alg = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ]
    .into_iter()
    .find(|alg| {
        let key = CsrKey {
            raw: raw.clone(),
            alg,
        };
        key.subject_public_key_info() == spki.raw
    })
    .ok_or("the CSR's key algorithm is not one the fake CA signs")?;
    let mut names = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push(SanType::DnsName(
                        n.to_string().try_into().map_err(|e| format!("{e}"))?,
                    )),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                            16 => <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                            _ => None,
                        };
                        names.push(SanType::IpAddress(ip.ok_or("a bad IP SAN")?));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok((CsrKey { raw, alg }, names))
}

fn offset(t: jiff::Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).expect("a time in range")
}

pub(super) fn san_value(san: &SanType) -> Value {
    match san {
        SanType::DnsName(n) => json!({"type": "dns", "value": n.as_str()}),
        SanType::IpAddress(ip) => json!({"type": "ip", "value": ip.to_string()}),
        _ => Value::Null,
    }
}

impl Ca {
    /// Signs a leaf for `key` and `names`, valid from `not_before` to `not_after`.
    pub(super) fn sign(
        &self,
        inner: &mut Inner,
        key: &impl PublicKeyData,
        names: Vec<SanType>,
        not_before: jiff::Timestamp,
        not_after: jiff::Timestamp,
    ) -> Result<usize, String> {
        // X.509 times are whole seconds.
        let whole =
            |t: jiff::Timestamp| jiff::Timestamp::from_second(t.as_second()).expect("in range");
        let (not_before, not_after) = (whole(not_before), whole(not_after));
        inner.serials += 1;
        let serial = serial_bytes(inner.serials);
        let mut params = CertificateParams::default();
        params.subject_alt_names = names;
        params.distinguished_name = DistinguishedName::new();
        params.not_before = offset(not_before);
        params.not_after = offset(not_after);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params
            .signed_by(key, &self.issuer)
            .map_err(|e| e.to_string())?;
        inner.certs.push(Issued {
            chain: format!("{}{}", leaf.pem(), self.ca_pem),
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            not_before,
            not_after,
        });
        Ok(inner.certs.len() - 1)
    }
}
