//! JWS pieces signed with `ring`: the ACME account key (ES256) and the External Account
//! Binding MAC (HS256, HS384, HS512), for the requests in [`super::direct`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::{AcmeError, pem_encode};

/// An ACME account key: ECDSA P-256 (what instant-acme signs with), kept as PKCS#8.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl AccountKey {
    /// A new random key.
    pub fn generate() -> Result<AccountKey, AcmeError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| AcmeError::Problem("cannot generate an account key".into()))?;
        Self::from_der(pkcs8.as_ref().to_vec())
    }

    /// The key in an account key Secret's `tls.key` (PKCS#8 PEM).
    pub fn from_pem(pem: &str) -> Result<AccountKey, AcmeError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            AcmeError::InvalidSpec(
                "the account key Secret's tls.key is not a PKCS#8 PEM private key".into(),
            )
        })?;
        Self::from_der(der.secret_pkcs8_der().to_vec())
    }

    fn from_der(pkcs8: Vec<u8>) -> Result<AccountKey, AcmeError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| {
                AcmeError::InvalidSpec(
                    "the account key Secret's tls.key is not an ECDSA P-256 key".into(),
                )
            })?;
        Ok(AccountKey { pair, pkcs8, rng })
    }

    /// PKCS#8 PEM, for the account key Secret.
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The PKCS#8 DER, for instant-acme.
    pub fn der(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.pkcs8.clone())
    }

    /// The public key as a JWK (RFC 7518 section 6.2; members in lexical order, as the
    /// thumbprint of RFC 7638 needs).
    pub(crate) fn jwk(&self) -> Value {
        // An uncompressed point: 0x04, then x and y (32 bytes each).
        let point = self.pair.public_key().as_ref();
        json!({
            "crv": "P-256",
            "kty": "EC",
            "x": B64.encode(&point[1..33]),
            "y": B64.encode(&point[33..65]),
        })
    }

    /// A flattened JWS of `payload` (`None`: POST-as-GET) under `protected`.
    pub(crate) fn sign(
        &self,
        protected: &Value,
        payload: Option<&Value>,
    ) -> Result<Value, AcmeError> {
        let protected = B64.encode(protected.to_string());
        let payload = payload
            .map(|p| B64.encode(p.to_string()))
            .unwrap_or_default();
        let signature = self
            .pair
            .sign(&self.rng, format!("{protected}.{payload}").as_bytes())
            .map_err(|_| AcmeError::Problem("cannot sign with the account key".into()))?;
        Ok(json!({
            "protected": protected,
            "payload": payload,
            "signature": B64.encode(signature.as_ref()),
        }))
    }
}

/// The MAC algorithm of an External Account Binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

impl MacAlgorithm {
    /// The issuer's `keyAlgorithm` (`HS256` when unset).
    pub fn parse(name: Option<&str>) -> Result<MacAlgorithm, String> {
        match name.map(str::trim).unwrap_or("HS256") {
            "" | "HS256" => Ok(MacAlgorithm::Hs256),
            "HS384" => Ok(MacAlgorithm::Hs384),
            "HS512" => Ok(MacAlgorithm::Hs512),
            other => Err(format!(
                "externalAccountBinding.keyAlgorithm {other:?} is not HS256, HS384 or HS512"
            )),
        }
    }

    /// The shortest key RFC 7518 section 3.2 allows: the hash's output size.
    pub fn min_key_len(self) -> usize {
        match self {
            MacAlgorithm::Hs256 => 32,
            MacAlgorithm::Hs384 => 48,
            MacAlgorithm::Hs512 => 64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MacAlgorithm::Hs256 => "HS256",
            MacAlgorithm::Hs384 => "HS384",
            MacAlgorithm::Hs512 => "HS512",
        }
    }

    fn ring(self) -> ring::hmac::Algorithm {
        match self {
            MacAlgorithm::Hs256 => ring::hmac::HMAC_SHA256,
            MacAlgorithm::Hs384 => ring::hmac::HMAC_SHA384,
            MacAlgorithm::Hs512 => ring::hmac::HMAC_SHA512,
        }
    }
}

/// EAB settings resolved from the issuer spec and its Secret.
pub struct Eab {
    pub key_id: String,
    pub hmac: Vec<u8>,
    pub algorithm: MacAlgorithm,
}

impl Eab {
    /// The binding JWS (RFC 8555 section 7.3.4): the account key's JWK, MACed with the
    /// CA's key, for the newAccount URL.
    pub(crate) fn binding(&self, jwk: &Value, url: &str) -> Value {
        let protected = B64.encode(
            json!({ "alg": self.algorithm.name(), "kid": self.key_id, "url": url }).to_string(),
        );
        let payload = B64.encode(jwk.to_string());
        let key = ring::hmac::Key::new(self.algorithm.ring(), &self.hmac);
        let tag = ring::hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
        json!({ "protected": protected, "payload": payload, "signature": B64.encode(tag.as_ref()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_algorithms() {
        assert_eq!(MacAlgorithm::parse(None), Ok(MacAlgorithm::Hs256));
        assert_eq!(MacAlgorithm::parse(Some("HS512")), Ok(MacAlgorithm::Hs512));
        assert!(MacAlgorithm::parse(Some("RS256")).is_err());
    }

    #[test]
    fn binding_verifies_with_each_algorithm() {
        let key = AccountKey::generate().unwrap();
        for algorithm in [
            MacAlgorithm::Hs256,
            MacAlgorithm::Hs384,
            MacAlgorithm::Hs512,
        ] {
            let eab = Eab {
                key_id: "kid-1".into(),
                hmac: vec![7; 32],
                algorithm,
            };
            let jws = eab.binding(&key.jwk(), "https://ca/new-acct");
            let signing_input = format!(
                "{}.{}",
                jws["protected"].as_str().unwrap(),
                jws["payload"].as_str().unwrap()
            );
            let tag = B64.decode(jws["signature"].as_str().unwrap()).unwrap();
            let mac = ring::hmac::Key::new(algorithm.ring(), &[7; 32]);
            ring::hmac::verify(&mac, signing_input.as_bytes(), &tag).unwrap();
            let protected: Value =
                serde_json::from_slice(&B64.decode(jws["protected"].as_str().unwrap()).unwrap())
                    .unwrap();
            assert_eq!(protected["alg"], algorithm.name());
        }
    }

    #[test]
    fn key_pem_roundtrip_and_es256_signature() {
        let key = AccountKey::generate().unwrap();
        let again = AccountKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(key.jwk(), again.jwk());
        let jws = key
            .sign(&json!({"alg": "ES256"}), Some(&json!({"a": 1})))
            .unwrap();
        let input = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let sig = B64.decode(jws["signature"].as_str().unwrap()).unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            key.pair.public_key().as_ref(),
        )
        .verify(input.as_bytes(), &sig)
        .unwrap();
    }
}
