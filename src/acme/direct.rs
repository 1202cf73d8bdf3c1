//! The few ACME requests instant-acme 0.8.5 cannot make, signed here (JWS ES256 with the
//! account key through `ring`, nonces from newNonce) and then handed back to it
//! (`AccountBuilder::from_parts`, `Account::order(url)`):
//!
//! * newAccount with our own key, stored before it is registered, and with External
//!   Account Binding as HS256, HS384 or HS512 (`create_from_key` sends no EAB and
//!   `ExternalAccountKey` is HS256 only);
//! * newOrder with `notAfter` (`NewOrder` has no notBefore/notAfter);
//! * certificate download with the alternate chains (`Link: rel="alternate"`), which
//!   `Order::certificate` ignores.
//!
//! instant-acme's unreleased main has `notAfter` on `NewOrder` and an HMAC trait for EAB
//! keys: once a release carries them, [`Direct::new_order`] and the EAB half of
//! [`Direct::new_account`] become removable. Registering a key we stored first and the
//! alternate chains stay here until instant-acme grows them too.

use std::sync::{Arc, Mutex};

use http::{Method, Request};
use hyper::body::Bytes;
use instant_acme::{BodyWrapper, HttpClient, Problem};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AcmeHttp;
pub use super::jws::{AccountKey, Eab, MacAlgorithm};

/// The directory URLs we use ourselves.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    #[serde(default)]
    pub key_change: Option<String>,
}

/// An answer: status, headers, body.
pub struct Answer {
    pub parts: http::response::Parts,
    pub body: Bytes,
}

impl Answer {
    fn location(&self) -> Option<String> {
        header(&self.parts, http::header::LOCATION)
    }
}

fn header(parts: &http::response::Parts, name: http::header::HeaderName) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Signed requests for one account key at one CA.
pub struct Direct {
    http: AcmeHttp,
    /// The directory URL.
    server: String,
    pub directory: Directory,
    pub key: AccountKey,
    /// The account URL once known (requests are signed with `kid`, else with `jwk`).
    kid: Mutex<Option<String>>,
    /// The last `Replay-Nonce`, used by the next request.
    nonce: Mutex<Option<String>>,
}

/// How often one request is signed again after `badNonce`.
const NONCE_ATTEMPTS: u32 = 3;

