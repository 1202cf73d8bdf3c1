//! The fake CA's endpoints: one handler routes each request by path, checks the JWS
//! envelope (not its signature) and answers from the CA's state.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{Method, Response, StatusCode, Uri};
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::sign::{read_csr, san_value};
use super::*;

/// An answer: status, extra headers, body, content type.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    content_type: &'static str,
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
        content_type: "application/json",
    }
}

fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Answer {
    let body = json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail.into(),
        "status": status.as_u16(),
    });
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
        content_type: "application/problem+json",
    }
}

fn with_location(mut a: Answer, location: String) -> Answer {
    a.headers.push(("Location", location));
    a
}

/// A flattened JWS: its protected header and payload (`Null`: POST-as-GET).
fn jws(body: &[u8]) -> Result<(Value, Value), Answer> {
    let bad = |what: &str| problem(StatusCode::BAD_REQUEST, "malformed", what.to_string());
    let outer: Value = serde_json::from_slice(body).map_err(|_| bad("the body is not a JWS"))?;
    let part = |name: &str| -> Result<Value, Answer> {
        let text = outer[name]
            .as_str()
            .ok_or_else(|| bad("a JWS part is missing"))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        let bytes = B64
            .decode(text)
            .map_err(|_| bad("a JWS part is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| bad("a JWS part is not JSON"))
    };
    Ok((part("protected")?, part("payload")?))
}

pub(super) fn jwk_key(jwk: &Value) -> String {
    format!("{}|{}|{}", jwk["crv"], jwk["x"], jwk["y"])
}

pub(super) async fn handle(
    State(ca): State<Arc<Ca>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_string();
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let (first, rest) = (parts.next().unwrap_or(""), parts.next());
    let id: Option<usize> = rest.and_then(|r| r.parse().ok());
    let endpoint = match first {
        "dir" => "directory",
        "nonce" => "new-nonce",
        "new-account" => "new-account",
        "new-order" => "new-order",
        "order" => "order",
        "authz" => "authz",
        "chall" => "challenge",
        "finalize" => "finalize",
        "cert" => "certificate",
        "renewal-info" => "renewal-info",
        _ => "other",
    };
    let mut inner = ca.inner.lock().expect("CA lock");
    *inner.counts.entry(endpoint.to_string()).or_default() += 1;
    let fault = inner.faults.iter().position(|f| f.0 == endpoint);
    let answer = match (endpoint, &method) {
        _ if let Some(i) = fault => {
            let (_, status, kind, detail) = inner.faults.remove(i);
            problem(status, &kind, detail)
        }
        ("directory", &Method::GET) => ok(
            StatusCode::OK,
            json!({
                "newNonce": ca.url("/nonce"),
                "newAccount": ca.url("/new-account"),
                "newOrder": ca.url("/new-order"),
                "revokeCert": ca.url("/revoke"),
                "keyChange": ca.url("/key-change"),
                "renewalInfo": ca.url("/renewal-info"),
                "meta": {"externalAccountRequired": false},
            }),
        ),
        ("new-nonce", _) => Answer {
            status: if method == Method::HEAD {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            },
            headers: Vec::new(),
            body: Vec::new(),
            content_type: "text/plain",
        },
        ("renewal-info", &Method::GET) => renewal_info(&mut inner, rest.unwrap_or_default()),
        (_, &Method::POST) => match jws(&body) {
            Ok((protected, payload)) => post(&ca, &mut inner, endpoint, id, &protected, &payload),
            Err(a) => a,
        },
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "malformed",
            format!("the fake CA does not {method} {path}"),
        ),
    };
    inner.nonce += 1;
    let nonce = format!("nonce-{}", inner.nonce);
    drop(inner);
    let mut response = Response::builder()
        .status(answer.status)
        .header("Content-Type", answer.content_type)
        .header("Replay-Nonce", nonce)
        .header("Cache-Control", "no-store");
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(answer.body)).expect("a response")
}

