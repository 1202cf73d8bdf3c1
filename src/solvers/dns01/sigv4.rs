//! AWS Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html)
//! for the Route 53 requests, with `ring`: the AWS SDK would cost minutes of compile time
//! on 2 cores for four requests.

use ring::{digest, hmac};

/// AWS credentials: from a Secret, the environment, or a web identity (IRSA).
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// RFC 3986 encoding as SigV4 wants it (unreserved characters kept).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The headers to add to a request (`x-amz-date`, `x-amz-security-token`,
/// `authorization`) for `method` `host``path`?`query` (query pairs unencoded) with
/// `payload`, at `amz_date` (`20261129T120000Z`), for `region` and `service`.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    creds: &Credentials,
    method: &str,
    host: &str,
    path: &str,
    query: &[(&str, &str)],
    payload: &[u8],
    amz_date: &str,
    region: &str,
    service: &str,
) -> Vec<(&'static str, String)> {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    let canonical_query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = vec![
        ("host", host.to_string()),
        ("x-amz-date", amz_date.to_string()),
    ];
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed_headers = signed_headers.join(";");
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        uri_encode(path, true),
        canonical_query.join("&"),
        sha256_hex(payload)
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = mac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date);
    let k_region = mac(&k_date, region);
    let k_service = mac(&k_region, service);
    let k_signing = mac(&k_service, "aws4_request");
    let signature = hex(&mac(&k_signing, &string_to_sign));
    let mut out: Vec<(&'static str, String)> =
        headers.into_iter().filter(|(k, _)| *k != "host").collect();
    out.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authorization header SigV4 gives a request of `host` (20150830T123600Z).
    fn authorization(host: &str, query: &[(&str, &str)], service: &str) -> String {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let date = "20150830T123600Z";
        let headers = sign(
            &creds,
            "GET",
            host,
            "/",
            query,
            b"",
            date,
            "us-east-1",
            service,
        );
        let auth = headers.into_iter().find(|(k, _)| *k == "authorization");
        auth.unwrap().1
    }

    /// AWS's published example (the IAM ListUsers GET request of the SigV4 test suite,
    /// docs.aws.amazon.com: "Create a signed AWS API request").
    #[test]
    fn matches_the_aws_documentation_example() {
        let query = [("Action", "ListUsers"), ("Version", "2010-05-08")];
        let auth = authorization("iam.amazonaws.com", &query, "iam");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature="));
        assert_eq!(uri_encode("a b/c~", false), "a%20b%2Fc~");
        // The SigV4 test suite's "get-vanilla" case.
        let auth = authorization("example.amazonaws.com", &[], "service");
        assert!(
            auth.ends_with(
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            ),
            "{auth}"
        );
    }
}
