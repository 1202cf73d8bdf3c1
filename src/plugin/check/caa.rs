//! `check issuer --dns NAME`: the CAA records (RFC 8659) that govern NAME, whether they
//! let this CA issue to this ACME account by the issuer's validation method for NAME
//! (RFC 8657 `accounturi` and `validationmethods`, which Let's Encrypt enforces), and the
//! record that pins NAME to both.

use serde_json::Value;

use crate::shared::settings::Resolvers;

/// One CAA property, from its zone-file form `0 issue "ca.example; accounturi=URI"`.
#[derive(Debug, PartialEq)]
struct Property {
    tag: String,
    /// The issuer domain name (empty: no CA may issue).
    domain: String,
    params: Vec<(String, String)>,
}

fn parse(record: &str) -> Option<Property> {
    let mut parts = record.trim().splitn(3, char::is_whitespace);
    let (_flags, tag) = (parts.next()?, parts.next()?);
    let value = parts.next()?.trim().trim_matches('"');
    let mut fields = value.split(';');
    let domain = fields.next().unwrap_or_default().trim().to_string();
    let params = fields
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Property {
        tag: tag.to_ascii_lowercase(),
        domain,
        params,
    })
}

/// The CAA record that lets only CA `ca` issue for `name`, only to `account`, only by
/// `methods`.
pub fn pin_record(name: &str, ca: &str, account: &str, methods: &[&str]) -> String {
    let name = name.trim_start_matches("*.");
    format!(
        "{name}. CAA 0 issue \"{ca}; accounturi={account}; validationmethods={}\"",
        methods.join(",")
    )
}