fn renewal_info(inner: &mut Inner, cert_id: &str) -> Answer {
    // The identifier is base64url(AKI) "." base64url(serial).
    let serial = cert_id
        .split_once('.')
        .and_then(|(_, s)| B64.decode(s).ok())
        .map(|s| {
            s.iter()
                .skip_while(|b| **b == 0)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
    let Some(cert) = inner.certs.iter().find(|c| {
        Some(c.serial.trim_start_matches('0'))
            == serial.as_deref().map(|s| s.trim_start_matches('0'))
    }) else {
        return problem(StatusCode::NOT_FOUND, "malformed", "no such certificate");
    };
    let life = cert.not_after.duration_since(cert.not_before);
    let start = cert.not_before + life * 2 / 3;
    let end = start + life / 12;
    inner.windows.push(Window {
        cert_id: cert_id.to_string(),
        start,
        end,
    });
    let mut a = ok(
        StatusCode::OK,
        json!({"suggestedWindow": {"start": start.to_string(), "end": end.to_string()}}),
    );
    a.headers.push(("Retry-After", "21600".into()));
    a
}

fn post(
    ca: &Ca,
    inner: &mut Inner,
    endpoint: &str,
    id: Option<usize>,
    protected: &Value,
    payload: &Value,
) -> Answer {
    if endpoint == "new-account" {
        return new_account(ca, inner, protected, payload);
    }
    // Everything else is signed with the account URL.
    let kid = protected["kid"].as_str().unwrap_or_default();
    let Some(account) = inner.accounts.iter().position(|a| a.kid == kid) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "accountDoesNotExist",
            format!("no account {kid:?}"),
        );
    };
    let gone = || problem(StatusCode::NOT_FOUND, "malformed", "no such object");
    match endpoint {
        "new-order" => new_order(ca, inner, account, payload),
        "order" => match id.filter(|i| *i < inner.orders.len()) {
            Some(i) => ok(StatusCode::OK, ca.order_json(inner, i)),
            None => gone(),
        },
        "authz" => match id.filter(|i| *i < inner.authzs.len()) {
            Some(i) => ok(StatusCode::OK, ca.authz_json(inner, i)),
            None => gone(),
        },
        "challenge" => match id.filter(|i| *i < inner.challenges.len()) {
            Some(i) => {
                if payload.is_object() {
                    validate(inner, i);
                }
                let a = inner.challenges[i].authz;
                with_location(
                    ok(StatusCode::OK, ca.challenge_json(inner, i)),
                    ca.url(&format!("/authz/{a}")),
                )
            }
            None => gone(),
        },
        "finalize" => match id.filter(|i| *i < inner.orders.len()) {
            Some(i) => finalize(ca, inner, i, payload),
            None => gone(),
        },
        "certificate" => match id.filter(|i| *i < inner.certs.len()) {
            Some(i) => Answer {
                status: StatusCode::OK,
                headers: Vec::new(),
                body: inner.certs[i].chain.clone().into_bytes(),
                content_type: "application/pem-certificate-chain",
            },
            None => gone(),
        },
        _ => problem(
            StatusCode::NOT_FOUND,
            "malformed",
            format!("the fake CA has no {endpoint} endpoint"),
        ),
    }
}

fn new_account(ca: &Ca, inner: &mut Inner, protected: &Value, payload: &Value) -> Answer {
    let key = jwk_key(&protected["jwk"]);
    if let Some(a) = inner.accounts.iter().find(|a| a.jwk == key) {
        return with_location(
            ok(StatusCode::OK, json!({"status": "valid"})),
            a.kid.clone(),
        );
    }
    if payload["onlyReturnExisting"] == json!(true) {
        return problem(
            StatusCode::BAD_REQUEST,
            "accountDoesNotExist",
            "no account for this key",
        );
    }
    let eab_kid = payload["externalAccountBinding"]["protected"]
        .as_str()
        .and_then(|p| B64.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|p| p["kid"].as_str().map(str::to_string));
    let kid = ca.url(&format!("/acct/{}", inner.accounts.len() + 1));
    inner.accounts.push(Account {
        jwk: key,
        kid: kid.clone(),
        eab_kid,
    });
    with_location(ok(StatusCode::CREATED, json!({"status": "valid"})), kid)
}

