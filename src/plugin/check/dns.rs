//! `check issuer --dns NAME`: the solver the issuer picks for NAME publishes a TXT record
//! at `_acme-challenge.NAME` with a random value (through the same code as a real
//! challenge: provider, CNAME strategy, propagation check), waits until it is served,
//! and removes it.

use std::time::{Duration, Instant};

use crate::api::issuer::SolverConfig;
use crate::shared::settings::Resolvers;
use crate::solvers::{Challenge, Readiness, SolveEnv, Solver};

/// The round trip through the solver that serves `dns_name`; how long until it was
/// served, in words.
pub async fn round_trip(
    client: &kube::Client,
    handle: &crate::shared::IssuerHandle,
    dns_name: &str,
    resolvers: Resolvers,
    wait: Duration,
) -> Result<String, String> {
    let solvers = &handle.spec.solvers;
    let i = crate::solvers::select_solver(solvers, dns_name, &Default::default())
        .ok_or_else(|| format!("no solver of the issuer matches {dns_name}"))?;
    let config = &solvers[i];
    if config.dns01.is_none() {
        return Err(format!(
            "solvers[{i}] serves {dns_name} and is not dns01: nothing to write"
        ));
    }
    let random: String = (0..24)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let challenge = Challenge {
        dns_name,
        token: "caas-check",
        key_authorization: &random,
    };
    let served = publish_test_record(client, handle, config, challenge, resolvers, wait).await?;
    Ok(format!(
        "solvers[{i}] wrote _acme-challenge.{dns_name} TXT, served after {:.1}s, removed",
        served.as_secs_f64()
    ))
}

/// Publishes the challenge's TXT record through `config`, waits until it is served (at
/// most `wait`) and removes it; how long it took to be served.
///
/// The solvers get what they always get (client, settings, an event recorder) and a
/// Certificate that exists only here (the record is published without its cleanup
/// guard, and removed below).
async fn publish_test_record(
    client: &kube::Client,
    handle: &crate::shared::IssuerHandle,
    config: &SolverConfig,
    challenge: Challenge<'_>,
    resolvers: Resolvers,
    wait: Duration,
) -> Result<Duration, String> {
    let settings = crate::shared::settings::SolverSettings {
        solver_endpoint: crate::shared::settings::SolverEndpoint { ip: None, port: 0 },
        dns01_resolvers: resolvers,
        // The user's own identity, in the user's own shell.
        ambient_credentials: crate::shared::settings::AmbientCredentials {
            issuers: true,
            cluster_issuers: true,
        },
    };
    let events = crate::shared::events::Recorder::new(client.clone(), "kubectl-caas", None);
    let mut cert = crate::api::Certificate::new(
        "caas-check",
        crate::api::CertificateSpec {
            dns_names: vec![challenge.dns_name.to_string()],
            ..Default::default()
        },
    );
    cert.metadata.namespace = Some(handle.secret_namespace.clone());
    let env = SolveEnv {
        deps: crate::solvers::Deps {
            client,
            settings: &settings,
            events: &events,
            memory: &crate::shared::memory::Memory::default(),
            http01: &Default::default(),
            index: &Default::default(),
        },
        cert: &cert,
        issuer: handle,
        config,
    };
    crate::solvers::dns01::publish_unguarded(&env, challenge)
        .await
        .map_err(|e| format!("writing the TXT record: {e}"))?;
    let served = until_served(&env, challenge, wait).await;
    let removed = crate::solvers::dns01::Dns01.cleanup(&env, challenge).await;
    let served = served?;
    removed.map_err(|e| format!("the record was served but could not be removed: {e}"))?;
    Ok(served)
}

/// Asks the solver every 2 s whether the record is served, at most `wait`.
async fn until_served(
    env: &SolveEnv<'_>,
    challenge: Challenge<'_>,
    wait: Duration,
) -> Result<Duration, String> {
    let dns = crate::solvers::dns01::Dns01;
    let started = Instant::now();
    loop {
        match dns.ready(env, challenge).await {
            Ok(Readiness::Ready) => return Ok(started.elapsed()),
            Ok(Readiness::Waiting(_)) if started.elapsed() < wait => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(Readiness::Waiting(what)) => return Err(format!("after {wait:?}: {what}")),
            Err(e) => return Err(e.to_string()),
        }
    }
}
