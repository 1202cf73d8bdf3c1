//! `CaaSIssuer` (namespaced) and `ClusterCaaSIssuer` (cluster-scoped): an ACME account at
//! a CA, with External Account Binding, and the solvers that prove control of names.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
pub use super::persist::DnsPersist01Solver;

/// What an issuer is: the ACME server, the account, and how to solve challenges.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "caas.dev",
    version = "v1alpha1",
    kind = "CaaSIssuer",
    namespaced,
    status = "IssuerStatus",
    shortname = "caasissuer",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.server","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// ACME directory URL (https), e.g. the CaaS endpoint your CA gave you.
    pub server: String,
    /// Contact email for the ACME account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// External Account Binding: required by commercial CaaS CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// Secret holding the ACME account key (`tls.key`); generated (ECDSA P-256) when
    /// missing, reused when present.
    pub private_key_secret_ref: SecretRef,
    /// CA certificates to trust for the ACME server (private CAs, tests), as PEM or as
    /// base64-encoded PEM (cert-manager's form). The system roots are used when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Where the CA offers alternate chains (`Link: rel="alternate"`), use the one whose
    /// top-most certificate is issued by (or is) this Common Name, e.g. `ISRG Root X1`;
    /// the CA's default chain when none matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_chain: Option<String>,
    /// Send a Certificate's `duration` as the order's `notAfter` (default: false, as
    /// cert-manager's field of the same name: Let's Encrypt and many CAs refuse
    /// notAfter). Off, certificates get the CA's default lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_duration_feature: Option<bool>,
    /// ACME profile to request, where the CA offers profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// How to solve challenges; the solver with the most specific matching selector wins.
    #[serde(default)]
    pub solvers: Vec<SolverConfig>,
    /// Notifications about this issuer's Certificates (issued, renewed, failed,
    /// expiring); without it, the operator's default (`--default-notify`, the chart's
    /// `notify` value) applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// Where to tell people about certificates.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    #[serde(default)]
    pub webhooks: Vec<NotifyWebhook>,
    /// Consecutive failed attempts before one `failed` message (default 3); one message
    /// per run of failures, not one per failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_after: Option<u32>,
}

/// One incoming webhook. The URL is a credential (Slack, Teams): it comes from a Secret
/// (the issuer's namespace; the operator's for ClusterCaaSIssuers and the default) and is
/// never logged.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NotifyWebhook {
    /// `Generic` (JSON with `event`, the Certificate's namespace, name, names, serial,
    /// notAfter, reason, message) or `Slack` (`{"text": ...}`, which Slack and Microsoft
    /// Teams incoming webhooks accept).
    #[serde(default)]
    pub format: NotifyFormat,
    pub url_secret_ref: SecretKeySelector,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum NotifyFormat {
    #[default]
    Generic,
    Slack,
}

/// The cluster-scoped issuer: same spec; its Secrets live in the operator's namespace
/// (`--cluster-resource-namespace`).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "caas.dev",
    version = "v1alpha1",
    kind = "ClusterCaaSIssuer",
    status = "IssuerStatus",
    shortname = "clustercaasissuer",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".spec.server","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterIssuerSpec(pub IssuerSpec);

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// The key identifier the CA gave you.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// Secret and key holding the HMAC key, base64url as the CA hands it out (padding
    /// optional).
    pub key_secret_ref: SecretKeySelector,
    /// MAC algorithm of the binding: `HS256` (default), `HS384` or `HS512`, as the CA
    /// says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

/// One way to solve challenges, for the names its selector matches (all names when it
/// has none). Exactly one of `http01`, `dns01`, `tlsAlpn01`, `dnsAccount01`,
/// `dnsPersist01`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SolverConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SolverSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http01: Option<Http01Solver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns01: Option<Dns01Solver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_alpn01: Option<TlsAlpn01Solver>,
    /// dns-account-01 (draft-ietf-acme-dns-account-label): as `dns01`, at
    /// `_<label>._acme-challenge.<name>`, the label made from this ACME account's URI, so
    /// several clusters (accounts) can validate one name at the same time without
    /// overwriting each other's records. The same provider fields as `dns01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_account01: Option<Dns01Solver>,
    /// dns-persist-01 (draft-ietf-acme-dns-persist): one TXT record naming the CA and
    /// this ACME account, published once and kept; every later order validates against
    /// it with no DNS write at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_persist01: Option<DnsPersist01Solver>,
}

