//! The JSON APIs: Cloudflare v4, DigitalOcean v2, lego's httpreq, acme-dns.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response};
use serde_json::{Value, json};

use super::*;

/// A fake acme-dns server (joohoi/acme-dns's API: `POST /update` with `X-Api-User`,
/// `X-Api-Key`, `{"subdomain", "txt"}`; the two latest values kept per subdomain).
pub struct FakeAcmeDnsServer;

impl FakeAcmeDnsServer {
    /// With one account whose `fulldomain` is `fulldomain` (which the zone's
    /// `_acme-challenge` CNAME must point at). `credential` is its password.
    pub async fn start(fulldomain: &str) -> FakeDnsApi {
        let user = crate::unique_name("acmedns-user");
        let password = crate::unique_name("acmedns-password");
        let subdomain = fulldomain.split('.').next().unwrap_or_default().to_string();
        let authorization = format!("{user}:{password}:{subdomain}:{fulldomain}");
        let mut fake = FakeDnsApi::start(Api::AcmeDns, authorization, password, "").await;
        fake.account = Some(json!({
            "username": user, "password": fake.credential, "fulldomain": fulldomain,
            "subdomain": subdomain, "allowfrom": []
        }));
        fake
    }
}

pub(super) async fn cloudflare(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &Value,
) -> Response<Full<Bytes>> {
    let ok = |result: Value| {
        reply(
            200,
            json!({ "success": true, "errors": [], "messages": [], "result": result }),
        )
    };
    let fail = |status: u16, code: u32, message: &str| {
        reply(
            status,
            json!({ "success": false, "errors": [{ "code": code, "message": message }], "messages": [], "result": null }),
        )
    };
    let path: Vec<&str> = uri
        .path()
        .trim_start_matches("/client/v4/")
        .split('/')
        .collect();
    if let ["zones", zone, "custom_certificates", rest @ ..] = path.as_slice() {
        return super::deploy::custom_certificates(state, method, zone, rest, body);
    }
    match (method, path.as_slice()) {
        (&Method::GET, ["zones"]) => {
            let name = query(uri, "name").unwrap_or_default();
            let zones: Vec<Value> = state
                .zones
                .iter()
                .filter(|(_, z)| *z == name)
                .map(|(id, z)| json!({ "id": id, "name": z, "status": "active" }))
                .collect();
            ok(Value::Array(zones))
        }
        (_, ["zones", id, "dns_records", ..]) if !state.zones.iter().any(|(z, _)| z == id) => fail(
            404,
            7003,
            "Could not route to /zones/..., perhaps your object identifier is invalid?",
        ),
        (&Method::GET, ["zones", _, "dns_records"]) => {
            let name = query(uri, "name");
            let records: Vec<Value> = state.records.lock().expect("lock").iter()
                .filter(|r| name.as_deref().is_none_or(|n| n == r.name))
                .map(|r| json!({ "id": r.id.to_string(), "type": "TXT", "name": r.name, "content": r.content, "ttl": 120 }))
                .collect();
            ok(Value::Array(records))
        }
        (&Method::POST, ["zones", id, "dns_records"]) => {
            let (Some("TXT"), Some(name), Some(content)) = (
                body["type"].as_str(),
                body["name"].as_str(),
                body["content"].as_str(),
            ) else {
                return fail(400, 9005, "Content for TXT record is invalid");
            };
            if zone_of(state, name).map(|(z, _)| z.as_str()) != Some(id) {
                return fail(400, 9007, "DNS name is invalid for this zone");
            }
            match add(state, name, content).await {
                Ok(rid) => ok(
                    json!({ "id": rid.to_string(), "type": "TXT", "name": name, "content": content, "ttl": body["ttl"] }),
                ),
                Err(e) => fail(500, 1000, &e),
            }
        }
        (&Method::DELETE, ["zones", _, "dns_records", rid]) => match rid.parse::<u64>() {
            Ok(id) => match remove(state, id).await {
                Ok(true) => ok(json!({ "id": rid })),
                Ok(false) => fail(404, 81044, "Record does not exist."),
                Err(e) => fail(500, 1000, &e),
            },
            Err(_) => fail(404, 81044, "Record does not exist."),
        },
        _ => fail(404, 7000, "No route for that URI"),
    }
}

