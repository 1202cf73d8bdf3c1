//! Amazon Route 53's REST API (2013-04-01, docs.aws.amazon.com/Route53/latest/APIReference):
//! `GET /2013-04-01/hostedzonesbyname?dnsname=`, `GET .../hostedzone/{id}/rrset?name=&type=TXT`,
//! `POST .../hostedzone/{id}/rrset/` (an XML ChangeBatch: UPSERT the set with our value
//! added, or with it removed, DELETE when it was the last); every request signed with SigV4 ([`super::sigv4`]). Errors are XML
//! `<ErrorResponse><Error><Code>..</Code><Message>..</Message></Error>`. A change is not
//! waited for in `present`: the solver's `ready` asks `GET .../change/{id}` and says
//! "not yet" until it is `INSYNC` (and then until DNS serves the value).

use http::Method;

use super::api::{ApiClient, Body, base_url, find_zone};
use super::error::DnsError;
use super::provider::{Change, Pending, Secrets};
use super::sigv4::{self, Credentials};
use crate::api::issuer::Route53 as Config;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://route53.amazonaws.com";
const PROVIDER: &str = "Route 53";
const TTL: u32 = 60;

pub struct Route53 {
    api: ApiClient,
    base: String,
    host: String,
    creds: Credentials,
    hosted_zone_id: Option<String>,
}

/// The text inside each `<tag>...</tag>` of `xml` (unescaped).
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|part| part.split_once(&close).map(|(inner, _)| unescape(inner)))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Route 53's own words from an XML error answer.
fn words(status: u16, xml: &str) -> String {
    match (tags(xml, "Code").first(), tags(xml, "Message").first()) {
        (Some(code), Some(message)) => format!("HTTP {status}: {code}: {message}"),
        _ => format!(
            "HTTP {status}: {}",
            xml.chars().take(200).collect::<String>()
        ),
    }
}

/// Ambient credentials: the environment, else IRSA's web identity through STS.
async fn ambient(region: Option<&str>) -> Result<Credentials, SolverError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(key)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: key,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    let (Some(file), Some(role)) = (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN")) else {
        return Err(SolverError::InvalidSpec(
            "route53 has no accessKeyIDSecretRef and no ambient AWS credentials (AWS_ACCESS_KEY_ID, or IRSA's AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)".into(),
        ));
    };
    let token = std::fs::read_to_string(&file).map_err(|e| {
        SolverError::InvalidSpec(format!("cannot read the web identity token {file}: {e}"))
    })?;
    let region = region
        .map(str::to_string)
        .or_else(|| env("AWS_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    // The token goes in the body, never in a URL (URLs appear in error messages).
    let url = format!("https://sts.{region}.amazonaws.com/");
    let form = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=caas-operator&RoleArn={}&WebIdentityToken={}",
        sigv4::uri_encode(&role, false),
        sigv4::uri_encode(token.trim(), false)
    );
    let answer = ApiClient::new("AWS STS")?.post_form(&url, &form).await?;
    let xml = answer.text;
    match (
        tags(&xml, "AccessKeyId").first(),
        tags(&xml, "SecretAccessKey").first(),
    ) {
        (Some(id), Some(key)) if answer.status == 200 => Ok(Credentials {
            access_key_id: id.clone(),
            secret_access_key: key.clone(),
            session_token: tags(&xml, "SessionToken").first().cloned(),
        }),
        _ => Err(SolverError::Dns(DnsError::ApiUnreachable {
            provider: "AWS STS",
            url: format!("https://sts.{region}.amazonaws.com"),
            message: words(answer.status, &xml),
        })),
    }
}

