//! Validation of a Certificate spec: what it asks for, normalized, or a message naming
//! the field that is wrong.

use std::collections::BTreeSet;
use std::net::IpAddr;

use jiff::SignedDuration;

use super::Request;
use crate::api::certificate::{CertificateSpec, RotationPolicy};
use crate::decide::renewal;
use crate::pki::KeySettings;

/// The issuer's `profile` (`wanted`) against the profiles the CA's directory offers
/// (name, description): `None` when it may be ordered (or none is named), else what to
/// tell the user. A CA refuses an order for a profile it does not offer; this says so
/// before any order, with what the CA offers.
pub fn profile_problem(wanted: Option<&str>, offered: &[(String, String)]) -> Option<String> {
    let wanted = wanted?;
    if offered.iter().any(|(name, _)| name == wanted) {
        return None;
    }
    if offered.is_empty() {
        return Some(format!(
            "profile {wanted:?}: the CA offers no ACME profiles (its directory has no meta.profiles): remove profile from the issuer"
        ));
    }
    let list: Vec<String> = (offered.iter())
        .map(|(name, description)| format!("{name} ({description})"))
        .collect();
    Some(format!(
        "profile {wanted:?} is not offered by the CA; it offers: {}",
        list.join(", ")
    ))
}

/// Checks one DNS name (RFC 1123 labels; a wildcard only as the whole first label).
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a DNS name is empty".into());
    }
    if name.len() > 253 {
        return Err(format!("DNS name {name:?} is longer than 253 characters"));
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.contains('*') {
        return Err(format!(
            "DNS name {name:?}: a wildcard is only allowed as the whole first label (*.example.com)"
        ));
    }
    let labels: Vec<&str> = body.split('.').collect();
    if labels.len() < 2 && name.starts_with("*.") {
        return Err(format!(
            "DNS name {name:?}: a wildcard needs a domain below it"
        ));
    }
    for label in labels {
        if label.is_empty() {
            return Err(format!("DNS name {name:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "DNS name {name:?} has a label longer than 63 characters"
            ));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "DNS name {name:?} has characters other than letters, digits and '-' \
                 (write internationalized names in their xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "DNS name {name:?} has a label starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Validates a spec and resolves its defaults. The error is a message for the user.
pub fn validate(spec: &CertificateSpec, issuer_fingerprint: &str) -> Result<Request, String> {
    validate_refs(spec)?;
    let (dns_names, ip_addresses) = validate_names(spec)?;
    let common_name = validate_common_name(spec, &dns_names, &ip_addresses)?;
    let (duration, renew_before) = validate_durations(spec)?;
    let (key, rotation) = validate_key(spec)?;
    let profile = (spec.profile.as_deref().map(str::trim))
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    // An order placed for another profile is abandoned (unchanged hash without one).
    let with_profile;
    let issuer_fingerprint = match &profile {
        Some(p) => {
            with_profile = format!("{issuer_fingerprint}|profile={p}");
            with_profile.as_str()
        }
        None => issuer_fingerprint,
    };
    let hash = request_hash(
        &dns_names,
        &ip_addresses,
        common_name.as_deref(),
        &key,
        rotation,
        issuer_fingerprint,
    );
    Ok(Request {
        dns_names,
        ip_addresses,
        common_name,
        key,
        rotation,
        duration,
        renew_before,
        renew_before_percentage: spec.renew_before_percentage,
        profile,
        hash,
        renew_request: None,
        compromised_key: None,
    })
}

/// Checks `secretName` and `issuerRef`.
fn validate_refs(spec: &CertificateSpec) -> Result<(), String> {
    if !valid_secret_name(&spec.secret_name) {
        return Err(format!(
            "secretName {:?} is not a valid Secret name (lowercase letters, digits, '-' and '.')",
            spec.secret_name
        ));
    }
    let refs = std::iter::once(("issuerRef".to_string(), &spec.issuer_ref)).chain(
        spec.fallback_issuer_refs
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("fallbackIssuerRefs[{i}]"), r)),
    );
    for (field, r) in refs {
        if r.name.is_empty() {
            return Err(format!("{field}.name is empty"));
        }
        if let Some(other) = r.kind.as_deref()
            && !matches!(other, "CaaSIssuer" | "ClusterCaaSIssuer")
        {
            return Err(format!(
                "{field}.kind {other:?} is not CaaSIssuer or ClusterCaaSIssuer"
            ));
        }
    }
    if let Some(after) = &spec.fallback_after {
        renewal::parse_duration(after).map_err(|e| format!("fallbackAfter: {e}"))?;
    }
    Ok(())
}

/// The DNS names and IP addresses, normalized and deduplicated, checked individually and
/// as a whole (something, at most 100).
fn validate_names(spec: &CertificateSpec) -> Result<(Vec<String>, Vec<IpAddr>), String> {
    let dns_names = normalize_dns_names(&spec.dns_names)?;
    let ip_addresses = parse_ip_addresses(&spec.ip_addresses)?;
    if dns_names.is_empty() && ip_addresses.is_empty() {
        return Err("the Certificate names nothing: set dnsNames (or ipAddresses)".into());
    }
    if dns_names.len() + ip_addresses.len() > 100 {
        return Err("at most 100 names fit in one certificate".into());
    }
    Ok((dns_names, ip_addresses))
}

/// `dnsNames` trimmed, without a trailing dot, lowercased, checked and deduplicated (in
/// the spec's order).
fn normalize_dns_names(names: &[String]) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut dns_names = Vec::new();
    for name in names {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        validate_dns_name(&name)?;
        if seen.insert(name.clone()) {
            dns_names.push(name);
        }
    }
    Ok(dns_names)
}

