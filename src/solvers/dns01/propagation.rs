//! Before the CA is told to validate: is the TXT value served? Also follows
//! `_acme-challenge` CNAMEs (`cnameStrategy: Follow`).
//!
//! * Default: the zone's authoritative servers, as cert-manager asks them. The recursive
//!   resolvers (the system's, or `--dns01-recursive-nameservers`) give the zone (SOA),
//!   its NS names and their addresses: the glue of the NS answer when present, else A
//!   and AAAA lookups (IPv4 first). Every NS name is asked on port 53, each of its addresses
//!   in turn until one answers; the value must be served by all of them, and "not yet"
//!   names those that lack it.
//! * `--dns01-recursive-nameservers-only` (where the authoritative servers are
//!   unreachable): every recursive resolver must serve it.
//!
//! Lookups through the recursive resolvers (SOA, NS, A, AAAA, CNAME) try them in turn:
//! a timeout, SERVFAIL or REFUSED moves on to the next, any other answer wins. The
//! decisions (which answer settles a question, which addresses a name has, whether
//! every server serves the value) are pure functions over DNS messages, tested below.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::future::join_all;
use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::op::{Message, ResponseCode};
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;

use super::error::DnsError;
use crate::shared::settings::Resolvers;

/// Where questions go.
struct Dns {
    /// The recursive resolvers, asked in turn.
    recursive: Vec<SocketAddr>,
    /// The port authoritative servers are asked on: 53 (tests use others).
    ns_port: u16,
    /// How long one server may take to answer one question.
    timeout: Duration,
}

impl Dns {
    fn new(resolvers: &Resolvers) -> Dns {
        Dns {
            recursive: resolvers.recursive(),
            ns_port: 53,
            timeout: Duration::from_secs(5),
        }
    }
}

/// One authoritative server (an NS name), or one recursive resolver: what messages call
/// it, and its addresses in the order they are tried.
#[derive(Clone, Debug, PartialEq)]
struct Server {
    name: String,
    addrs: Vec<SocketAddr>,
}

/// What one server answered to the TXT question.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    /// The server and the address that answered (`ns2.example.com at [2001:db8::2]:53`).
    server: String,
    served: bool,
    code: ResponseCode,
}

