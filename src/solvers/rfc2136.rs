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
use hickory_client::proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_client::proto::dnssec::tsig::TSigner;
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::rdata::TXT;
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid RFC 2136 solver configuration: {0}")]
    Config(String),
    #[error("DNS server {server} did not answer: {message}")]
    Unreachable { server: SocketAddr, message: String },
    #[error(
        "DNS server {server} refused the update of {name}: {code} (check the TSIG key name, secret, algorithm and the zone's update-policy)"
    )]
    Refused {
        server: SocketAddr,
        name: String,
        code: String,
    },
    #[error("DNS server {server} is not authoritative for a zone holding {name}")]
    NoZone { server: SocketAddr, name: String },
}

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

    async fn update(&self, fqdn: &str, value: &str, add: bool) -> Result<(), DnsError> {
        let zone = self.find_zone(fqdn).await?;
        let record = txt(&name(fqdn)?, value);
        let mut client = self.connect(true).await?;
        let response = if add {
            client.append(record, zone, false).await
        } else {
            client.delete_by_rdata(record, zone).await
        }
        .map_err(|e| self.unreachable(e))?;
        match response.response_code() {
            ResponseCode::NoError => Ok(()),
            code => Err(DnsError::Refused {
                server: self.server,
                name: fqdn.to_string(),
                code: code.to_string(),
            }),
        }
    }

    /// Adds the TXT record `value` at `fqdn` (idempotent).
    pub async fn add_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.update(fqdn, value, true).await
    }

    /// Removes the TXT record `value` at `fqdn` (idempotent), leaving other values.
    pub async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.update(fqdn, value, false).await
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