impl SolverConfig {
    /// The DNS provider settings of a DNS-based solver entry (`dns01`, `dnsAccount01`,
    /// or a `dnsPersist01` that names a provider).
    pub fn dns_provider(&self) -> Option<&Dns01Solver> {
        (self.dns01.as_ref())
            .or(self.dns_account01.as_ref())
            .or(self.dns_persist01.as_ref().map(|p| &p.provider))
    }
}

/// Which names a solver is for. As in cert-manager: `dnsNames` (exact) beats `dnsZones`
/// (longest suffix wins) beats `matchLabels` alone; all given criteria must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SolverSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_zones: Vec<String>,
    /// Labels the Certificate must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// HTTP-01: the operator answers on its own listener; a temporary Ingress (or, with
/// `gatewayHTTPRoute`, a temporary Gateway API HTTPRoute) routes exactly the challenge
/// path to it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Http01Solver {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Http01Ingress>,
    /// A temporary HTTPRoute (gateway.networking.k8s.io/v1) attached to these Gateways
    /// instead of an Ingress (not both).
    #[serde(
        rename = "gatewayHTTPRoute",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_http_route: Option<Http01GatewayHttpRoute>,
}

/// cert-manager's `gatewayHTTPRoute` solver block.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Http01GatewayHttpRoute {
    /// The Gateways (or their listeners, `sectionName`) the route attaches to; the
    /// namespace defaults to the Certificate's.
    #[serde(default)]
    pub parent_refs: Vec<super::gateway::ParentReference>,
    /// Extra labels on the temporary HTTPRoute (some Gateways select routes by label).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Http01Ingress {
    /// `spec.ingressClassName` of the temporary Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Legacy `kubernetes.io/ingress.class` annotation instead (not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// DNS-01: exactly one provider. Field names follow cert-manager's ACME solver fields,
/// so a `dns01` block from a cert-manager issuer pastes in unchanged.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Dns01Solver {
    /// RFC 2136 dynamic update with TSIG (BIND, Knot, PowerDNS, Windows DNS, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136>,
    /// Cloudflare, with an API token (`Zone.DNS` edit permission); the zone is found
    /// from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<Cloudflare>,
    /// Amazon Route 53: an access key (`secretAccessKeySecretRef`), or the AWS SDK's
    /// ambient credentials when none is given (environment, IRSA web identity, EKS Pod
    /// Identity, instance metadata), optionally assuming `role`; waits for the change to
    /// be `INSYNC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53>,
    /// DigitalOcean, with an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digitalocean: Option<DigitalOcean>,
    /// Azure DNS: an app registration's client secret from a Secret, or workload
    /// identity (`AZURE_FEDERATED_TOKEN_FILE`) when none is given.
    #[serde(default, rename = "azureDNS", skip_serializing_if = "Option::is_none")]
    pub azure_dns: Option<AzureDns>,
    /// Google Cloud DNS: a service account JSON key from a Secret, or the ambient
    /// identity (GKE workload identity, the metadata server) when none is given.
    #[serde(default, rename = "cloudDNS", skip_serializing_if = "Option::is_none")]
    pub cloud_dns: Option<CloudDns>,
    /// An acme-dns server (github.com/joohoi/acme-dns): `_acme-challenge.<name>` is a
    /// CNAME to the account's `fulldomain`, and the server publishes the value there.
    #[serde(default, rename = "acmeDNS", skip_serializing_if = "Option::is_none")]
    pub acme_dns: Option<AcmeDns>,
    /// Any DNS through an HTTP endpoint speaking lego's `httpreq` protocol: POST
    /// `<url>/present` and `<url>/cleanup` with `{"fqdn", "value"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// `Follow`: when `_acme-challenge.<name>` is a CNAME, write the TXT record at its
    /// target (a zone made for ACME). `None` (default): write it at the name itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname_strategy: Option<CnameStrategy>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum CnameStrategy {
    #[default]
    None,
    Follow,
}