pub(super) async fn digitalocean(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &Value,
) -> Response<Full<Bytes>> {
    let not_found = || {
        reply(
            404,
            json!({ "id": "not_found", "message": "The resource you were accessing could not be found." }),
        )
    };
    let path: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let domain = |name: &str| state.zones.iter().any(|(_, z)| z == name);
    match (method, path.as_slice()) {
        (&Method::GET, ["v2", "domains", name]) if domain(name) => reply(
            200,
            json!({ "domain": { "name": name, "ttl": 1800, "zone_file": "" } }),
        ),
        (_, ["v2", "domains", name, ..]) if !domain(name) => not_found(),
        (&Method::GET, ["v2", "domains", zone, "records"]) => {
            let name = query(uri, "name");
            let records: Vec<Value> = state.records.lock().expect("lock").iter()
                .filter(|r| zone_of(state, &r.name).is_some_and(|(_, z)| z == zone))
                .filter(|r| name.as_deref().is_none_or(|n| n == r.name))
                .map(|r| json!({ "id": r.id, "type": "TXT", "name": r.name.strip_suffix(&format!(".{zone}")).unwrap_or("@"), "data": r.content, "ttl": 60 }))
                .collect();
            let total = records.len();
            reply(
                200,
                json!({ "domain_records": records, "links": {}, "meta": { "total": total } }),
            )
        }
        (&Method::POST, ["v2", "domains", zone, "records"]) => {
            let (Some("TXT"), Some(name), Some(data)) = (
                body["type"].as_str(),
                body["name"].as_str(),
                body["data"].as_str(),
            ) else {
                return reply(
                    422,
                    json!({ "id": "unprocessable_entity", "message": "Name Only valid hostname characters are allowed" }),
                );
            };
            // Absolute with a trailing dot (as lego sends), else relative to the domain.
            let fqdn = match name.strip_suffix('.') {
                Some(abs) => abs.to_string(),
                None if name == "@" => zone.to_string(),
                None => format!("{name}.{zone}"),
            };
            if zone_of(state, &fqdn).map(|(_, z)| z.as_str()) != Some(*zone) {
                return reply(
                    422,
                    json!({ "id": "unprocessable_entity", "message": "Name is not in this domain" }),
                );
            }
            match add(state, &fqdn, data).await {
                Ok(id) => reply(
                    201,
                    json!({ "domain_record": { "id": id, "type": "TXT", "name": name, "data": data, "ttl": body["ttl"] } }),
                ),
                Err(e) => reply(500, json!({ "id": "server_error", "message": e })),
            }
        }
        (&Method::DELETE, ["v2", "domains", _, "records", id]) => match id.parse::<u64>() {
            Ok(id) => match remove(state, id).await {
                Ok(true) => Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .expect("response"),
                Ok(false) => not_found(),
                Err(e) => reply(500, json!({ "id": "server_error", "message": e })),
            },
            Err(_) => not_found(),
        },
        _ => not_found(),
    }
}

pub(super) async fn httpreq(
    state: &State,
    method: &Method,
    path: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    let (Some(fqdn), Some(value)) = (body["fqdn"].as_str(), body["value"].as_str()) else {
        return reply(400, json!("fqdn and value are required"));
    };
    let name = fqdn.trim_end_matches('.');
    if method != Method::POST || zone_of(state, name).is_none() {
        return reply(400, json!(format!("no zone for {fqdn}")));
    }
    let result = match path {
        "/present" => add(state, name, value).await.map(|_| ()),
        "/cleanup" => {
            let ids: Vec<u64> = state
                .records
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.name == name && r.content == value)
                .map(|r| r.id)
                .collect();
            let mut result = Ok(());
            for id in ids {
                if let Err(e) = remove(state, id).await {
                    result = Err(e);
                }
            }
            result
        }
        _ => return reply(404, json!("not found")),
    };
    match result {
        Ok(()) => reply(200, json!("ok")),
        Err(e) => reply(500, json!(e)),
    }
}

pub(super) async fn acme_dns(
    state: &State,
    method: &Method,
    path: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    let mut fields = state.authorization.splitn(4, ':').skip(2);
    let (Some(subdomain), Some(fulldomain)) = (fields.next(), fields.next()) else {
        return reply(500, json!({ "error": "fake misconfigured" }));
    };
    if method != Method::POST || path != "/update" {
        return reply(404, json!({ "error": "not found" }));
    }
    let (Some(sub), Some(txt)) = (body["subdomain"].as_str(), body["txt"].as_str()) else {
        return reply(400, json!({ "error": "malformed_json_payload" }));
    };
    if sub != subdomain {
        return reply(401, json!({ "error": "forbidden" }));
    }
    if txt.len() != 43 {
        return reply(400, json!({ "error": "bad_txt" }));
    }
    if let Err(e) = add(state, fulldomain, txt).await {
        return reply(500, json!({ "error": e }));
    }
    // acme-dns keeps the two latest values.
    let older: Vec<u64> = {
        let records = state.records.lock().expect("lock");
        let mine: Vec<&Rec> = records.iter().filter(|r| r.name == fulldomain).collect();
        mine.iter()
            .take(mine.len().saturating_sub(2))
            .map(|r| r.id)
            .collect()
    };
    for id in older {
        if let Err(e) = remove(state, id).await {
            return reply(500, json!({ "error": e }));
        }
    }
    reply(200, json!({ "txt": txt }))
}
