//! Before the CA is told to validate: is the TXT value served? Asked of the zone's
//! authoritative nameservers (found through the recursive resolvers: the system's, or
//! `--dns01-recursive-nameservers`), or, with `--dns01-recursive-nameservers-only`, of
//! those resolvers alone (where the authoritative servers are unreachable). Also
//! follows `_acme-challenge` CNAMEs (`cnameStrategy: Follow`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;
use hickory_client::proto::xfer::DnsResponse;

use super::error::DnsError;
use crate::shared::settings::Resolvers;

async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Result<DnsResponse, DnsError> {
    let unreachable = |e: String| DnsError::Unreachable { server, message: e };
    let mut n = Name::from_ascii(name)
        .map_err(|e| DnsError::Config(format!("invalid DNS name {name:?}: {e}")))?;
    n.set_fqdn(true);
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(5)))
        .build();
    let (mut client, background) = Client::connect(stream)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(background);
    client
        .query(n, DNSClass::IN, rtype)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

/// The first recursive resolver's answer.
async fn ask(
    resolvers: &Resolvers,
    name: &str,
    rtype: RecordType,
) -> Result<DnsResponse, DnsError> {
    let servers = resolvers.recursive();
    let Some(first) = servers.first() else {
        return Err(DnsError::Config(
            "no recursive nameserver: set --dns01-recursive-nameservers".into(),
        ));
    };
    query(*first, name, rtype).await
}

/// The authoritative nameservers (port 53) of the zone holding `fqdn`.
async fn authoritative(resolvers: &Resolvers, fqdn: &str) -> Result<Vec<SocketAddr>, DnsError> {
    let soa = ask(resolvers, fqdn, RecordType::SOA).await?;
    let zone = soa
        .answers()
        .iter()
        .chain(soa.name_servers())
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name().to_string())
        .ok_or_else(|| DnsError::Config(format!("no zone found for {fqdn}")))?;
    let ns = ask(resolvers, &zone, RecordType::NS).await?;
    let mut servers = Vec::new();
    for host in ns.answers().iter().filter_map(|r| match r.data() {
        RData::NS(ns) => Some(ns.0.to_string()),
        _ => None,
    }) {
        let a = ask(resolvers, &host, RecordType::A).await?;
        servers.extend(a.answers().iter().filter_map(|r| match r.data() {
            RData::A(a) => Some(SocketAddr::new(IpAddr::V4(a.0), 53)),
            _ => None,
        }));
    }
    match servers.is_empty() {
        true => Err(DnsError::Config(format!(
            "no nameserver address found for zone {zone}"
        ))),
        false => Ok(servers),
    }
}

/// `None` when every server asked serves `value` at `fqdn`; else which one does not.
pub async fn missing(
    resolvers: &Resolvers,
    fqdn: &str,
    value: &str,
) -> Result<Option<String>, DnsError> {
    let servers = match resolvers.only {
        true => resolvers.recursive(),
        false => authoritative(resolvers, fqdn).await?,
    };
    for server in servers {
        let answer = query(server, fqdn, RecordType::TXT).await?;
        let served = answer.answers().iter().any(|r| match r.data() {
            RData::TXT(t) => t.txt_data().iter().any(|d| d.as_ref() == value.as_bytes()),
            _ => false,
        });
        if !served {
            let name = fqdn.trim_end_matches('.');
            return Ok(Some(format!(
                "waiting for {name} TXT to be served by {server}"
            )));
        }
    }
    Ok(None)
}

/// Where `fqdn` leads through CNAMEs (itself when it is none), at most 8 steps.
pub async fn follow_cname(resolvers: &Resolvers, fqdn: &str) -> Result<String, DnsError> {
    let mut name = fqdn.to_string();
    for _ in 0..8 {
        let answer = ask(resolvers, &name, RecordType::CNAME).await?;
        let next = answer.answers().iter().find_map(|r| match r.data() {
            RData::CNAME(c) => Some(c.0.to_string()),
            _ => None,
        });
        match next {
            Some(target) => name = target,
            None => return Ok(name),
        }
    }
    Err(DnsError::Config(format!("{fqdn}: more than 8 CNAMEs")))
}
