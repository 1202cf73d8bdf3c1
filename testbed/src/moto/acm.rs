//! Where moto 5.2.5's ACM differs from ACM, the mirror answers as ACM does (the third
//! difference, tags lost on a re-import, is fixed in `moto_server.py`):
//!
//! * `DescribeCertificate`'s `Serial` is the serial in colon-separated lowercase hex
//!   bytes (`0f:a1:...`, the ACM API reference's example), not moto's decimal;
//! * `ImportCertificate` into an ARN with `Tags` is refused: "You cannot apply tags when
//!   reimporting a certificate" (ImportCertificate API reference), as
//!   `ValidationException`;
//! * moto's authentication errors are XML (the query protocol's); ACM speaks AWS JSON
//!   1.1, so they are rewritten into ACM's: `InvalidSignatureException`,
//!   `AccessDeniedException`, `UnrecognizedClientException` (400, `__type` and
//!   `message`).

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;

/// The ACM action of a request (`X-Amz-Target: CertificateManager.ImportCertificate`).
pub fn action(parts: &http::request::Parts) -> Option<String> {
    let target = parts.headers.get("x-amz-target")?.to_str().ok()?;
    target
        .strip_prefix("CertificateManager.")
        .map(str::to_string)
}

/// ACM's refusal of a re-import with tags, if this request is one.
pub fn refuse(action: &str, body: &[u8]) -> Option<Response<Full<Bytes>>> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reimport_with_tags = action == "ImportCertificate"
        && request.get("CertificateArn").is_some()
        && request
            .get("Tags")
            .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    reimport_with_tags.then(|| {
        error(
            400,
            "ValidationException",
            "Tagging is not permitted on re-import.",
        )
    })
}

/// An error in ACM's shape (AWS JSON 1.1).
pub fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": code, "message": message });
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// moto's XML authentication error as ACM's JSON one (`None`: not one of those).
pub fn auth_error(body: &[u8]) -> Option<Response<Full<Bytes>>> {
    let text = std::str::from_utf8(body).ok()?;
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].to_string())
    };
    let code = between("<Code>", "</Code>")?;
    let message = between("<Message>", "</Message>").unwrap_or_default();
    let acm_code = match code.as_str() {
        "SignatureDoesNotMatch" => "InvalidSignatureException",
        "AccessDenied" => "AccessDeniedException",
        "InvalidClientTokenId" => "UnrecognizedClientException",
        other => other,
    };
    Some(error(400, acm_code, &message))
}

/// moto's answer to `action`, as ACM would give it.
pub fn rewrite(action: &str, body: Bytes) -> Bytes {
    if action != "DescribeCertificate" {
        return body;
    }
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    let serial = answer["Certificate"]["Serial"].as_str().map(colon_hex);
    if let Some(serial) = serial {
        answer["Certificate"]["Serial"] = serial.into();
    }
    Bytes::from(answer.to_string())
}

/// A decimal number as colon-separated lowercase hex bytes (big-endian).
pub fn colon_hex(decimal: &str) -> String {
    // Repeated division by 256 of the decimal digits (serials have up to 20 bytes).
    let mut digits: Vec<u32> = decimal.bytes().map(|b| u32::from(b - b'0')).collect();
    let mut bytes = Vec::new();
    while digits.iter().any(|d| *d != 0) {
        let mut rest = 0;
        let mut quotient = Vec::with_capacity(digits.len());
        for d in &digits {
            let value = rest * 10 + d;
            quotient.push(value / 256);
            rest = value % 256;
        }
        bytes.push(rest as u8);
        digits = quotient;
    }
    bytes.reverse();
    if bytes.is_empty() {
        bytes.push(0);
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_written_as_acm_writes_them() {
        assert_eq!(colon_hex("0"), "00");
        assert_eq!(colon_hex("255"), "ff");
        assert_eq!(colon_hex("256"), "01:00");
        // 2^64 + 1
        assert_eq!(
            colon_hex("18446744073709551617"),
            "01:00:00:00:00:00:00:00:01"
        );
        let body = Bytes::from(r#"{"Certificate":{"Serial":"4096","CertificateArn":"a"}}"#);
        let out: serde_json::Value =
            serde_json::from_slice(&rewrite("DescribeCertificate", body)).unwrap();
        assert_eq!(out["Certificate"]["Serial"], "10:00");
        assert_eq!(out["Certificate"]["CertificateArn"], "a");
    }

    #[test]
    fn moto_auth_errors_become_acms() {
        let xml = br#"<?xml version="1.0"?><ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>"#;
        let answer = auth_error(xml).unwrap();
        assert_eq!(answer.status(), 400);
        assert_eq!(
            answer.headers()["x-amzn-errortype"],
            "InvalidSignatureException"
        );
        assert!(auth_error(br#"{"__type":"X"}"#).is_none());
    }

    #[test]
    fn a_reimport_with_tags_is_refused() {
        let with = br#"{"CertificateArn":"arn:x","Tags":[{"Key":"a","Value":"b"}]}"#;
        assert!(refuse("ImportCertificate", with).is_some());
        let without = br#"{"CertificateArn":"arn:x"}"#;
        assert!(refuse("ImportCertificate", without).is_none());
        let first = br#"{"Tags":[{"Key":"a","Value":"b"}]}"#;
        assert!(refuse("ImportCertificate", first).is_none());
    }
}
