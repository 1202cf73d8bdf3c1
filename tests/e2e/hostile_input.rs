//! Property tests on everything that parses user input: Certificate specs, DNS names,
//! durations, Ingress annotations, EAB keys, PEM and keys read back from Secrets. Bad
//! values must give an error (which becomes a `Ready=False` reason), never a panic.

use std::collections::BTreeMap;

use caas_operator::api::certificate::{CertificateSpec, IssuerRef, PrivateKeySpec};
use caas_operator::controllers::ingress;
use caas_operator::decide::{self, renewal};
use caas_operator::{acme, pki};
use k8s_openapi::api::networking::v1::Ingress;
use proptest::prelude::*;

fn spec(
    names: Vec<String>,
    secret: String,
    cn: Option<String>,
    duration: Option<String>,
    renew: Option<String>,
    pct: Option<u8>,
    size: Option<u32>,
) -> CertificateSpec {
    CertificateSpec {
        secret_name: secret,
        issuer_ref: IssuerRef {
            name: "ca".into(),
            kind: None,
        },
        dns_names: names,
        common_name: cn,
        duration,
        renew_before: renew,
        renew_before_percentage: pct,
        private_key: size.map(|s| PrivateKeySpec {
            size: Some(s),
            ..Default::default()
        }),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn certificate_validation_never_panics(
        names in proptest::collection::vec("\\PC{0,80}", 0..4),
        secret in "\\PC{0,40}",
        cn in proptest::option::of("\\PC{0,80}"),
        duration in proptest::option::of("\\PC{0,20}"),
        renew in proptest::option::of("[0-9hmsd .]{0,12}"),
        pct in proptest::option::of(any::<u8>()),
        size in proptest::option::of(any::<u32>()),
    ) {
        let _ = decide::validate(&spec(names, secret, cn, duration, renew, pct, size), "issuer");
    }

    #[test]
    fn well_formed_names_are_accepted_and_normalized(
        labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", 2..5),
        wildcard in any::<bool>(),
    ) {
        let name = format!("{}{}", if wildcard { "*." } else { "" }, labels.join("."));
        let request = decide::validate(&spec(vec![name.clone()], "tls".into(), None, None, None, None, None), "i");
        prop_assert!(request.is_ok(), "{name}: {:?}", request.err());
        prop_assert_eq!(request.unwrap().dns_names, vec![name.to_ascii_lowercase()]);
    }

    #[test]
    fn names_with_bad_characters_are_refused(prefix in "[a-z]{1,10}", bad in "[_ !@#$%^&()+=,/\\\\]", suffix in "[a-z]{1,10}") {
        let name = format!("{prefix}{bad}{suffix}.example");
        prop_assert!(decide::validate_dns_name(&name).is_err());
    }

    #[test]
    fn durations_never_panic(text in "\\PC{0,30}") {
        if let Ok(d) = renewal::parse_duration(&text) {
            prop_assert!(d.is_positive());
        }
    }

    #[test]
    fn ingress_annotations_never_panic(
        ann in proptest::collection::btree_map("caas\\.dev/(issuer|cluster-issuer|common-name|duration|renew-before|private-key-algorithm|private-key-size)", "\\PC{0,30}", 0..6),
        hosts in proptest::collection::vec("\\PC{0,30}", 0..3),
        secret in proptest::option::of("\\PC{0,20}"),
    ) {
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "x", "namespace": "ns", "annotations": ann },
            "spec": { "tls": [{ "hosts": hosts, "secretName": secret }] }
        })).unwrap();
        let _ = ingress::desired(&ingress);
    }

    #[test]
    fn secret_contents_never_panic(text in "\\PC{0,600}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = pki::parse_chain(&text);
        let _ = pki::load_key(&text);
        let _ = pki::public_key_spki(&text);
        let _ = acme::decode_eab_hmac(&bytes);
        let _ = acme::decode_eab_hmac(text.as_bytes());
        let pem = format!("-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n");
        prop_assert!(pki::parse_chain(&pem).is_err() || !text.is_empty());
        let key = format!("-----BEGIN PRIVATE KEY-----\n{text}\n-----END PRIVATE KEY-----\n");
        let _ = pki::load_key(&key);
        let settings = pki::KeySettings::from_spec(None).unwrap();
        prop_assert!(!settings.matches(&key) || !text.is_empty());
    }
}

#[test]
fn overlong_and_misplaced_wildcards_are_refused_with_reasons() {
    let long_label = format!("{}.example", "a".repeat(64));
    assert!(
        decide::validate_dns_name(&long_label)
            .unwrap_err()
            .contains("63")
    );
    let long_name = vec!["abcdefghi"; 30].join(".");
    assert!(
        decide::validate_dns_name(&long_name)
            .unwrap_err()
            .contains("253")
    );
    assert!(
        decide::validate_dns_name("a.*.example")
            .unwrap_err()
            .contains("wildcard")
    );
    assert!(
        decide::validate_dns_name("*example.com")
            .unwrap_err()
            .contains("wildcard")
    );
    assert!(
        decide::validate_dns_name("bücher.example")
            .unwrap_err()
            .contains("xn--")
    );
    assert!(decide::validate_dns_name("xn--bcher-kva.example").is_ok());
    let _ = BTreeMap::<String, String>::new();
}
