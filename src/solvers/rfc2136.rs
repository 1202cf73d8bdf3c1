//! DNS-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945), with hickory.
//!
//! Works with BIND, Knot, PowerDNS, Windows DNS and the appliances that speak RFC 2136.
//! The zone is found by asking the server for the SOA of the record name; the record is
//! added next to any others (several authorizations may share a name, e.g. `example.com`
//! and `*.example.com`) and removed by value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::dnssec::rdata::DNSSECRData;
use hickory_client::proto::dnssec::rdata::tsig::{TSIG, TsigAlgorithm};
use hickory_client::proto::dnssec::tsig::TSigner;
use hickory_client::proto::op::{Message, ResponseCode, update_message};
use hickory_client::proto::rr::rdata::TXT;
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_client::proto::udp::UdpClientStream;

use super::dns01::DnsError;
use super::dns01::provider::{Change, DnsFuture, DnsProvider};

/// TTL of challenge records: short, so a retried challenge is not answered from caches.
const TXT_TTL: u32 = 60;

pub struct Rfc2136Client {
    server: SocketAddr,
    signer: TSigner,
}

/// Parses `host:port`, `host` (port 53), `[v6]:port` or `v6`.
pub async fn resolve_nameserver(nameserver: &str) -> Result<SocketAddr, DnsError> {
    let s = nameserver.trim();
    if s.is_empty() {
        return Err(DnsError::Config("nameserver is empty".into()));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let with_port = if s
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        s.to_string()
    } else {
        format!("{s}:53")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| DnsError::Config(format!("cannot resolve nameserver {nameserver:?}")))
}

/// Maps cert-manager's (`HMACSHA256`) and BIND's (`hmac-sha256`) names.
pub fn tsig_algorithm(name: Option<&str>) -> Result<TsigAlgorithm, DnsError> {
    let normalized = name
        .unwrap_or("HMACSHA256")
        .to_ascii_lowercase()
        .replace(['-', '_'], "");
    match normalized.as_str() {
        "hmacsha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmacsha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmacsha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => Err(DnsError::Config(format!(
            "tsigAlgorithm {:?} is not supported: use HMACSHA256, HMACSHA384 or HMACSHA512",
            name.unwrap_or_default()
        ))),
    }
}

/// Decodes a TSIG secret (standard base64, as in BIND key files; whitespace ignored).
pub fn decode_tsig_secret(secret: &[u8]) -> Result<Vec<u8>, DnsError> {
    let text: String = String::from_utf8_lossy(secret)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text))
        .map_err(|_| DnsError::Config("the TSIG secret is not base64".into()))
}

