//! Checks of an issuer spec, without a cluster: each error is a message for the user.

use crate::acme;
use crate::api::IssuerSpec;
use crate::api::issuer::{Dns01Solver, SecretKeySelector};
use crate::solvers::{rfc2136, solver_kind};

/// Checks an issuer spec; the error is a message for the user.
pub fn validate(spec: &IssuerSpec) -> Result<(), String> {
    let server = spec.server.trim();
    if !server.starts_with("https://") || server.len() <= "https://".len() {
        return Err(format!(
            "server {server:?} must be the https URL of an ACME directory"
        ));
    }
    if server.parse::<http::Uri>().is_err() {
        return Err(format!("server {server:?} is not a valid URL"));
    }
    if spec.private_key_secret_ref.name.trim().is_empty() {
        return Err("privateKeySecretRef.name is empty".into());
    }
    if let Some(eab) = &spec.external_account_binding {
        if eab.key_id.trim().is_empty() {
            return Err("externalAccountBinding.keyID is empty".into());
        }
        if eab.key_secret_ref.name.is_empty() || eab.key_secret_ref.key.is_empty() {
            return Err("externalAccountBinding.keySecretRef needs name and key".into());
        }
        acme::MacAlgorithm::parse(eab.key_algorithm.as_deref())?;
    }
    if let Some(bundle) = &spec.ca_bundle {
        acme::ca_bundle_pem(bundle).map_err(|e| e.to_string())?;
    }
    for (i, solver) in spec.solvers.iter().enumerate() {
        solver_kind(solver).map_err(|e| format!("solvers[{i}]: {e}"))?;
        if let Some(http) = &solver.http01 {
            validate_http01(http).map_err(|e| format!("solvers[{i}].http01: {e}"))?;
        }
        let persist = solver.dns_persist01.as_ref().map(|p| &p.provider);
        let dns = [
            ("dns01", solver.dns01.as_ref(), true),
            ("dnsAccount01", solver.dns_account01.as_ref(), true),
            // dns-persist-01 needs no provider: without one the user publishes the record.
            ("dnsPersist01", persist, false),
        ];
        for (field, dns01, required) in dns {
            let Some(dns01) = dns01 else { continue };
            let named = !crate::solvers::dns01::factory::configured(dns01).is_empty();
            if required || named {
                validate_dns01(dns01).map_err(|e| format!("solvers[{i}].{field}: {e}"))?;
            }
            if field != "dns01" && dns01.acme_dns.is_some() {
                return Err(format!(
                    "solvers[{i}].{field}.acmeDNS: acme-dns serves _acme-challenge names only (use dns01)"
                ));
            }
        }
    }
    Ok(())
}

/// A Secret reference with both name and key.
fn selector(field: &str, r: &SecretKeySelector) -> Result<(), String> {
    match r.name.is_empty() || r.key.is_empty() {
        true => Err(format!("{field} needs name and key")),
        false => Ok(()),
    }
}

/// An optional http(s) URL.
fn url(field: &str, u: &Option<String>) -> Result<(), String> {
    match u.as_deref().map(str::trim) {
        Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => {
            Err(format!("{field} {u:?} is not an http(s) URL"))
        }
        _ => Ok(()),
    }
}

/// HTTP-01: one way to route (Ingress or HTTPRoute), and a route needs a Gateway.
fn validate_http01(http: &crate::api::issuer::Http01Solver) -> Result<(), String> {
    if let Some(ingress) = &http.ingress
        && ingress.class.is_some()
        && ingress.ingress_class_name.is_some()
    {
        return Err("ingress: set class or ingressClassName, not both".into());
    }
    if let Some(route) = &http.gateway_http_route {
        if http.ingress.is_some() {
            return Err("set ingress or gatewayHTTPRoute, not both".into());
        }
        if route.parent_refs.is_empty() {
            return Err(
                "gatewayHTTPRoute.parentRefs is empty: name the Gateway the CA's request arrives at"
                    .into(),
            );
        }
        if let Some(p) = route.parent_refs.iter().find(|p| p.name.trim().is_empty()) {
            return Err(format!("gatewayHTTPRoute.parentRefs: {p:?} has no name"));
        }
    }
    Ok(())
}

