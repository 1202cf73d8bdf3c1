//! A small JSON-over-HTTPS client for the DNS providers' REST APIs ([`ApiClient`]), and
//! what their calls share: [`Rest`] (one provider's base URL, auth headers and way of
//! wording a refusal as [`DnsError::Api`]; calls that must succeed, reads of what may be
//! missing, lists, changes of APIs with one record per value), finding the zone that
//! holds a name ([`find_zone`]) and conditional writes of a whole record set retried on
//! conflict ([`retry_conflicts`]); access tokens come from the cloud SDKs
//! ([`crate::cloud`]). Each provider's few calls are typed in its own file;
//! their SDKs are either not in Rust, or (AWS) would cost minutes of compile time on 2
//! cores for four requests.
use std::time::Duration;

use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::error::DnsError;
use super::provider::Change;

/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers (lower-case names).
pub type Headers = Vec<(&'static str, String)>;

pub struct ApiClient {
    provider: &'static str,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A request's body.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    None,
    /// JSON, sent with `content-type: application/json`.
    Json(&'a Value),
}

impl<'a> From<Option<&'a Value>> for Body<'a> {
    fn from(body: Option<&'a Value>) -> Body<'a> {
        body.map_or(Body::None, Body::Json)
    }
}

/// An answer: HTTP status and JSON body (when it is not JSON: its first 300 characters,
/// as a JSON string).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// Whether the status is one of `statuses`.
    pub fn is(&self, statuses: &[u16]) -> bool {
        statuses.contains(&self.status)
    }
}

impl ApiClient {
    /// A client trusting the system's roots (plain `http://` too: proxies, tests).
    pub fn new(provider: &'static str) -> Result<ApiClient, DnsError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| DnsError::Config(format!("cannot load the system's trusted roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(ApiClient {
            provider,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends one request with `headers` and `body`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Answer, DnsError> {
        let unreachable = |message: String| DnsError::ApiUnreachable {
            provider: self.provider,
            url: url.to_string(),
            message,
        };
        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let payload = match body {
            Body::None => Bytes::new(),
            Body::Json(json) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes).chars().take(300).collect())
        });
        Ok(Answer { status, body })
    }
}

/// One provider's REST API: where it is, how requests authenticate, and how it words a
/// refusal (its own error fields, with the HTTP status).
pub struct Rest {
    api: ApiClient,
    base: String,
    auth: Headers,
    words: fn(&Answer) -> String,
}

impl Rest {
    /// `base` without a trailing `/`; every path starts with one.
    pub fn new(api: ApiClient, base: String, auth: Headers, words: fn(&Answer) -> String) -> Rest {
        Rest {
            api,
            base,
            auth,
            words,
        }
    }

    pub fn provider(&self) -> &'static str {
        self.api.provider
    }

    /// Sends `method` to `path` (after the base URL) with the auth headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, DnsError> {
        self.call_with(method, path, &[], body).await
    }

    /// [`call`](Rest::call) with `headers` too (conditions: `If-Match`).
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, DnsError> {
        let url = format!("{}{path}", self.base);
        let headers = [self.auth.as_slice(), headers].concat();
        self.api.send(method, &url, &headers, body.into()).await
    }

    /// [`call`](Rest::call), when `ok` takes the answer; else the refusal of the change
    /// of `at`'s name in its zone.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        ok: impl Fn(&Answer) -> bool,
        at: (&str, &str),
    ) -> Result<Answer, DnsError> {
        let answer = self.call(method, path, body).await?;
        match ok(&answer) {
            true => Ok(answer),
            false => Err(self.refused(at.0, at.1, &answer)),
        }
    }

    /// `GET path`: the answer when it is there (200), `None` when it is not (404); any
    /// other answer is the refusal of the change of `at`'s name in its zone.
    pub async fn get_opt(&self, path: &str, at: (&str, &str)) -> Result<Option<Answer>, DnsError> {
        let answer = self.call(Method::GET, path, None).await?;
        match answer.status {
            200 => Ok(Some(answer)),
            404 => Ok(None),
            _ => Err(self.refused(at.0, at.1, &answer)),
        }
    }

    /// `GET path` (refused unless `ok` takes the answer): the array at `key` of its body
    /// (none when there is no array).
    pub async fn get_list(
        &self,
        path: &str,
        key: &str,
        ok: impl Fn(&Answer) -> bool,
        at: (&str, &str),
    ) -> Result<Vec<Value>, DnsError> {
        let answer = self.expect(Method::GET, path, None, ok, at).await?;
        Ok(answer.body[key].as_array().cloned().unwrap_or_default())
    }

    /// A change through an API that holds one record per value in `collection`, `ours`
    /// being the records there that hold the value (by id; `None`: one without an id):
    /// adding POSTs `record` when there is none, removing DELETEs `collection/{id}` of
    /// each. `ok` takes the answers to a POST and to a DELETE.
    pub async fn change_records(
        &self,
        change: Change,
        collection: &str,
        ours: Vec<Option<String>>,
        record: &Value,
        ok: [fn(&Answer) -> bool; 2],
        at: (&str, &str),
    ) -> Result<(), DnsError> {
        let [created, deleted] = ok;
        match change {
            Change::Add if ours.is_empty() => {
                let answer = self.expect(Method::POST, collection, Some(record), created, at);
                answer.await?;
            }
            Change::Add => {}
            Change::Remove => {
                for id in ours.into_iter().flatten() {
                    let path = format!("{collection}/{id}");
                    self.expect(Method::DELETE, &path, None, deleted, at)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The provider refused the change of `name` in `zone`: in its own words.
    pub fn refused(&self, name: &str, zone: &str, answer: &Answer) -> DnsError {
        DnsError::api(self.provider(), name, zone, (self.words)(answer))
    }
}

/// What a conditional write of a whole record set came to.
pub enum Written<T> {
    Done(T),
    /// The provider refused it because the set changed since it was read (someone else
    /// wrote it): read again and redo the change.
    Conflict,
}

/// How many times a read-then-conditional-write is tried before giving up: enough for a
/// few dozen writers of one name at once.
const CONFLICT_ATTEMPTS: u32 = 30;

/// Runs `attempt` (read the set, write it back on the condition that it is unchanged)
/// until it is not refused as a [`Written::Conflict`], with a short random pause that
/// grows with each try, so no other writer's value is lost; `at`: the name and zone, for
/// the error after the last try.
pub async fn retry_conflicts<T, F, Fut>(
    provider: &'static str,
    at: (&str, &str),
    mut attempt: F,
) -> Result<T, DnsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Written<T>, DnsError>>,
{
    for n in 1..=CONFLICT_ATTEMPTS {
        if let Written::Done(done) = attempt().await? {
            return Ok(done);
        }
        let most = 20 * u64::from(n.min(10));
        let pause = rand::random_range(most / 2..=most);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let message = format!(
        "the record set changed under {CONFLICT_ATTEMPTS} writes in a row (other writers of this name)"
    );
    Err(DnsError::api(provider, at.0, at.1, message))
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Headers {
    vec![("authorization", format!("Bearer {token}"))]
}

/// The API's base URL: the configured one, else `default`; without a trailing `/`.
pub fn base_url(configured: Option<&str>, default: &str) -> String {
    configured
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

/// The zone holding `fqdn`: what `lookup` finds for the first of the names a zone may have
/// ([`zone_candidates`], longest first); `lookup` gives `None` for a name that is not one
/// of the account's zones.
pub async fn find_zone<Z, F>(
    provider: &'static str,
    fqdn: &str,
    lookup: impl Fn(String) -> F,
) -> Result<Z, DnsError>
where
    F: Future<Output = Result<Option<Z>, DnsError>>,
{
    for candidate in zone_candidates(fqdn) {
        if let Some(zone) = lookup(candidate).await? {
            return Ok(zone);
        }
    }
    Err(DnsError::NoProviderZone {
        provider,
        name: fqdn.trim_end_matches('.').to_string(),
    })
}

/// The names a zone holding `fqdn` may have, longest first (`a.b.example.com.` ->
/// `a.b.example.com`, `b.example.com`, `example.com`); never a bare top-level label.
pub fn zone_candidates(fqdn: &str) -> Vec<String> {
    let name = fqdn.trim_end_matches('.');
    let labels: Vec<&str> = name.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

/// `fqdn` relative to `zone` (`_acme-challenge.a` in `example.com`), `@` for the apex.
pub fn relative(fqdn: &str, zone: &str) -> String {
    let name = fqdn.trim_end_matches('.');
    match name.strip_suffix(zone).and_then(|r| r.strip_suffix('.')) {
        Some(r) => r.to_string(),
        None if name == zone => "@".to_string(),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_relative_names() {
        assert_eq!(
            zone_candidates("_acme-challenge.a.example.com."),
            vec![
                "_acme-challenge.a.example.com",
                "a.example.com",
                "example.com"
            ]
        );
        assert_eq!(
            relative("_acme-challenge.a.example.com.", "example.com"),
            "_acme-challenge.a"
        );
        assert_eq!(relative("example.com", "example.com"), "@");
    }
}