/// Whether CAA `records` (at `owner`) let CA `ca` issue for a name (a wildcard one when
/// `wildcard`) to `account` by `method`: what they say, or why not.
fn permits(
    (owner, records): (&str, &[String]),
    ca: &str,
    account: &str,
    method: &str,
    wildcard: bool,
) -> Result<String, String> {
    let props: Vec<Property> = records.iter().filter_map(|r| parse(r)).collect();
    let wild = wildcard && props.iter().any(|p| p.tag == "issuewild");
    let tag = if wild { "issuewild" } else { "issue" };
    let relevant: Vec<&Property> = props.iter().filter(|p| p.tag == tag).collect();
    if relevant.is_empty() {
        return Ok(format!(
            "CAA at {owner} has no {tag} property: any CA may issue"
        ));
    }
    let param = |p: &Property, key: &str| {
        (p.params.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let allows = |p: &&Property| {
        p.domain.eq_ignore_ascii_case(ca)
            && param(p, "accounturi").is_none_or(|a| a == account)
            && param(p, "validationmethods")
                .is_none_or(|m| m.split(',').any(|m| m.trim().eq_ignore_ascii_case(method)))
    };
    match relevant.into_iter().find(allows) {
        Some(_) => Ok(format!(
            "CAA at {owner} lets {ca} issue to this account by {method}: {}",
            records.join(" | ")
        )),
        None => Err(format!(
            "CAA at {owner} does not let {ca} issue to this account by {method} (the CA will refuse): {}",
            records.join(" | ")
        )),
    }
}

/// The ACME challenge type the issuer's solver for `dns_name` answers.
fn method(handle: &crate::shared::IssuerHandle, dns_name: &str) -> Option<&'static str> {
    let solvers = &handle.spec.solvers;
    let i = crate::solvers::select_solver(solvers, dns_name, &Default::default())?;
    let s = &solvers[i];
    let kinds = [
        (s.dns01.is_some(), "dns-01"),
        (s.http01.is_some(), "http-01"),
        (s.tls_alpn01.is_some(), "tls-alpn-01"),
        (s.dns_account01.is_some(), "dns-account-01"),
        (s.dns_persist01.is_some(), "dns-persist-01"),
    ];
    kinds.iter().find(|(has, _)| *has).map(|(_, m)| *m)
}

/// The CAA check of `dns_name`: the records that govern it judged for this CA, account
/// and validation method, with the record that pins the name to them.
pub async fn check(
    handle: &crate::shared::IssuerHandle,
    directory: Option<&Value>,
    dns_name: &str,
    resolvers: &Resolvers,
) -> Result<String, String> {
    let account = (handle.status.as_ref())
        .and_then(|s| s.account_uri.clone())
        .ok_or("the issuer has no ACME account yet: its accounturi is not known")?;
    let ca = (directory.and_then(|d| d["meta"]["caaIdentities"][0].as_str()))
        .ok_or("the CA's directory names no CAA identity (meta.caaIdentities): ask the CA which domain its CAA records use")?;
    let method = method(handle, dns_name).ok_or("no solver of the issuer matches the name")?;
    let pin = pin_record(dns_name, ca, &account, &[method]);
    let found =
        crate::solvers::dns01::propagation::caa(resolvers, dns_name.trim_start_matches("*."))
            .await
            .map_err(|e| format!("asking for CAA records: {e}"))?;
    let Some((owner, records)) = found else {
        return Ok(format!(
            "no CAA records at {dns_name} or above: any CA may issue; to allow only this account and {method}, publish: {pin}"
        ));
    };
    let wildcard = dns_name.starts_with("*.");
    match permits((&owner, &records), ca, &account, method, wildcard) {
        Ok(words) => Ok(format!("{words}; the record that pins it: {pin}")),
        Err(words) => Err(format!("{words}; publish: {pin}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "https://ca.example/acct/1";

    fn judge(records: &[&str], method: &str, wildcard: bool) -> Result<String, String> {
        let records: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        permits(
            ("example.com.", &records),
            "ca.example",
            ACCOUNT,
            method,
            wildcard,
        )
    }

    #[test]
    fn caa_records_are_judged_for_the_ca_the_account_and_the_method() {
        assert!(judge(&["0 iodef \"mailto:a@b\""], "dns-01", false).is_ok());
        assert!(judge(&["0 issue \"ca.example\""], "dns-01", false).is_ok());
        assert!(judge(&["0 issue \"other.example\""], "dns-01", false).is_err());
        assert!(
            judge(&["0 issue \";\""], "dns-01", false).is_err(),
            "no CA at all"
        );
        let pinned = format!(
            "0 issue \"ca.example; accounturi={ACCOUNT}; validationmethods=dns-01,http-01\""
        );
        assert!(judge(&[&pinned], "http-01", false).is_ok());
        assert!(judge(&[&pinned], "tls-alpn-01", false).is_err());
        let other = "0 issue \"ca.example; accounturi=https://ca.example/acct/2\"";
        assert!(judge(&[other], "dns-01", false).is_err());
        assert!(
            judge(&[other, &pinned], "dns-01", false).is_ok(),
            "one allows"
        );
        // issuewild governs wildcard names when present, issue otherwise.
        let wild = ["0 issue \"ca.example\"", "0 issuewild \";\""];
        assert!(judge(&wild, "dns-01", true).is_err());
        assert!(judge(&wild, "dns-01", false).is_ok());
        assert!(judge(&["0 issue \"ca.example\""], "dns-01", true).is_ok());
    }

    #[test]
    fn the_pin_record_names_the_account_and_methods() {
        assert_eq!(
            pin_record("*.example.com", "ca.example", ACCOUNT, &["dns-01"]),
            "example.com. CAA 0 issue \"ca.example; accounturi=https://ca.example/acct/1; validationmethods=dns-01\""
        );
        let p = parse("0 issue \"ca.example; accounturi = x ;validationmethods=dns-01\"").unwrap();
        assert_eq!(p.domain, "ca.example");
        assert_eq!(
            p.params,
            [
                ("accounturi".into(), "x".into()),
                ("validationmethods".into(), "dns-01".into())
            ]
        );
    }
}