/// cert-manager's `cloudflare` solver fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Cloudflare {
    /// Secret and key holding an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_secret_ref: Option<SecretKeySelector>,
    /// Legacy global API key (with `email`), instead of a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// API base URL (default `https://api.cloudflare.com/client/v4`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// cert-manager's `route53` solver fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Route53 {
    /// AWS region (for STS; Route 53 itself is global); default: the SDK's
    /// (`AWS_REGION`), else us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The hosted zone; found from the name when unset.
    #[serde(
        default,
        rename = "hostedZoneID",
        skip_serializing_if = "Option::is_none"
    )]
    pub hosted_zone_id: Option<String>,
    /// The access key ID, as a plain string (cert-manager's `accessKeyID`); or
    /// `accessKeyIDSecretRef`. With `secretAccessKeySecretRef`.
    #[serde(
        default,
        rename = "accessKeyID",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id: Option<String>,
    #[serde(
        default,
        rename = "accessKeyIDSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeySelector>,
    /// A role to assume (STS AssumeRole) with the credentials above or the ambient ones,
    /// e.g. `arn:aws:iam::123456789012:role/dns-manager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// API base URL (default: the SDK's Route 53 endpoint, or `AWS_ENDPOINT_URL_ROUTE_53`
    /// / `AWS_ENDPOINT_URL`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// cert-manager's `cloudDNS` solver fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CloudDns {
    /// The Google Cloud project holding the managed zone.
    pub project: String,
    /// Secret and key holding a service account JSON key (`roles/dns.admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_secret_ref: Option<SecretKeySelector>,
    /// The managed zone's name; found from the record name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_name: Option<String>,
    /// API base URL (default `https://dns.googleapis.com`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// cert-manager's `azureDNS` solver fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AzureDns {
    #[serde(rename = "subscriptionID")]
    pub subscription_id: String,
    pub resource_group_name: String,
    /// The DNS zone; found from the name (among the resource group's zones) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_name: Option<String>,
    /// The app registration (service principal) or the workload identity's client.
    #[serde(default, rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_secret_ref: Option<SecretKeySelector>,
    #[serde(default, rename = "tenantID", skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Azure Resource Manager base URL (default `https://management.azure.com`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Microsoft Entra ID login base URL (default `https://login.microsoftonline.com`).
    #[serde(
        default,
        rename = "authorityURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub authority_url: Option<String>,
}

/// cert-manager's `digitalocean` solver fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DigitalOcean {
    /// Secret and key holding an API token (write scope).
    pub token_secret_ref: SecretKeySelector,
    /// API base URL (default `https://api.digitalocean.com`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// cert-manager's `acmeDNS` solver fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AcmeDns {
    /// The acme-dns server's URL, e.g. `https://auth.acme-dns.io`.
    pub host: String,
    /// Secret and key holding the accounts JSON, as cert-manager reads it:
    /// `{"example.com": {"username", "password", "fulldomain", "subdomain", "allowfrom"}}`,
    /// one entry per domain (a wildcard uses its base domain's).
    pub account_secret_ref: SecretKeySelector,
}

/// A lego `httpreq` endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Base URL; `/present` and `/cleanup` are appended.
    pub url: String,
    /// A `kubernetes.io/basic-auth` Secret (`username`, `password`) for HTTP basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<SecretRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136 {
    /// `host:port` (or `host`, port 53) of the primary server that takes updates.
    pub nameserver: String,
    /// TSIG key name.
    pub tsig_key_name: String,
    /// `HMACSHA256` (default), `HMACSHA384`, `HMACSHA512`, `HMACSHA224`, `HMACSHA1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_algorithm: Option<String>,
    /// Secret and key holding the TSIG secret, base64 as in BIND's key file.
    pub tsig_secret_secret_ref: SecretKeySelector,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct TlsAlpn01Solver {}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The ACME account's URI at the CA.
    #[serde(
        default,
        rename = "accountURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub account_uri: Option<String>,
    /// The last `caas.dev/rotate-account-key` value acted on: the account key was rolled
    /// over (RFC 8555 key change) for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_account_key_rotation: Option<String>,
    /// For each DNS-01 solver on a cloud (Route 53, Cloud DNS, Azure DNS): which
    /// credential source signed in (never the credential), or why none could.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cloud_credentials: Vec<CloudCredentials>,
    /// The CA's last rate limit of this issuer's ACME account (429 with Retry-After):
    /// new orders of the account pause until `until`, also across operator restarts and
    /// leader changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimit>,
}

/// A rate limit the CA put on an ACME account.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// The account's URI.
    #[serde(rename = "accountURI")]
    pub account_uri: String,
    /// When new orders may be placed again (the CA's Retry-After).
    pub until: super::Time,
    /// The CA's words.
    pub message: String,
}

/// Which credential source a cloud DNS-01 solver signs in with.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CloudCredentials {
    /// The solver's index in `spec.solvers`.
    pub solver: u32,
    /// `route53`, `cloudDNS` or `azureDNS`.
    pub provider: String,
    /// E.g. `AWS: web identity (IRSA) for role arn:aws:iam::123456789012:role/dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why signing in failed, in the cloud's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
