//! `Route53Mirror`: the front door to moto. Every request goes to moto unchanged (so moto
//! checks its SigV4 signature), and a Route 53 change batch moto accepts is applied to
//! the shared BIND too, so Pebble validates through real DNS.
//!
//! On the way it makes moto answer as Route 53 does where moto differs:
//!
//! * a change batch is atomic and exact: a `DELETE` must name the set with exactly its
//!   current values and a `CREATE` must not find the set, else the whole batch is
//!   refused with `InvalidChangeBatch` (moto 5.2.5 checks a DELETE against its journal
//!   and lets a CREATE duplicate a set). Only TXT sets are tracked;
//! * errors come in Route 53's shape `<ErrorResponse><Error>` (moto wraps auth errors in
//!   EC2's `<Errors>`, which no Route 53 client reads);
//! * STS `AssumeRoleWithWebIdentity` takes only tokens a test registered (moto takes
//!   any), answering `InvalidIdentityToken` as STS does;
//! * ACM requests are answered as ACM does ([`super::acm`]).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Mutex;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// One change of a batch, TXT values quoted as Route 53 holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct R53Change {
    pub action: String,
    /// Lowercase, no trailing dot.
    pub name: String,
    pub rtype: String,
    pub values: Vec<String>,
}

/// The TXT sets: name -> values.
pub type Sets = HashMap<String, Vec<String>>;

pub struct Mirror {
    pub moto: String,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub sets: tokio::sync::Mutex<Sets>,
    pub tokens: Mutex<HashSet<String>>,
    /// `METHOD path -> status` of every request.
    pub log: Mutex<Vec<String>>,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of each `<tag>` in `xml`.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|p| p.split_once(&close).map(|(v, _)| unescape(v)))
        .collect()
}

/// The changes of a `ChangeResourceRecordSetsRequest` body.
pub fn parse_batch(xml: &str) -> Vec<R53Change> {
    xml.split("<Change>")
        .skip(1)
        .map(|change| R53Change {
            action: tags(change, "Action").concat(),
            name: tags(change, "Name")
                .concat()
                .trim_end_matches('.')
                .to_lowercase(),
            rtype: tags(change, "Type").concat(),
            values: tags(change, "Value"),
        })
        .collect()
}