/// Exactly one provider, each with what it needs (credentials as Secret references).
fn validate_dns01(dns01: &Dns01Solver) -> Result<(), String> {
    if let Some(r) = &dns01.rfc2136 {
        if r.nameserver.trim().is_empty() || r.tsig_key_name.trim().is_empty() {
            return Err("rfc2136 needs nameserver and tsigKeyName".into());
        }
        if r.tsig_secret_secret_ref.name.is_empty() || r.tsig_secret_secret_ref.key.is_empty() {
            return Err("rfc2136.tsigSecretSecretRef needs name and key".into());
        }
        rfc2136::tsig_algorithm(r.tsig_algorithm.as_deref())
            .map_err(|e| format!("rfc2136: {e}"))?;
    }
    match crate::solvers::dns01::factory::configured(dns01).as_slice() {
        [] => {
            return Err(
                "names no provider: set rfc2136, cloudflare, route53, cloudDNS, azureDNS, digitalocean, acmeDNS or webhook"
                    .into(),
            );
        }
        [_] => {}
        many => {
            return Err(format!(
                "names {} providers ({}): set exactly one",
                many.len(),
                many.join(", ")
            ));
        }
    }
    if let Some(c) = &dns01.cloudflare {
        match (&c.api_token_secret_ref, &c.api_key_secret_ref) {
            (Some(r), _) => selector("cloudflare.apiTokenSecretRef", r)?,
            (None, Some(r)) if c.email.as_deref().is_some_and(|e| !e.trim().is_empty()) => {
                selector("cloudflare.apiKeySecretRef", r)?
            }
            (None, Some(_)) => return Err("cloudflare.apiKeySecretRef needs email".into()),
            (None, None) => return Err("cloudflare needs apiTokenSecretRef".into()),
        }
        url("cloudflare.apiURL", &c.api_url)?;
    }
    validate_cloud_providers(dns01)?;
    if let Some(d) = &dns01.digitalocean {
        selector("digitalocean.tokenSecretRef", &d.token_secret_ref)?;
        url("digitalocean.apiURL", &d.api_url)?;
    }
    if let Some(a) = &dns01.acme_dns {
        selector("acmeDNS.accountSecretRef", &a.account_secret_ref)?;
        url("acmeDNS.host", &Some(a.host.clone()))?;
    }
    if let Some(w) = &dns01.webhook {
        url("webhook.url", &Some(w.url.clone()))?;
        if w.url.trim().is_empty() {
            return Err("webhook.url is empty".into());
        }
    }
    Ok(())
}