fn name(fqdn: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(fqdn)
        .map_err(|e| DnsError::Config(format!("invalid DNS name {fqdn:?}: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

fn txt(fqdn: &Name, value: &str) -> Record {
    let mut record = Record::from_rdata(
        fqdn.clone(),
        TXT_TTL,
        RData::TXT(TXT::new(vec![value.to_string()])),
    );
    record.set_dns_class(DNSClass::IN);
    record
}

/// The error field of a TSIG record (RFC 8945 section 4.2), which hickory does not expose:
/// read from its wire form (algorithm name, time, fudge, MAC size, MAC, original ID,
/// then the error).
fn read_tsig_error(tsig: &TSIG) -> Option<u16> {
    let mut wire = Vec::new();
    tsig.emit(&mut BinEncoder::new(&mut wire)).ok()?;
    let mut i = 0;
    while *wire.get(i)? != 0 {
        i += 1 + usize::from(wire[i]);
    }
    i += 1 + 6 + 2;
    let mac_len = usize::from(u16::from_be_bytes([*wire.get(i)?, *wire.get(i + 1)?]));
    i += 2 + mac_len + 2;
    Some(u16::from_be_bytes([*wire.get(i)?, *wire.get(i + 1)?]))
}

/// RFC 8945 TSIG error names.
fn tsig_error_name(e: u16) -> String {
    match e {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        22 => "BADTRUNC".into(),
        other => other.to_string(),
    }
}

/// The mnemonic of a DNS response code (RFC 1035, RFC 2136).
fn rcode_name(code: ResponseCode) -> String {
    match u16::from(code) {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        other => format!("response code {other}"),
    }
}

/// What to check for an answer.
fn hint(code: &str, tsig_error: Option<u16>) -> &'static str {
    match (tsig_error, code) {
        (Some(16), _) => "the TSIG secret is wrong for this key name and algorithm",
        (Some(17), _) => {
            "the server knows no TSIG key of this name and algorithm: check tsigKeyName and tsigAlgorithm"
        }
        (Some(18), _) => {
            "the clocks of the operator and the DNS server differ by more than 5 minutes"
        }
        (_, "REFUSED") => {
            "the key may not update this name: check the zone's update-policy or allow-update"
        }
        (_, "NOTAUTH") => "the server is not authoritative for the zone, or rejected the key",
        (_, "NOTZONE") => "the name is outside the zone the server holds",
        _ => "check the TSIG key name, secret, algorithm and the zone's update-policy",
    }
}

impl Rfc2136Client {
    pub fn new(
        server: SocketAddr,
        key_name: &str,
        algorithm: Option<&str>,
        secret: &[u8],
    ) -> Result<Self, DnsError> {
        let signer = TSigner::new(
            decode_tsig_secret(secret)?,
            tsig_algorithm(algorithm)?,
            name(key_name)?,
            300,
        )
        .map_err(|e| DnsError::Config(format!("TSIG key: {e}")))?;
        Ok(Rfc2136Client { server, signer })
    }

    async fn connect(&self, signed: bool) -> Result<Client, DnsError> {
        let mut builder = UdpClientStream::builder(self.server, TokioRuntimeProvider::default())
            .with_timeout(Some(Duration::from_secs(5)));
        if signed {
            builder = builder.with_signer(Some(Arc::new(self.signer.clone())));
        }
        let (client, background) = Client::connect(builder.build())
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(background);
        Ok(client)
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> DnsError {
        DnsError::Unreachable {
            server: self.server,
            message: e.to_string(),
        }
    }

    /// The zone (its apex) the server is authoritative for that holds `fqdn`.
    pub async fn find_zone(&self, fqdn: &str) -> Result<Name, DnsError> {
        let target = name(fqdn)?;
        let mut client = self.connect(false).await?;
        let response = client
            .query(target.clone(), DNSClass::IN, RecordType::SOA)
            .await
            .map_err(|e| self.unreachable(e))?;
        response
            .answers()
            .iter()
            .chain(response.name_servers())
            .find(|r| r.record_type() == RecordType::SOA)
            .map(|r| r.name().clone())
            .ok_or(DnsError::NoZone {
                server: self.server,
                name: fqdn.to_string(),
            })
    }

    /// Adds the TXT record `value` at `fqdn`, or removes it leaving other values
    /// (idempotent).
    pub async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<(), DnsError> {
        let add = change == Change::Add;
        let zone = self.find_zone(fqdn).await?;
        let record = txt(&name(fqdn)?, value);
        let message = match add {
            true => update_message::append(record.clone().into(), zone.clone(), false, false),
            false => update_message::delete_by_rdata(record.clone().into(), zone.clone(), false),
        };
        let mut client = self.connect(true).await?;
        let response = if add {
            client.append(record, zone.clone(), false).await
        } else {
            client.delete_by_rdata(record, zone.clone()).await
        };
        let refused = |code: String, tsig_error: Option<u16>| DnsError::Refused {
            server: self.server,
            name: fqdn.to_string(),
            zone: zone.to_string().trim_end_matches('.').to_string(),
            hint: hint(&code, tsig_error),
            code: match tsig_error {
                Some(e) if e != 0 => format!("{code}, TSIG error {}", tsig_error_name(e)),
                _ => code,
            },
        };
        match response {
            Ok(r) if r.response_code() == ResponseCode::NoError => Ok(()),
            Ok(r) => Err(refused(rcode_name(r.response_code()), None)),
            // A server that rejects the TSIG signature answers unsigned (or with a TSIG
            // error), which the verifying client reports only as a protocol error: send
            // the update again and read the answer without verifying it.
            Err(e) => match self.diagnose(message).await {
                Some((code, tsig_error)) => Err(refused(rcode_name(code), tsig_error)),
                None => Err(self.unreachable(e)),
            },
        }
    }

    /// Sends a signed update and reads the server's answer (its response code and TSIG
    /// error) without verifying the answer's signature; `None` when there is no answer.
    async fn diagnose(&self, mut message: Message) -> Option<(ResponseCode, Option<u16>)> {
        message.set_id(rand::random());
        let now = u32::try_from(jiff::Timestamp::now().as_second()).ok()?;
        message.finalize(&self.signer, now).ok()?;
        let bytes = message.to_vec().ok()?;
        let local = if self.server.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
        socket.send_to(&bytes, self.server).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let answer = Message::from_vec(&buf[..n]).ok()?;
        let tsig_error = answer.signature().iter().find_map(|r| match r.data() {
            RData::DNSSEC(DNSSECRData::TSIG(t)) => read_tsig_error(t),
            _ => None,
        });
        Some((answer.response_code(), tsig_error))
    }

    /// Whether the server answers `value` among the TXT records at `fqdn`.
    pub async fn has_txt(&self, fqdn: &str, value: &str) -> Result<bool, DnsError> {
        let mut client = self.connect(false).await?;
        let response = client
            .query(name(fqdn)?, DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(response.answers().iter().any(|r| match r.data() {
            RData::TXT(t) => t.txt_data().iter().any(|d| d.as_ref() == value.as_bytes()),
            _ => false,
        }))
    }
}

impl DnsProvider for Rfc2136Client {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, change))
    }

    fn serves<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a, Option<bool>> {
        Box::pin(async move { self.has_txt(fqdn, value).await.map(Some) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nameserver_forms() {
        assert_eq!(
            resolve_nameserver("127.0.0.1:5353").await.unwrap().port(),
            5353
        );
        assert_eq!(
            resolve_nameserver("10.1.2.3").await.unwrap().to_string(),
            "10.1.2.3:53"
        );
        assert_eq!(resolve_nameserver("[::1]:54").await.unwrap().port(), 54);
        assert_eq!(resolve_nameserver("::1").await.unwrap().port(), 53);
        assert!(resolve_nameserver("").await.is_err());
    }

    #[test]
    fn tsig_errors_are_read_from_the_wire_form() {
        for (mac, error) in [(vec![], 16u16), (vec![7; 32], 17), (vec![1; 48], 0)] {
            let tsig = TSIG::new(
                TsigAlgorithm::HmacSha256,
                1_700_000_000,
                300,
                mac,
                42,
                error,
                vec![],
            );
            assert_eq!(read_tsig_error(&tsig), Some(error));
        }
        assert_eq!(tsig_error_name(16), "BADSIG");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::NotAuth), "NOTAUTH");
        assert!(hint("NOTAUTH", Some(17)).contains("tsigKeyName"));
    }

    #[test]
    fn algorithms_and_secrets() {
        assert_eq!(tsig_algorithm(None).unwrap(), TsigAlgorithm::HmacSha256);
        assert_eq!(
            tsig_algorithm(Some("hmac-sha512")).unwrap(),
            TsigAlgorithm::HmacSha512
        );
        assert_eq!(
            tsig_algorithm(Some("HMACSHA384")).unwrap(),
            TsigAlgorithm::HmacSha384
        );
        assert!(tsig_algorithm(Some("HMACMD5")).is_err());
        assert_eq!(decode_tsig_secret(b"AAEC\n").unwrap(), vec![0, 1, 2]);
        assert!(decode_tsig_secret(b"not base64!").is_err());
    }
}