fn same_values(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// The TXT sets after `batch`, or Route 53's refusal (all messages, as it words them).
pub fn apply_batch(sets: &Sets, batch: &[R53Change]) -> Result<Sets, String> {
    let mut after = sets.clone();
    let mut refusals = Vec::new();
    for c in batch.iter().filter(|c| c.rtype == "TXT") {
        let set = format!("[name='{}.', type='TXT']", c.name);
        match (c.action.as_str(), after.get(&c.name)) {
            ("DELETE", None) => refusals.push(format!(
                "Tried to delete resource record set {set} but it was not found"
            )),
            ("DELETE", Some(now)) if !same_values(now, &c.values) => refusals.push(format!(
                "Tried to delete resource record set {set} but the values provided do not match the current values"
            )),
            ("DELETE", Some(_)) => {
                after.remove(&c.name);
            }
            ("CREATE", Some(_)) => refusals.push(format!(
                "Tried to create resource record set {set} but it already exists"
            )),
            _ => {
                after.insert(c.name.clone(), c.values.clone());
            }
        }
    }
    match refusals.is_empty() {
        true => Ok(after),
        false => Err(format!("[{}]", refusals.join(", "))),
    }
}

pub fn route53_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>mirror-0001</RequestId></ErrorResponse>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

/// A form field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], key: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mirror {
    pub async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_string();
        // ACM's calls all go to `POST /`: the log names the action.
        let action = super::acm::action(&parts).map_or(String::new(), |a| format!(" {a}"));
        let answer = self.route(&parts, &path, body).await;
        self.log.lock().expect("lock").push(format!(
            "{} {path}{action} -> {}",
            parts.method,
            answer.status().as_u16()
        ));
        Ok(answer)
    }

    async fn route(
        &self,
        parts: &http::request::Parts,
        path: &str,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        if form_field(&body, "Action").as_deref() == Some("AssumeRoleWithWebIdentity") {
            let token = form_field(&body, "WebIdentityToken").unwrap_or_default();
            if !self.tokens.lock().expect("lock").contains(&token) {
                let xml = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error><RequestId>mirror-0002</RequestId></ErrorResponse>";
                return Response::builder()
                    .status(400)
                    .header("content-type", "text/xml")
                    .body(Full::new(Bytes::from(xml)))
                    .expect("response");
            }
        }
        if let Some(action) = super::acm::action(parts) {
            if let Some(refusal) = super::acm::refuse(&action, &body) {
                return refusal;
            }
            let answer = self.forward(parts, body).await;
            let (head, body) = answer.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if !head.status.is_success()
                && let Some(answer) = super::acm::auth_error(&body)
            {
                return answer;
            }
            let body = match head.status.is_success() {
                true => super::acm::rewrite(&action, body),
                false => body,
            };
            return Response::from_parts(head, Full::new(body));
        }
        let is_batch = parts.method == http::Method::POST
            && path.starts_with("/2013-04-01/hostedzone/")
            && path.trim_end_matches('/').ends_with("/rrset");
        if !is_batch {
            return self.forward(parts, body).await;
        }
        let batch = parse_batch(&String::from_utf8_lossy(&body));
        let mut sets = self.sets.lock().await;
        let after = match apply_batch(&sets, &batch) {
            Ok(after) => after,
            Err(message) => return route53_error(400, "InvalidChangeBatch", &message),
        };
        let answer = self.forward(parts, body).await;
        if answer.status() == 200 {
            mirror_to_bind(&sets, &after).await;
            *sets = after;
        }
        answer
    }

    /// Sends the request to moto as it came (its Host header too: the signature covers
    /// it), and moto's answer back in Route 53's error shape.
    async fn forward(&self, parts: &http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
        let uri = format!(
            "{}{}",
            self.moto,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut req = Request::builder().method(parts.method.clone()).uri(uri);
        for (k, v) in &parts.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let answer = match self.client.request(req).await {
            Ok(a) => a,
            Err(e) => return route53_error(502, "MirrorError", &format!("moto: {e}")),
        };
        let (parts, body) = answer.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let body = match text.contains("<Errors><Error>") {
            true => Bytes::from(
                text.replace("<Errors><Error>", "<Error>")
                    .replace("</Error></Errors>", "</Error>"),
            ),
            false => body,
        };
        let mut out = Response::builder().status(parts.status);
        for (k, v) in &parts.headers {
            if k != http::header::CONTENT_LENGTH {
                out = out.header(k, v);
            }
        }
        out.body(Full::new(body)).expect("response")
    }
}

/// Applies the difference between two views of the TXT sets to BIND.
async fn mirror_to_bind(before: &Sets, after: &Sets) {
    let names: HashSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let old = before.get(name).cloned().unwrap_or_default();
        let new = after.get(name).cloned().unwrap_or_default();
        for value in old.iter().filter(|v| !new.contains(v)) {
            let _ = crate::fake_dns::nsupdate(false, name, value.trim_matches('"')).await;
        }
        for value in new.iter().filter(|v| !old.contains(v)) {
            if let Err(e) = crate::fake_dns::nsupdate(true, name, value.trim_matches('"')).await {
                eprintln!("Route53Mirror: BIND refused {name} {value}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: &str, values: &[&str]) -> R53Change {
        R53Change {
            action: action.into(),
            name: "_acme-challenge.a.acc.test".into(),
            rtype: "TXT".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn batches_are_exact_and_atomic_as_route53s() {
        let empty = Sets::new();
        let one = apply_batch(&empty, &[change("CREATE", &["\"a\""])]).unwrap();
        // A writer that read the set empty loses: the CREATE finds it.
        let err = apply_batch(&one, &[change("CREATE", &["\"b\""])]).unwrap_err();
        assert!(err.contains("but it already exists"), "{err}");
        // One that read it as ["a"] wins; one that read it as [] and DELETEs a stale view loses.
        let two = apply_batch(
            &one,
            &[
                change("DELETE", &["\"a\""]),
                change("CREATE", &["\"a\"", "\"b\""]),
            ],
        )
        .unwrap();
        let err = apply_batch(
            &two,
            &[
                change("DELETE", &["\"a\""]),
                change("CREATE", &["\"a\"", "\"c\""]),
            ],
        )
        .unwrap_err();
        assert!(err.contains("do not match the current values"), "{err}");
        assert_eq!(two["_acme-challenge.a.acc.test"].len(), 2);
        let body = "<ChangeBatch><Changes><Change><Action>DELETE</Action><ResourceRecordSet><Name>_acme-challenge.A.acc.test.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>&quot;a&quot;</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch>";
        assert_eq!(parse_batch(body), vec![change("DELETE", &["\"a\""])]);
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
    }
}