impl Route53 {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<Route53, SolverError> {
        let creds = match (
            &cfg.access_key_id_secret_ref,
            &cfg.secret_access_key_secret_ref,
        ) {
            (Some(id), Some(key)) => Credentials {
                access_key_id: secrets.value(id, "AWS access key ID").await?,
                secret_access_key: secrets.value(key, "AWS secret access key").await?,
                session_token: None,
            },
            _ => ambient(cfg.region.as_deref()).await?,
        };
        let base = base_url(cfg.api_url.as_deref(), DEFAULT_URL);
        let host = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Route53 {
            api: ApiClient::new(PROVIDER)?,
            base,
            host,
            creds,
            hosted_zone_id: cfg.hosted_zone_id.clone(),
        })
    }

    /// A signed request; the status and the XML body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, String), DnsError> {
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let mut headers = sigv4::sign(
            &self.creds,
            method.as_str(),
            &self.host,
            path,
            query,
            body.as_bytes(),
            &amz_date,
            "us-east-1",
            "route53",
        );
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", sigv4::uri_encode(v, false)))
            .collect();
        let url = match q.is_empty() {
            true => format!("{}{path}", self.base),
            false => format!("{}{path}?{}", self.base, q.join("&")),
        };
        headers.push(("content-type", "text/xml".into()));
        let payload = match body.is_empty() {
            true => Body::None,
            false => Body::Text(body),
        };
        let answer = self.api.send(method, &url, &headers, payload).await?;
        Ok((answer.status, answer.text))
    }

    fn refused(name: &str, zone: &str, status: u16, xml: &str) -> DnsError {
        DnsError::api(PROVIDER, name, zone, words(status, xml))
    }

    /// The hosted zone (id, name) holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<(String, String), DnsError> {
        let name = fqdn.trim_end_matches('.');
        if let Some(id) = &self.hosted_zone_id {
            return Ok((
                id.trim_start_matches("/hostedzone/").to_string(),
                format!("hosted zone {id}"),
            ));
        }
        find_zone(PROVIDER, fqdn, |candidate| async move {
            let query = [("dnsname", candidate.as_str()), ("maxitems", "1")];
            let (status, xml) = self
                .call(Method::GET, "/2013-04-01/hostedzonesbyname", &query, "")
                .await?;
            if status != 200 {
                return Err(Self::refused(name, &candidate, status, &xml));
            }
            let names = tags(&xml, "Name");
            let found = names.first().map(|n| n.trim_end_matches('.')) == Some(candidate.as_str());
            let id = tags(&xml, "Id").into_iter().next().filter(|_| found);
            Ok(id.map(|id| (id.trim_start_matches("/hostedzone/").to_string(), candidate)))
        })
        .await
    }

    /// The TXT values at `name` (quoted, as Route 53 holds them).
    async fn values(&self, id: &str, zone: &str, name: &str) -> Result<Vec<String>, DnsError> {
        let path = format!("/2013-04-01/hostedzone/{id}/rrset");
        let fqdn = format!("{name}.");
        let (status, xml) = self
            .call(
                Method::GET,
                &path,
                &[("name", &fqdn), ("type", "TXT"), ("maxitems", "1")],
                "",
            )
            .await?;
        if status != 200 {
            return Err(Self::refused(name, zone, status, &xml));
        }
        // The list starts at the name: its first set may be another name's.
        let first_set = xml.split("<ResourceRecordSet>").nth(1).unwrap_or_default();
        let same = tags(first_set, "Name")
            .first()
            .map(|n| n.trim_end_matches('.'))
            == Some(name)
            && tags(first_set, "Type").first().map(String::as_str) == Some("TXT");
        Ok(if same {
            tags(first_set, "Value")
        } else {
            Vec::new()
        })
    }

    /// Applies one change (UPSERT or DELETE of the whole set).
    async fn write(
        &self,
        id: &str,
        zone: &str,
        name: &str,
        action: &str,
        values: &[String],
    ) -> Result<Option<String>, DnsError> {
        let records: String = values
            .iter()
            .map(|v| {
                format!(
                    "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                    escape(v)
                )
            })
            .collect();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch><Comment>caas-operator DNS-01</Comment><Changes><Change><Action>{action}</Action><ResourceRecordSet><Name>{name}.</Name><Type>TXT</Type><TTL>{TTL}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        );
        let (status, xml) = self
            .call(
                Method::POST,
                &format!("/2013-04-01/hostedzone/{id}/rrset/"),
                &[],
                &body,
            )
            .await?;
        if status != 200 {
            return Err(Self::refused(name, zone, status, &xml));
        }
        // Not waiting for INSYNC here: the solver's `ready` asks (`applied`), and says
        // "not yet" until then.
        let change = tags(&xml, "Id").first().cloned().unwrap_or_default();
        let change = change.trim_start_matches("/change/").to_string();
        let status = tags(&xml, "Status").first().cloned().unwrap_or_default();
        Ok((status != "INSYNC" && !change.is_empty()).then_some(change))
    }

    /// Whether change `id` is `INSYNC` (on all of Route 53's servers).
    async fn settled(&self, id: &str) -> Result<bool, DnsError> {
        let path = format!("/2013-04-01/change/{id}");
        let (status, xml) = self.call(Method::GET, &path, &[], "").await?;
        if status != 200 {
            return Err(Self::refused(id, "(change)", status, &xml));
        }
        Ok(tags(&xml, "Status").first().map(String::as_str) == Some("INSYNC"))
    }
}

impl Route53 {
    /// Applies `change`; the id of the Route 53 change while it is not yet INSYNC.
    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<Pending, DnsError> {
        let (id, zone) = self.zone(fqdn).await?;
        let name = fqdn.trim_end_matches('.');
        let values = self.values(&id, &zone, name).await?;
        match change.apply(&values, &format!("\"{value}\"")) {
            None => Ok(None),
            // A DELETE names the set exactly as it is.
            Some(rest) if rest.is_empty() => self.write(&id, &zone, name, "DELETE", &values).await,
            Some(rest) => self.write(&id, &zone, name, "UPSERT", &rest).await,
        }
    }
}

super::provider::pending_changes_provider!(Route53);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_tags_and_errors() {
        let xml = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>";
        assert_eq!(
            words(403, xml),
            "HTTP 403: InvalidClientTokenId: The security token included in the request is invalid."
        );
        assert_eq!(
            tags("<Value>&quot;a&quot;</Value><Value>\"b\"</Value>", "Value"),
            vec!["\"a\"", "\"b\""]
        );
    }
}