fn dns_name(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name)
        .map_err(|e| DnsError::Config(format!("invalid DNS name {name:?}: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

async fn query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let unreachable = |e: String| DnsError::Unreachable { server, message: e };
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .build();
    let (mut client, background) = Client::connect(stream)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(background);
    let response = client
        .query(name.clone(), DNSClass::IN, rtype)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(response.into_message())
}

/// Whether an answer settles the question; SERVFAIL and REFUSED send it to the next
/// server (a resolver that failed upstream, or one that will not answer us).
fn definite(code: ResponseCode) -> bool {
    !matches!(code, ResponseCode::ServFail | ResponseCode::Refused)
}

/// The first definite answer of `servers`, asked in turn, with the address that gave
/// it; when none gives one, the last answer, else the last error.
async fn first_answer(
    servers: &[SocketAddr],
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<(SocketAddr, Message), DnsError> {
    let mut last = Err(DnsError::Config(
        "no recursive nameserver: set --dns01-recursive-nameservers".into(),
    ));
    for &server in servers {
        match query(server, name, rtype, timeout).await {
            Ok(m) if definite(m.response_code()) => return Ok((server, m)),
            Ok(m) => last = Ok((server, m)),
            Err(e) if last.is_err() => last = Err(e),
            Err(_) => {}
        }
        tracing::debug!(%server, %name, ?rtype, "no definite answer; asking the next server");
    }
    last
}

impl Dns {
    /// The recursive resolvers' answer.
    async fn ask(&self, name: &Name, rtype: RecordType) -> Result<Message, DnsError> {
        Ok(first_answer(&self.recursive, name, rtype, self.timeout)
            .await?
            .1)
    }
}

/// The zone holding the name asked about: the SOA in the answer or the authority section.
fn zone_of(m: &Message) -> Option<Name> {
    m.answers()
        .iter()
        .chain(m.name_servers())
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name().clone())
}

/// The NS names in an NS answer, without repeats, in order.
fn ns_names(m: &Message) -> Vec<Name> {
    let mut names: Vec<Name> = Vec::new();
    for r in m.answers() {
        if let RData::NS(ns) = r.data()
            && !names.contains(&ns.0)
        {
            names.push(ns.0.clone());
        }
    }
    names
}

/// The addresses of type `rtype` (A or AAAA) that `records` give `host`.
fn addresses(records: &[Record], host: &Name, rtype: RecordType) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| r.record_type() == rtype && r.name() == host)
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// What a served TXT value must satisfy (equal a DNS-01 value; authorize for
/// dns-persist-01).
pub type Matches<'a> = &'a (dyn Fn(&str) -> bool + Send + Sync);

/// Whether a TXT answer holds a record that `matches` (each record's character-strings
/// joined, as RFC 7208 reads a long TXT value).
fn serves(m: &Message, matches: Matches<'_>) -> bool {
    m.answers().iter().any(|r| match r.data() {
        RData::TXT(t) => {
            let joined: Vec<u8> = t
                .txt_data()
                .iter()
                .flat_map(|d| d.iter().copied())
                .collect();
            std::str::from_utf8(&joined).is_ok_and(matches)
        }
        _ => false,
    })
}

/// `None` when every server serves the value at `fqdn`; else which ones do not.
fn verdict(fqdn: &str, answers: &[Answer]) -> Option<String> {
    let name = fqdn.trim_end_matches('.');
    if answers.is_empty() {
        return Some(format!("waiting for {name} TXT: no nameserver to ask"));
    }
    let lacking: Vec<String> = answers
        .iter()
        .filter(|a| !a.served)
        .map(|a| match a.code {
            ResponseCode::NoError => a.server.clone(),
            // SERVFAIL, NXDOMAIN, ... as dig says it.
            code => format!(
                "{} (answered {})",
                a.server,
                format!("{code:?}").to_uppercase()
            ),
        })
        .collect();
    if lacking.is_empty() {
        return None;
    }
    let mut why = format!(
        "waiting for {name} TXT to be served by {}",
        lacking.join(", ")
    );
    let serving = answers.len() - lacking.len();
    if serving > 0 {
        why.push_str(&format!(
            " ({serving} of {} nameservers serve it)",
            answers.len()
        ));
    }
    Some(why)
}

impl Dns {
    /// The addresses of `host` on the authoritative port: the glue in `ns` (the NS
    /// answer) when it has any, else its A and AAAA records through the recursive
    /// resolvers.
    async fn server(&self, ns: &Message, host: &Name) -> Result<Server, DnsError> {
        let glue = |rtype| addresses(ns.additionals(), host, rtype);
        let mut ips = [glue(RecordType::A), glue(RecordType::AAAA)].concat();
        if ips.is_empty() {
            for rtype in [RecordType::A, RecordType::AAAA] {
                // One family failing to resolve (a resolver without IPv6) is no error.
                match self.ask(host, rtype).await {
                    Ok(m) => ips.extend(addresses(m.answers(), host, rtype)),
                    Err(e) => tracing::debug!(%host, ?rtype, error = %e, "no address"),
                }
            }
        }
        if ips.is_empty() {
            return Err(DnsError::Config(format!(
                "no address (A or AAAA) found for nameserver {host}"
            )));
        }
        let addrs = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.ns_port))
            .collect();
        let name = host.to_string().trim_end_matches('.').to_string();
        Ok(Server { name, addrs })
    }

    /// The authoritative servers of the zone holding `fqdn`.
    async fn authoritative(&self, fqdn: &Name) -> Result<Vec<Server>, DnsError> {
        let soa = self.ask(fqdn, RecordType::SOA).await?;
        let zone =
            zone_of(&soa).ok_or_else(|| DnsError::Config(format!("no zone found for {fqdn}")))?;
        let ns = self.ask(&zone, RecordType::NS).await?;
        let hosts = ns_names(&ns);
        if hosts.is_empty() {
            return Err(DnsError::Config(format!(
                "no NS records found for zone {zone}"
            )));
        }
        let mut servers = Vec::new();
        for host in &hosts {
            servers.push(self.server(&ns, host).await?);
        }
        Ok(servers)
    }

    /// What `server` answers for `fqdn` TXT (its addresses in turn).
    async fn answer(
        &self,
        server: &Server,
        fqdn: &Name,
        matches: Matches<'_>,
    ) -> Result<Answer, DnsError> {
        let (addr, m) = first_answer(&server.addrs, fqdn, RecordType::TXT, self.timeout).await?;
        let served = serves(&m, matches);
        tracing::debug!(server = %server.name, %addr, name = %fqdn, served, "asked for the TXT value");
        let at = addr.to_string();
        Ok(Answer {
            server: match server.name == at {
                true => at,
                false => format!("{} at {at}", server.name),
            },
            served,
            code: m.response_code(),
        })
    }

    /// `None` when every server to ask serves a value that `matches` at `fqdn`; else
    /// which do not.
    async fn missing(
        &self,
        fqdn: &str,
        matches: Matches<'_>,
        only: bool,
    ) -> Result<Option<String>, DnsError> {
        let name = dns_name(fqdn)?;
        let servers = match only {
            true => self
                .recursive
                .iter()
                .map(|a| Server {
                    name: a.to_string(),
                    addrs: vec![*a],
                })
                .collect(),
            false => self.authoritative(&name).await?,
        };
        let asked = join_all(servers.iter().map(|s| self.answer(s, &name, matches))).await;
        let answers = asked.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(verdict(fqdn, &answers))
    }

    /// Where `fqdn` leads through CNAMEs (itself when it is none), at most 8 steps.
    async fn follow_cname(&self, fqdn: &str) -> Result<String, DnsError> {
        let mut name = dns_name(fqdn)?;
        for _ in 0..8 {
            let answer = self.ask(&name, RecordType::CNAME).await?;
            let next = answer.answers().iter().find_map(|r| match r.data() {
                RData::CNAME(c) => Some(c.0.clone()),
                _ => None,
            });
            match next {
                Some(target) => name = target,
                None => return Ok(name.to_string()),
            }
        }
        Err(DnsError::Config(format!("{fqdn}: more than 8 CNAMEs")))
    }
}