fn new_order(ca: &Ca, inner: &mut Inner, _account: usize, payload: &Value) -> Answer {
    inner.new_orders.push(payload.clone());
    let identifiers = payload["identifiers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if identifiers.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "malformed", "no identifiers");
    }
    let reuse = ca.reuse.load(Ordering::SeqCst);
    let mut authzs = Vec::new();
    for identifier in &identifiers {
        let a = inner.authzs.len();
        let mut challenges = Vec::new();
        for type_ in ["http-01", "dns-01", "tls-alpn-01"] {
            challenges.push(inner.challenges.len());
            inner.challenges.push(Challenge {
                type_,
                token: format!("token-{a}-{type_}"),
                status: if reuse { "valid" } else { "pending" },
                authz: a,
            });
        }
        inner.authzs.push(Authz {
            identifier: identifier.clone(),
            status: if reuse { "valid" } else { "pending" },
            challenges,
        });
        authzs.push(a);
    }
    let id = inner.orders.len();
    inner.orders.push(Order {
        status: if reuse { "ready" } else { "pending" },
        identifiers,
        authzs,
        not_after: payload["notAfter"].as_str().map(str::to_string),
        replaces: payload["replaces"].as_str().map(str::to_string),
        profile: payload["profile"].as_str().map(str::to_string),
        cert: None,
    });
    with_location(
        ok(StatusCode::CREATED, ca.order_json(inner, id)),
        ca.url(&format!("/order/{id}")),
    )
}

/// The challenge is answered (the fake believes it): its authorization is valid, and its
/// orders ready once all their authorizations are.
fn validate(inner: &mut Inner, challenge: usize) {
    let a = inner.challenges[challenge].authz;
    inner.challenges[challenge].status = "valid";
    inner.authzs[a].status = "valid";
    for o in 0..inner.orders.len() {
        let order = &inner.orders[o];
        if order.status == "pending"
            && order.authzs.contains(&a)
            && order
                .authzs
                .iter()
                .all(|x| inner.authzs[*x].status == "valid")
        {
            inner.orders[o].status = "ready";
        }
    }
}

fn finalize(ca: &Ca, inner: &mut Inner, id: usize, payload: &Value) -> Answer {
    if inner.orders[id].status != "ready" {
        return problem(
            StatusCode::FORBIDDEN,
            "orderNotReady",
            format!("the order is {}", inner.orders[id].status),
        );
    }
    let Some(csr) = payload["csr"].as_str().and_then(|c| B64.decode(c).ok()) else {
        return problem(StatusCode::BAD_REQUEST, "badCSR", "no csr");
    };
    let (key, names) = match read_csr(&csr) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "badCSR", e),
    };
    let mut asked: Vec<String> = names.iter().map(|n| san_value(n).to_string()).collect();
    let mut ordered: Vec<String> = inner.orders[id]
        .identifiers
        .iter()
        .map(Value::to_string)
        .collect();
    asked.sort();
    ordered.sort();
    if asked != ordered {
        return problem(
            StatusCode::BAD_REQUEST,
            "badCSR",
            format!("the CSR names {asked:?}, the order {ordered:?}"),
        );
    }
    let now = jiff::Timestamp::now();
    let not_after = inner.orders[id]
        .not_after
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(now + jiff::SignedDuration::from_hours(90 * 24));
    match ca.sign(
        inner,
        &key,
        names,
        now - jiff::SignedDuration::from_mins(1),
        not_after,
    ) {
        Ok(cert) => {
            let order = &mut inner.orders[id];
            order.status = "valid";
            order.cert = Some(cert);
            with_location(
                ok(StatusCode::OK, ca.order_json(inner, id)),
                ca.url(&format!("/order/{id}")),
            )
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "serverInternal", e),
    }
}