/// Route 53, Cloud DNS and Azure DNS: their credentials (or none: ambient identity).
fn validate_cloud_providers(dns01: &Dns01Solver) -> Result<(), String> {
    if let Some(r) = &dns01.route53 {
        let id = (
            r.access_key_id.as_ref(),
            r.access_key_id_secret_ref.as_ref(),
        );
        match (id, &r.secret_access_key_secret_ref) {
            ((Some(_), Some(_)), _) => {
                return Err(
                    "route53 sets both accessKeyID and accessKeyIDSecretRef: set one".into(),
                );
            }
            ((Some(id), None), Some(key)) if !id.trim().is_empty() => {
                selector("route53.secretAccessKeySecretRef", key)?;
            }
            ((None, Some(id)), Some(key)) => {
                selector("route53.accessKeyIDSecretRef", id)?;
                selector("route53.secretAccessKeySecretRef", key)?;
            }
            ((None, None), None) => {}
            _ => return Err("route53 needs accessKeyID (or accessKeyIDSecretRef) with secretAccessKeySecretRef, or neither (ambient credentials, e.g. IRSA)".into()),
        }
        if let Some(role) = &r.role
            && !role.starts_with("arn:")
        {
            return Err(format!(
                "route53.role {role:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)"
            ));
        }
        url("route53.apiURL", &r.api_url)?;
    }
    if let Some(g) = &dns01.cloud_dns {
        if g.project.trim().is_empty() {
            return Err("cloudDNS.project is empty".into());
        }
        if let Some(r) = &g.service_account_secret_ref {
            selector("cloudDNS.serviceAccountSecretRef", r)?;
        }
        url("cloudDNS.apiURL", &g.api_url)?;
    }
    if let Some(a) = &dns01.azure_dns {
        if a.subscription_id.trim().is_empty() || a.resource_group_name.trim().is_empty() {
            return Err("azureDNS needs subscriptionID and resourceGroupName".into());
        }
        if let Some(r) = &a.client_secret_secret_ref {
            selector("azureDNS.clientSecretSecretRef", r)?;
            if a.client_id.is_none() || a.tenant_id.is_none() {
                return Err("azureDNS.clientSecretSecretRef needs clientID and tenantID".into());
            }
        }
        url("azureDNS.apiURL", &a.api_url)?;
        url("azureDNS.authorityURL", &a.authority_url)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::issuer::{
        ExternalAccountBinding, Http01Ingress, Http01Solver, SecretKeySelector, SecretRef,
        SolverConfig,
    };

    fn spec() -> IssuerSpec {
        IssuerSpec {
            server: "https://ca.example/dir".into(),
            private_key_secret_ref: SecretRef {
                name: "acct".into(),
            },
            solvers: vec![SolverConfig {
                http01: Some(Http01Solver::default()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn issuer_validation() {
        assert!(validate(&spec()).is_ok());
        let mut s = spec();
        s.server = "http://ca.example/dir".into();
        assert!(validate(&s).unwrap_err().contains("https"));
        let mut s = spec();
        s.external_account_binding = Some(ExternalAccountBinding {
            key_id: "kid".into(),
            key_secret_ref: SecretKeySelector {
                name: "eab".into(),
                key: "hmac".into(),
            },
            key_algorithm: Some("HS999".into()),
        });
        assert!(validate(&s).unwrap_err().contains("HS999"));
        let mut s = spec();
        s.solvers.push(SolverConfig::default());
        assert!(validate(&s).unwrap_err().contains("solvers[1]"));
        let mut s = spec();
        s.solvers[0].http01 = Some(Http01Solver {
            ingress: Some(Http01Ingress {
                class: Some("a".into()),
                ingress_class_name: Some("b".into()),
            }),
            ..Default::default()
        });
        assert!(validate(&s).unwrap_err().contains("not both"));
        let route = |v| serde_json::from_value::<Http01Solver>(v).unwrap();
        s.solvers[0].http01 = Some(route(serde_json::json!({
            "ingress": {}, "gatewayHTTPRoute": { "parentRefs": [{ "name": "gw" }] }
        })));
        assert!(
            validate(&s)
                .unwrap_err()
                .contains("ingress or gatewayHTTPRoute, not both")
        );
        s.solvers[0].http01 = Some(route(serde_json::json!({ "gatewayHTTPRoute": {} })));
        assert!(validate(&s).unwrap_err().contains("parentRefs"));
        s.solvers[0].http01 = Some(route(serde_json::json!({
            "gatewayHTTPRoute": { "parentRefs": [{ "name": "gw", "namespace": "edge" }] }
        })));
        assert!(validate(&s).is_ok());
    }
}

#[cfg(test)]
mod dns01_tests {
    use super::validate_dns01;
    use crate::api::issuer::Dns01Solver;

    fn dns01(v: serde_json::Value) -> Dns01Solver {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exactly_one_provider_with_its_credentials() {
        let ok = dns01(
            serde_json::json!({ "cloudflare": { "apiTokenSecretRef": { "name": "cf", "key": "t" } } }),
        );
        assert_eq!(validate_dns01(&ok), Ok(()));
        let two = dns01(serde_json::json!({
            "cloudflare": { "apiTokenSecretRef": { "name": "cf", "key": "t" } },
            "digitalocean": { "tokenSecretRef": { "name": "do", "key": "t" } }
        }));
        assert!(
            validate_dns01(&two)
                .unwrap_err()
                .contains("cloudflare, digitalocean")
        );
        let none = dns01(serde_json::json!({ "cnameStrategy": "Follow" }));
        assert!(
            validate_dns01(&none)
                .unwrap_err()
                .contains("names no provider")
        );
        let half = dns01(
            serde_json::json!({ "route53": { "accessKeyIDSecretRef": { "name": "a", "key": "id" } } }),
        );
        assert!(validate_dns01(&half).unwrap_err().contains("or neither"));
        let ambient = dns01(serde_json::json!({ "route53": { "region": "eu-west-1" } }));
        assert_eq!(validate_dns01(&ambient), Ok(()));
        let bad_url = dns01(serde_json::json!({ "webhook": { "url": "ftp://x" } }));
        assert!(validate_dns01(&bad_url).unwrap_err().contains("http(s)"));
        let azure = dns01(serde_json::json!({ "azureDNS": {
            "subscriptionID": "s", "resourceGroupName": "g", "clientSecretSecretRef": { "name": "a", "key": "k" }
        } }));
        assert!(
            validate_dns01(&azure)
                .unwrap_err()
                .contains("clientID and tenantID")
        );
    }
}