/// `None` when every server asked serves `value` at `fqdn`; else which do not.
pub async fn missing(
    resolvers: &Resolvers,
    fqdn: &str,
    value: &str,
) -> Result<Option<String>, DnsError> {
    missing_by(resolvers, fqdn, &|served: &str| served == value).await
}

/// `None` when every server asked serves a value at `fqdn` that `matches`.
pub async fn missing_by(
    resolvers: &Resolvers,
    fqdn: &str,
    matches: Matches<'_>,
) -> Result<Option<String>, DnsError> {
    Dns::new(resolvers)
        .missing(fqdn, matches, resolvers.only)
        .await
}

/// Where `fqdn` leads through CNAMEs (itself when it is none), at most 8 steps.
pub async fn follow_cname(resolvers: &Resolvers, fqdn: &str) -> Result<String, DnsError> {
    Dns::new(resolvers).follow_cname(fqdn).await
}

/// The CAA record set that governs `fqdn` (RFC 8659 section 3: the first name from
/// `fqdn` up the tree that has CAA records, asked of the recursive resolvers): its owner
/// and records as the zone file writes them; `None`: no name up to the zone's top has
/// any, so every CA may issue. Top-level domains are not asked (none has CAA records, and
/// a resolver without the internet cannot answer for them).
pub async fn caa(
    resolvers: &Resolvers,
    fqdn: &str,
) -> Result<Option<(String, Vec<String>)>, DnsError> {
    let dns = Dns::new(resolvers);
    let mut name = dns_name(fqdn)?;
    loop {
        let answer = dns.ask(&name, RecordType::CAA).await?;
        let records: Vec<String> = (answer.answers().iter())
            .filter(|r| r.record_type() == RecordType::CAA)
            .map(|r| r.data().to_string())
            .collect();
        if !records.is_empty() {
            return Ok(Some((name.to_string(), records)));
        }
        if name.num_labels() <= 2 {
            return Ok(None);
        }
        name = name.base_name();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use hickory_client::proto::op::{MessageType, Query};
    use hickory_client::proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
    use tokio::net::UdpSocket;

    use super::*;

    const ZONE: &str = "t.test.";
    const RECORD: &str = "_acme-challenge.www.t.test.";

    fn name(s: &str) -> Name {
        dns_name(s).unwrap()
    }

    fn rec(owner: &str, data: RData) -> Record {
        Record::from_rdata(name(owner), 5, data)
    }

    fn a(owner: &str, ip: &str) -> Record {
        rec(owner, RData::A(A(ip.parse().unwrap())))
    }

    fn aaaa(owner: &str, ip: &str) -> Record {
        rec(owner, RData::AAAA(AAAA(ip.parse().unwrap())))
    }

    fn ns(host: &str) -> Record {
        rec(ZONE, RData::NS(NS(name(host))))
    }

    fn txt(value: &str) -> Record {
        rec(RECORD, RData::TXT(TXT::new(vec![value.into()])))
    }

    fn soa() -> Record {
        let soa = SOA::new(
            name("ns1.t.test"),
            name("hostmaster.t.test"),
            1,
            60,
            60,
            600,
            5,
        );
        rec(ZONE, RData::SOA(soa))
    }

    fn answer(server: &str, served: bool, code: ResponseCode) -> Answer {
        Answer {
            server: server.into(),
            served,
            code,
        }
    }

    /// What an in-process server holds and how it answers.
    #[derive(Default)]
    struct Zone {
        records: Vec<Record>,
        /// Add the NS names' addresses to an NS answer.
        glue: bool,
        /// Answer every question with this code and nothing else.
        code: Option<ResponseCode>,
        /// The questions asked so far.
        asked: Vec<(Name, RecordType)>,
    }

    /// The answer of an authoritative server for `t.test` holding `zone`'s records.
    fn respond(zone: &Zone, query: &Query) -> Message {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response)
            .set_authoritative(true);
        if let Some(code) = zone.code {
            m.set_response_code(code);
            return m;
        }
        let held = |n: &Name, t: RecordType| -> Vec<Record> {
            let r = zone.records.iter();
            r.filter(|r| r.name() == n && r.record_type() == t)
                .cloned()
                .collect()
        };
        m.add_answers(held(query.name(), query.query_type()));
        if m.answers().is_empty() {
            if !zone.records.iter().any(|r| r.name() == query.name()) {
                m.set_response_code(ResponseCode::NXDomain);
            }
            m.add_name_server(soa());
        }
        if zone.glue {
            for host in ns_names(&m.clone()) {
                m.add_additionals(held(&host, RecordType::A));
                m.add_additionals(held(&host, RecordType::AAAA));
            }
        }
        m
    }

    /// Serves `zone` on `socket` until the test ends.
    fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let request = Message::from_vec(&buf[..n]).unwrap();
                let query = request.queries()[0].clone();
                let mut response = {
                    let mut zone = zone.lock().unwrap();
                    zone.asked.push((query.name().clone(), query.query_type()));
                    respond(&zone, &query)
                };
                response
                    .set_id(request.id())
                    .set_op_code(request.op_code())
                    .set_recursion_desired(request.recursion_desired())
                    .add_query(query);
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
    }

    /// Servers for `zones` on 127.0.0.1, 127.0.0.2, ... all on one port (as
    /// authoritative servers share port 53).
    async fn servers(zones: &[&Arc<Mutex<Zone>>]) -> (Vec<SocketAddr>, u16) {
        'port: for _ in 0..50 {
            let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut sockets = vec![first];
            for i in 2..=zones.len() {
                match UdpSocket::bind(format!("127.0.0.{i}:{port}")).await {
                    Ok(s) => sockets.push(s),
                    Err(_) => continue 'port,
                }
            }
            let addrs = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
            for (socket, zone) in sockets.into_iter().zip(zones) {
                serve(socket, Arc::clone(zone));
            }
            return (addrs, port);
        }
        panic!("no port free on 127.0.0.1 and 127.0.0.2");
    }

    fn zone(records: Vec<Record>) -> Arc<Mutex<Zone>> {
        Arc::new(Mutex::new(Zone {
            records,
            ..Zone::default()
        }))
    }

    fn dns(recursive: Vec<SocketAddr>, ns_port: u16) -> Dns {
        Dns {
            recursive,
            ns_port,
            timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn servfail_and_refused_ask_the_next_server() {
        assert!(definite(ResponseCode::NoError));
        assert!(definite(ResponseCode::NXDomain));
        assert!(!definite(ResponseCode::ServFail));
        assert!(!definite(ResponseCode::Refused));
    }

    #[test]
    fn the_verdict_names_every_server_that_lacks_the_value() {
        let ok = ResponseCode::NoError;
        let both = [
            answer("ns1.t.test at 192.0.2.1:53", true, ok),
            answer("ns2.t.test at [2001:db8::2]:53", true, ok),
        ];
        assert_eq!(verdict(RECORD, &both), None);
        let one = [
            answer("ns1.t.test at 192.0.2.1:53", true, ok),
            answer("ns2.t.test at [2001:db8::2]:53", false, ok),
        ];
        assert_eq!(
            verdict(RECORD, &one).as_deref(),
            Some(
                "waiting for _acme-challenge.www.t.test TXT to be served by \
                 ns2.t.test at [2001:db8::2]:53 (1 of 2 nameservers serve it)"
            )
        );
        let none = [
            answer("192.0.2.53:53", false, ResponseCode::ServFail),
            answer("192.0.2.54:53", false, ok),
        ];
        assert_eq!(
            verdict(RECORD, &none).as_deref(),
            Some(
                "waiting for _acme-challenge.www.t.test TXT to be served by \
                 192.0.2.53:53 (answered SERVFAIL), 192.0.2.54:53"
            )
        );
        assert!(verdict(RECORD, &[]).is_some(), "nobody asked is not served");
    }

    #[test]
    fn glue_and_lookups_give_both_families_of_the_host_only() {
        let records = [
            a("ns1.t.test", "192.0.2.1"),
            aaaa("NS1.t.test", "2001:db8::1"),
            a("ns2.t.test", "192.0.2.2"),
            txt("x"),
        ];
        let host = name("ns1.t.test");
        assert_eq!(
            addresses(&records, &host, RecordType::A),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            addresses(&records, &host, RecordType::AAAA),
            ["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn the_zone_is_the_soa_in_answer_or_authority_and_ns_names_are_unique() {
        let mut m = Message::new();
        m.add_name_server(soa());
        assert_eq!(zone_of(&m), Some(name(ZONE)));
        m.add_answers([ns("ns1.t.test"), ns("ns2.t.test"), ns("NS1.t.test")]);
        assert_eq!(ns_names(&m), [name("ns1.t.test"), name("ns2.t.test")]);
        assert_eq!(zone_of(&Message::new()), None);
        let with = |strings: &[&str]| {
            let mut m = Message::new();
            let strings: Vec<String> = strings.iter().map(|s| s.to_string()).collect();
            m.add_answer(rec(RECORD, RData::TXT(TXT::new(strings))));
            m
        };
        assert!(serves(&with(&["v"]), &|s: &str| s == "v"));
        assert!(!serves(&with(&["v"]), &|s: &str| s == "w"));
        // A long value split into character-strings is read joined.
        assert!(serves(&with(&["ab", "cd"]), &|s: &str| s == "abcd"));
    }

    fn delegation(ns2: Record) -> Vec<Record> {
        vec![
            soa(),
            ns("ns1.t.test"),
            ns("ns2.t.test"),
            a("ns1.t.test", "127.0.0.1"),
            ns2,
        ]
    }

    #[tokio::test]
    async fn the_ns_lookup_follows_each_name_to_its_aaaa_and_a_records() {
        let resolver = zone(delegation(aaaa("ns2.t.test", "::1")));
        let (addrs, port) = servers(&[&resolver]).await;
        let found = dns(addrs.clone(), 5300)
            .authoritative(&name(RECORD))
            .await
            .unwrap();
        let server = |n: &str, a: &str| Server {
            name: n.into(),
            addrs: vec![a.parse().unwrap()],
        };
        let want = [
            server("ns1.t.test", "127.0.0.1:5300"),
            server("ns2.t.test", "[::1]:5300"),
        ];
        assert_eq!(found, want);
        let asked = std::mem::take(&mut resolver.lock().unwrap().asked);
        assert!(
            asked.contains(&(name("ns2.t.test"), RecordType::AAAA)),
            "{asked:?}"
        );
        // With glue in the NS answer, no address is looked up.
        resolver.lock().unwrap().glue = true;
        let found = dns(addrs, 5300).authoritative(&name(RECORD)).await.unwrap();
        assert_eq!(found, want);
        let asked = &resolver.lock().unwrap().asked;
        let types: Vec<RecordType> = asked.iter().map(|(_, t)| *t).collect();
        assert_eq!(types, [RecordType::SOA, RecordType::NS], "port {port}");
    }

    #[tokio::test]
    async fn a_value_missing_on_one_of_two_servers_is_not_served_yet() {
        let mut records = delegation(a("ns2.t.test", "127.0.0.2"));
        let ns2 = zone(records.clone());
        records.push(txt("token"));
        let ns1 = zone(records);
        let (_, port) = servers(&[&ns1, &ns2]).await;
        let dns = dns(vec![SocketAddr::from(([127, 0, 0, 1], port))], port);
        let why = dns
            .missing(RECORD, &|s: &str| s == "token", false)
            .await
            .unwrap();
        let why = why.expect("ns2 lacks the value");
        assert!(
            why.contains(&format!(
                "ns2.t.test at 127.0.0.2:{port} (answered NXDOMAIN)"
            )),
            "{why}"
        );
        assert!(
            why.contains("1 of 2") && !why.contains("ns1.t.test"),
            "{why}"
        );
        ns2.lock().unwrap().records.push(txt("token"));
        assert_eq!(
            dns.missing(RECORD, &|s: &str| s == "token", false)
                .await
                .unwrap(),
            None
        );
        assert!(
            ns2.lock()
                .unwrap()
                .asked
                .contains(&(name(RECORD), RecordType::TXT))
        );
    }

    #[tokio::test]
    async fn lookups_fall_over_to_the_next_resolver_and_a_definite_answer_wins() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let failing = zone(Vec::new());
        failing.lock().unwrap().code = Some(ResponseCode::ServFail);
        let good = zone(vec![
            soa(),
            rec(
                RECORD,
                RData::CNAME(hickory_client::proto::rr::rdata::CNAME(name("x.t.test"))),
            ),
        ]);
        let (f, _) = servers(&[&failing]).await;
        let (g, _) = servers(&[&good]).await;
        let resolvers = vec![silent.local_addr().unwrap(), f[0], g[0]];
        let target = dns(resolvers.clone(), 53)
            .follow_cname(RECORD)
            .await
            .unwrap();
        assert_eq!(target, "x.t.test.");
        // Asked once per step: the record's CNAME, then the target's (none).
        assert_eq!(failing.lock().unwrap().asked.len(), 2);
        // Only resolvers that fail: the last answer stands, so the lookup reads as failed.
        let err = dns(resolvers[..2].to_vec(), 53)
            .authoritative(&name(RECORD))
            .await;
        assert!(matches!(err, Err(DnsError::Config(m)) if m.contains("no zone")));
        let err = dns(resolvers[..1].to_vec(), 53).follow_cname(RECORD).await;
        assert!(matches!(err, Err(DnsError::Unreachable { server, .. }) if server == resolvers[0]));
    }

    #[tokio::test]
    async fn recursive_only_asks_every_resolver() {
        let with = zone(vec![soa(), txt("token")]);
        let without = zone(vec![soa()]);
        let (w, _) = servers(&[&with]).await;
        let (wo, _) = servers(&[&without]).await;
        let dns = dns(vec![w[0], wo[0]], 53);
        let why = dns
            .missing(RECORD, &|s: &str| s == "token", true)
            .await
            .unwrap()
            .expect("one lacks it");
        assert!(
            why.contains(&format!("by {} (answered NXDOMAIN) (1 of 2", wo[0])),
            "{why}"
        );
        without.lock().unwrap().records.push(txt("token"));
        assert_eq!(
            dns.missing(RECORD, &|s: &str| s == "token", true)
                .await
                .unwrap(),
            None
        );
    }
}
