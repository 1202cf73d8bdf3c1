//! Amazon Route 53 (REST, XML, SigV4).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response};

use super::*;

/// The fake of Amazon Route 53's REST API (2013-04-01, XML, SigV4-signed requests).
pub struct FakeRoute53Api;

impl FakeRoute53Api {
    /// `credential` is `<access key id>:<secret access key>`.
    pub async fn start() -> FakeDnsApi {
        let key_id = format!(
            "AKIA{}",
            crate::unique_name("fake").to_uppercase().replace('-', "")
        );
        let secret = crate::unique_name("aws-secret");
        crate::register_secret(&secret);
        FakeDnsApi::start(
            Api::Route53,
            key_id.clone(),
            format!("{key_id}:{secret}"),
            "",
        )
        .await
    }
}

pub(super) fn xml(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

pub(super) fn aws_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake-0001</RequestId></ErrorResponse>"
    )
}

/// The text of each `<tag>` in `xml`.
fn xml_tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|p| p.split_once(&close).map(|(v, _)| v.replace("&quot;", "\"")))
        .collect()
}

/// Route 53 orders names by their labels from the right (`test.acc.a`).
fn reversed(name: &str) -> String {
    name.trim_end_matches('.')
        .split('.')
        .rev()
        .collect::<Vec<_>>()
        .join(".")
}

const R53: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

pub(super) async fn route53(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &str,
) -> Response<Full<Bytes>> {
    let path: Vec<&str> = uri
        .path()
        .trim_start_matches("/2013-04-01/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    match (method, path.as_slice()) {
        (&Method::GET, ["hostedzonesbyname"]) => {
            let dnsname = query(uri, "dnsname").unwrap_or_default();
            let mut zones: Vec<&(String, String)> = state.zones.iter().collect();
            zones.sort_by_key(|(_, n)| reversed(n));
            let first = zones
                .into_iter()
                .find(|(_, n)| reversed(n) >= reversed(&dnsname));
            let listed: String = first
                .map(|(id, n)| format!("<HostedZone><Id>/hostedzone/{id}</Id><Name>{n}.</Name><CallerReference>fake</CallerReference><Config><PrivateZone>false</PrivateZone></Config><ResourceRecordSetCount>3</ResourceRecordSetCount></HostedZone>"))
                .unwrap_or_default();
            xml(
                200,
                &format!(
                    "<?xml version=\"1.0\"?>\n<ListHostedZonesByNameResponse xmlns=\"{R53}\"><HostedZones>{listed}</HostedZones><DNSName>{dnsname}</DNSName><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListHostedZonesByNameResponse>"
                ),
            )
        }
        (_, ["hostedzone", id, ..]) if !state.zones.iter().any(|(z, _)| z == id) => xml(
            404,
            &aws_error(
                "NoSuchHostedZone",
                &format!("No hosted zone found with ID: {id}"),
            ),
        ),
        (&Method::GET, ["hostedzone", _, "rrset"]) => {
            let name = query(uri, "name")
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_string();
            let records = state.records.lock().expect("lock").clone();
            let mut names: Vec<&String> = records
                .iter()
                .map(|r| &r.name)
                .filter(|n| reversed(n) >= reversed(&name))
                .collect();
            names.sort_by_key(|n| reversed(n));
            let set: String = names.first().map(|n| {
                let values: String = records.iter().filter(|r| &r.name == *n).map(|r| format!("<ResourceRecord><Value>\"{}\"</Value></ResourceRecord>", r.content)).collect();
                format!("<ResourceRecordSet><Name>{n}.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords>{values}</ResourceRecords></ResourceRecordSet>")
            }).unwrap_or_default();
            xml(
                200,
                &format!(
                    "<?xml version=\"1.0\"?>\n<ListResourceRecordSetsResponse xmlns=\"{R53}\"><ResourceRecordSets>{set}</ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>"
                ),
            )
        }
        (&Method::POST, ["hostedzone", _, "rrset"]) => route53_change(state, body).await,
        (&Method::GET, ["change", id]) => xml(
            200,
            &format!(
                "<?xml version=\"1.0\"?>\n<GetChangeResponse xmlns=\"{R53}\"><ChangeInfo><Id>/change/{id}</Id><Status>INSYNC</Status><SubmittedAt>2026-11-29T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
            ),
        ),
        _ => xml(404, &aws_error("NotFound", "no such operation")),
    }
}

/// One ChangeBatch of one change: UPSERT replaces the set, DELETE must name it exactly.
async fn route53_change(state: &State, body: &str) -> Response<Full<Bytes>> {
    let (Some(action), Some(name), Some("TXT")) = (
        xml_tags(body, "Action").first().cloned(),
        xml_tags(body, "Name")
            .first()
            .map(|n| n.trim_end_matches('.').to_string()),
        xml_tags(body, "Type").first().map(String::as_str),
    ) else {
        return xml(
            400,
            &aws_error(
                "InvalidInput",
                "Invalid XML ; cvc-complex-type.2.4.b: The content of element 'Change' is not complete.",
            ),
        );
    };
    let wanted: Vec<String> = xml_tags(body, "Value")
        .iter()
        .map(|v| v.trim_matches('"').to_string())
        .collect();
    let current: Vec<Rec> = state
        .records
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.name == name)
        .cloned()
        .collect();
    let mut have: Vec<String> = current.iter().map(|r| r.content.clone()).collect();
    have.sort();
    match action.as_str() {
        "DELETE" => {
            let mut w = wanted.clone();
            w.sort();
            if w != have {
                return xml(
                    400,
                    &aws_error(
                        "InvalidChangeBatch",
                        &format!(
                            "[Tried to delete resource record set [name='{name}.', type='TXT'] but the values provided do not match the current values]"
                        ),
                    ),
                );
            }
            for r in current {
                if let Err(e) = remove(state, r.id).await {
                    return xml(500, &aws_error("InternalFailure", &e));
                }
            }
        }
        "UPSERT" | "CREATE" => {
            for r in current.iter().filter(|r| !wanted.contains(&r.content)) {
                if let Err(e) = remove(state, r.id).await {
                    return xml(500, &aws_error("InternalFailure", &e));
                }
            }
            for v in wanted.iter().filter(|v| !have.contains(v)) {
                if let Err(e) = add(state, &name, v).await {
                    return xml(500, &aws_error("InternalFailure", &e));
                }
            }
        }
        other => {
            return xml(
                400,
                &aws_error("InvalidInput", &format!("Invalid action {other}")),
            );
        }
    }
    let mut next = state.next_id.lock().expect("lock");
    *next += 1;
    xml(
        200,
        &format!(
            "<?xml version=\"1.0\"?>\n<ChangeResourceRecordSetsResponse xmlns=\"{R53}\"><ChangeInfo><Id>/change/C{}</Id><Status>PENDING</Status><SubmittedAt>2026-11-29T00:00:00Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>",
            *next
        ),
    )
}