impl Direct {
    /// Reads the directory at `server`.
    pub async fn new(
        http: &AcmeHttp,
        server: &str,
        key: AccountKey,
    ) -> Result<Arc<Direct>, instant_acme::Error> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(server.trim())
            .body(BodyWrapper::default())?;
        let answer = read(http.request(req).await?).await?;
        if !answer.parts.status.is_success() {
            return Err(problem(&answer));
        }
        let directory = serde_json::from_slice(&answer.body)?;
        Ok(Arc::new(Direct {
            http: http.clone(),
            server: server.trim().to_string(),
            directory,
            key,
            kid: Mutex::new(None),
            nonce: Mutex::new(None),
        }))
    }

    /// The HTTP client and directory URL (for another key at the same CA).
    pub fn http(&self) -> &AcmeHttp {
        &self.http
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The account URL, once found or registered.
    pub fn kid(&self) -> Option<String> {
        self.kid.lock().expect("kid lock").clone()
    }

    async fn nonce(&self) -> Result<String, instant_acme::Error> {
        if let Some(n) = self.nonce.lock().expect("nonce lock").take() {
            return Ok(n);
        }
        let req = Request::builder()
            .method(Method::HEAD)
            .uri(&self.directory.new_nonce)
            .body(BodyWrapper::default())?;
        let answer = read(self.http.request(req).await?).await?;
        header(
            &answer.parts,
            http::header::HeaderName::from_static("replay-nonce"),
        )
        .ok_or(instant_acme::Error::Str("the CA sent no Replay-Nonce"))
    }

    /// POSTs a JWS of `payload` (`None`: POST-as-GET) to `url`, signed with the account
    /// URL when known, else with the JWK (`jwk`); signed again on `badNonce`.
    pub async fn post(
        &self,
        url: &str,
        payload: Option<&Value>,
        jwk: bool,
    ) -> Result<Answer, instant_acme::Error> {
        let mut attempt = 1;
        loop {
            let mut protected = json!({ "alg": "ES256", "nonce": self.nonce().await?, "url": url });
            match self.kid() {
                Some(kid) if !jwk => protected["kid"] = kid.into(),
                _ => protected["jwk"] = self.key.jwk(),
            }
            let body = self
                .key
                .sign(&protected, payload)
                .map_err(|e| instant_acme::Error::Other(e.to_string().into()))?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header(http::header::CONTENT_TYPE, "application/jose+json")
                .body(BodyWrapper::from(body.to_string().into_bytes()))?;
            let answer = read(self.http.request(req).await?).await?;
            if let Some(n) = header(
                &answer.parts,
                http::header::HeaderName::from_static("replay-nonce"),
            ) {
                *self.nonce.lock().expect("nonce lock") = Some(n);
            }
            if answer.parts.status.is_success() {
                return Ok(answer);
            }
            let problem = problem(&answer);
            let bad_nonce = matches!(&problem, instant_acme::Error::Api(p) if p.r#type.as_deref().is_some_and(|t| t.ends_with(":badNonce")));
            if bad_nonce && attempt < NONCE_ATTEMPTS {
                attempt += 1;
                continue;
            }
            return Err(problem);
        }
    }

    /// The account of this key, if the CA has one (newAccount, `onlyReturnExisting`).
    pub async fn find_account(&self) -> Result<Option<String>, instant_acme::Error> {
        let url = self.directory.new_account.clone();
        match self
            .post(&url, Some(&json!({ "onlyReturnExisting": true })), true)
            .await
        {
            Ok(answer) => {
                let kid = answer
                    .location()
                    .ok_or(instant_acme::Error::Str("the CA sent no account URL"))?;
                *self.kid.lock().expect("kid lock") = Some(kid.clone());
                Ok(Some(kid))
            }
            Err(instant_acme::Error::Api(p))
                if p.r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":accountDoesNotExist")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Registers this key (with EAB when given). A key the CA already knows gets its
    /// existing account back (RFC 8555 section 7.3.1): registering again is safe.
    pub async fn register(
        &self,
        contact: Option<&str>,
        eab: Option<&Eab>,
    ) -> Result<String, instant_acme::Error> {
        let url = self.directory.new_account.clone();
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let Some(email) = contact {
            payload["contact"] = json!([format!("mailto:{email}")]);
        }
        if let Some(eab) = eab {
            payload["externalAccountBinding"] = eab.binding(&self.key.jwk(), &url);
        }
        let answer = self.post(&url, Some(&payload), true).await?;
        let kid = answer
            .location()
            .ok_or(instant_acme::Error::Str("the CA sent no account URL"))?;
        *self.kid.lock().expect("kid lock") = Some(kid.clone());
        Ok(kid)
    }

    /// Rolls the account over to `new` (RFC 8555 section 7.3.5): an inner JWS signed by
    /// the new key, inside one signed by the current key. Written here rather than with
    /// instant-acme's `update_key`, which makes its own new key: ours is stored before the
    /// CA switches, so a failed write never loses the account.
    pub async fn key_change(&self, new: &AccountKey) -> Result<(), instant_acme::Error> {
        let url = self
            .directory
            .key_change
            .clone()
            .ok_or(instant_acme::Error::Unsupported(
                "account key rollover (keyChange)",
            ))?;
        let kid = self
            .kid()
            .ok_or(instant_acme::Error::Str("no account URL yet"))?;
        let inner = new
            .sign(
                &json!({ "alg": "ES256", "jwk": new.jwk(), "url": url }),
                Some(&json!({ "account": kid, "oldKey": self.key.jwk() })),
            )
            .map_err(|e| instant_acme::Error::Other(e.to_string().into()))?;
        self.post(&url, Some(&inner), false).await.map(|_| ())
    }

    /// Creates an order from a full newOrder payload (with `notAfter`); returns its URL.
    pub async fn new_order(&self, payload: &Value) -> Result<String, instant_acme::Error> {
        let url = self.directory.new_order.clone();
        let answer = self.post(&url, Some(payload), false).await?;
        answer
            .location()
            .ok_or(instant_acme::Error::Str("the CA sent no order URL"))
    }

    /// The chain at `url` and the alternate chains the CA links to, default first.
    pub async fn chains(&self, url: &str) -> Result<Vec<String>, instant_acme::Error> {
        let first = self.post(url, None, false).await?;
        let alternates = links(&first.parts, "alternate");
        let mut chains = vec![String::from_utf8_lossy(&first.body).into_owned()];
        for alt in alternates {
            let alt = absolute(url, &alt);
            let answer = self.post(&alt, None, false).await?;
            chains.push(String::from_utf8_lossy(&answer.body).into_owned());
        }
        Ok(chains)
    }
}

pub(crate) async fn read(
    mut response: instant_acme::BytesResponse,
) -> Result<Answer, instant_acme::Error> {
    let body = response
        .body
        .into_bytes()
        .await
        .map_err(instant_acme::Error::Other)?;
    Ok(Answer {
        parts: response.parts,
        body,
    })
}

/// The CA's problem document (RFC 7807) of an error answer.
fn problem(answer: &Answer) -> instant_acme::Error {
    match serde_json::from_slice::<Problem>(&answer.body) {
        Ok(mut p) => {
            p.status.get_or_insert(answer.parts.status.as_u16());
            instant_acme::Error::Api(p)
        }
        // Still the CA's answer (not an outage): classified by its status.
        Err(_) => instant_acme::Error::Api(Problem {
            r#type: None,
            detail: Some(format!(
                "the CA answered {} without a problem document",
                answer.parts.status
            )),
            status: Some(answer.parts.status.as_u16()),
            subproblems: Vec::new(),
        }),
    }
}

/// A link target made absolute against the URL it came from (`/cert/1` on the same host).
fn absolute(base: &str, target: &str) -> String {
    if target.contains("://") {
        return target.to_string();
    }
    let Ok(uri) = base.parse::<http::Uri>() else {
        return target.to_string();
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) if target.starts_with('/') => {
            format!("{scheme}://{authority}{target}")
        }
        _ => target.to_string(),
    }
}

/// The targets of `Link` headers with relation `rel` (RFC 8288), e.g.
/// `<https://ca/cert/1/1>;rel="alternate"`.
fn links(parts: &http::response::Parts, rel: &str) -> Vec<String> {
    parts
        .headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            params
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .any(|(k, v)| {
                    k.trim() == "rel"
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r == rel)
                })
                .then(|| target.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let mut response = http::Response::builder()
            .header("Link", "<https://ca/dir>;rel=\"index\"")
            .header(
                "Link",
                "<https://ca/cert/1/1>;rel=\"alternate\", <https://ca/cert/1/2>; rel=alternate",
            )
            .body(())
            .unwrap();
        let parts = std::mem::take(response.headers_mut());
        let mut r = http::Response::new(());
        *r.headers_mut() = parts;
        let (parts, ()) = r.into_parts();
        assert_eq!(
            links(&parts, "alternate"),
            vec!["https://ca/cert/1/1", "https://ca/cert/1/2"]
        );
        assert_eq!(links(&parts, "index"), vec!["https://ca/dir"]);
        assert_eq!(
            absolute("https://ca:14000/cert/1", "/cert/1/1"),
            "https://ca:14000/cert/1/1"
        );
        assert_eq!(
            absolute("https://ca/cert/1", "https://other/x"),
            "https://other/x"
        );
    }
}