/// `ipAddresses` parsed and deduplicated (in the spec's order).
fn parse_ip_addresses(ips: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut ip_addresses = Vec::new();
    for ip in ips {
        let parsed: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("ipAddresses: {ip:?} is not an IP address"))?;
        if !ip_addresses.contains(&parsed) {
            ip_addresses.push(parsed);
        }
    }
    Ok(ip_addresses)
}

/// `commonName` lowercased (`None` when unset or blank); it must be one of the names.
fn validate_common_name(
    spec: &CertificateSpec,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
) -> Result<Option<String>, String> {
    match spec.common_name.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(cn) => {
            let lower = cn.to_ascii_lowercase();
            if cn.len() > 64 {
                return Err(format!("commonName {cn:?} is longer than 64 characters"));
            }
            if !dns_names.contains(&lower) && !ip_addresses.iter().any(|ip| ip.to_string() == cn) {
                return Err(format!(
                    "commonName {cn:?} must also be listed in dnsNames or ipAddresses"
                ));
            }
            Ok(Some(lower))
        }
    }
}

/// `duration` and `renewBefore` parsed, checked with `renewBeforePercentage`.
fn validate_durations(
    spec: &CertificateSpec,
) -> Result<(Option<SignedDuration>, Option<SignedDuration>), String> {
    let parse = |field: &str, v: &Option<String>| -> Result<Option<SignedDuration>, String> {
        v.as_deref()
            .map(|s| renewal::parse_duration(s).map_err(|e| format!("{field}: {e}")))
            .transpose()
    };
    let duration = parse("duration", &spec.duration)?;
    let renew_before = parse("renewBefore", &spec.renew_before)?;
    if let Some(p) = spec.renew_before_percentage
        && !(1..=99).contains(&p)
    {
        return Err(format!(
            "renewBeforePercentage {p} must be between 1 and 99"
        ));
    }
    if let (Some(d), Some(rb)) = (duration, renew_before)
        && rb >= d
    {
        return Err(format!(
            "renewBefore ({rb:#}) must be shorter than duration ({d:#})"
        ));
    }
    Ok((duration, renew_before))
}

/// The private key settings and rotation policy, defaults resolved.
fn validate_key(spec: &CertificateSpec) -> Result<(KeySettings, RotationPolicy), String> {
    let key = KeySettings::from_spec(spec.private_key.as_ref())?;
    let rotation = spec
        .private_key
        .as_ref()
        .and_then(|k| k.rotation_policy)
        .unwrap_or_default();
    Ok((key, rotation))
}

/// [`Request::hash`]: names (in any order), key settings and issuer, hashed.
fn request_hash(
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    common_name: Option<&str>,
    key: &KeySettings,
    rotation: RotationPolicy,
    issuer_fingerprint: &str,
) -> String {
    let mut sorted_names = dns_names.to_vec();
    sorted_names.sort();
    let mut sorted_ips: Vec<String> = ip_addresses.iter().map(|i| i.to_string()).collect();
    sorted_ips.sort();
    let fingerprint = format!(
        "{}|{}|{}|{:?}/{}/{:?}/{rotation:?}|{}",
        sorted_names.join(","),
        sorted_ips.join(","),
        common_name.unwrap_or(""),
        key.algorithm,
        key.size,
        key.encoding,
        issuer_fingerprint
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, fingerprint.as_bytes());
    digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::profile_problem;

    #[test]
    fn a_profile_the_ca_does_not_offer_is_refused_with_what_it_offers() {
        let offered = [
            ("default".to_string(), "90 days".to_string()),
            ("shortlived".to_string(), "6 days".to_string()),
        ];
        assert_eq!(profile_problem(None, &offered), None);
        assert_eq!(profile_problem(None, &[]), None);
        assert_eq!(profile_problem(Some("shortlived"), &offered), None);
        assert_eq!(
            profile_problem(Some("tlsserver"), &offered).unwrap(),
            "profile \"tlsserver\" is not offered by the CA; it offers: default (90 days), shortlived (6 days)"
        );
        let none = profile_problem(Some("shortlived"), &[]).unwrap();
        assert!(none.contains("offers no ACME profiles"), "{none}");
    }
}
