//! Challenge presentation and cleanup, through the issuer's solvers (the [`Solver`]
//! trait): publish each challenge in status first (every replica answers from there, and
//! cleanup knows what to remove), put the answers in place, and tell the CA to validate
//! those it can see.

use std::time::Duration;

use instant_acme::Order;
use kube::ResourceExt;

use super::failure::{FailedStep, Failure};
use super::key_of;
use super::outcome::Progress;
use super::status::StatusWriter;
use crate::api::certificate::{CertificateStatus, ChallengeStatus};
use crate::api::issuer::SolverConfig;
use crate::api::{Certificate, ChallengeState, ChallengeType};
use crate::controllers::Context;
use crate::decide::order::Chosen;
use crate::shared::IssuerHandle;
use crate::solvers::{self, Challenge, Readiness, SolveEnv, Solver, select_solver};

/// Inserts or replaces the record of a challenge (by token) in status.
pub fn upsert(status: &mut CertificateStatus, rec: ChallengeStatus) {
    if let Some(order) = status.order.as_mut() {
        match order.challenges.iter_mut().find(|c| c.token == rec.token) {
            Some(old) => *old = rec,
            None => order.challenges.push(rec),
        }
    }
}

/// The issuer's solver entry for a name (the state machine already checked one exists).
fn config<'a>(
    issuer: &'a IssuerHandle,
    cert: &Certificate,
    name: &str,
) -> Option<&'a SolverConfig> {
    select_solver(&issuer.spec.solvers, name, cert.labels()).map(|i| &issuer.spec.solvers[i])
}

fn challenge(rec: &ChallengeStatus) -> Challenge<'_> {
    Challenge {
        dns_name: &rec.dns_name,
        token: &rec.token,
        key_authorization: &rec.key,
    }
}

/// The dns-persist-01 record value for the challenge of the authorization at `url`: its
/// `issuer-domain-names` (read here: instant-acme 0.8 drops the field) or the solver's
/// `issuerDomainName`, and the account URI.
async fn persist_value(
    (ctx, cert, issuer): (&Context, &Certificate, &IssuerHandle),
    url: &str,
    name: &str,
) -> Result<String, Failure> {
    use crate::solvers::dns01::persist;
    let invalid = |m: String| {
        Failure::new(
            FailedStep::Present,
            super::status::Reason::InvalidSpec,
            m,
            true,
        )
    };
    let cfg = config(issuer, cert, name)
        .and_then(|c| c.dns_persist01.as_ref())
        .ok_or_else(|| invalid(format!("no dnsPersist01 solver matches {name}")))?;
    let account = ctx
        .accounts
        .get(ctx, issuer)
        .await
        .map_err(Failure::account)?;
    let answer = (account.direct.post(url, None, false).await)
        .map_err(Failure::from_acme(FailedStep::Present))?;
    let authz: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let challenge = (authz["challenges"].as_array().into_iter().flatten())
        .find(|c| c["type"] == ChallengeType::DnsPersist01.as_str())
        .cloned()
        .unwrap_or_default();
    let domain = persist::issuer_domain_name(cfg, &challenge).map_err(invalid)?;
    let until = cfg.persist_until.as_ref().map(|t| t.0);
    // A name whose wildcard the Certificate also has gets the wildcard record: it covers
    // both, so one record serves the pair.
    let wildcard_too = format!("*.{name}");
    let wildcard = name.starts_with("*.")
        || (cert.spec.dns_names.iter()).any(|n| n.eq_ignore_ascii_case(&wildcard_too));
    Ok(persist::record_value(
        &domain,
        account.id(),
        wildcard,
        until,
    ))
}

/// The key authorizations of the chosen challenges (computed with the account key); for
/// dns-persist-01 the record's value (kept from status once known).
async fn records(
    at: (&Context, &Certificate, &IssuerHandle),
    known: &CertificateStatus,
    order: &mut Order,
    chosen: &[Chosen],
) -> Result<Vec<ChallengeStatus>, Failure> {
    let mut recs = Vec::new();
    let mut authzs = order.authorizations();
    let mut i = 0;
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(Failure::from_acme(FailedStep::Present))?;
        let url = authz.url().to_string();
        if let Some(c) = chosen.iter().find(|c| c.authz == i)
            && let Some(handle) = authz.challenge(c.type_.to_acme())
        {
            let mut key = handle.key_authorization().as_str().to_string();
            if c.type_ == ChallengeType::DnsPersist01 {
                let before = (known.order.iter().flat_map(|o| &o.challenges))
                    .find(|r| r.token == c.token && r.type_ == c.type_);
                key = match before {
                    Some(r) => r.key.clone(),
                    None => persist_value(at, &url, &c.name).await?,
                };
            }
            recs.push(ChallengeStatus {
                type_: c.type_,
                dns_name: c.name.clone(),
                token: c.token.clone(),
                key,
                state: c.status,
                error: None,
                waiting_for_dns: false,
            });
        }
        i += 1;
    }
    Ok(recs)
}

/// Tells the CA to validate these challenges (type and token: a CA may give every
/// challenge of an authorization the same token, as Boulder does; a tokenless
/// dns-persist-01 challenge is named by its URL).
async fn set_ready(order: &mut Order, ready: &[(ChallengeType, String)]) -> Result<(), Failure> {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(Failure::from_acme(FailedStep::Present))?;
        let chosen = authz.challenges.iter().find(|c| {
            let id = if c.token.is_empty() { &c.url } else { &c.token };
            let type_ = ChallengeType::from_acme(&c.r#type);
            ready
                .iter()
                .any(|(t, token)| Some(*t) == type_ && token == id)
        });
        if let Some(type_) = chosen.map(|c| c.r#type.clone())
            && let Some(mut handle) = authz.challenge(type_)
        {
            handle
                .set_ready()
                .await
                .map_err(Failure::from_acme(FailedStep::Present))?;
        }
    }
    Ok(())
}

/// Presents the chosen challenges that are still pending and asks the CA to validate
/// those in place; records them all in status.
pub async fn present(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    order: &mut Order,
    w: &mut StatusWriter<'_>,
    chosen: &[Chosen],
) -> Result<Progress, Failure> {
    let mut recs = records((ctx, cert, issuer), &w.status, order, chosen).await?;
    for rec in &recs {
        upsert(&mut w.status, rec.clone());
    }
    if !chosen.iter().any(Chosen::to_present) {
        return Ok(Progress::Wait {
            retry_after: ctx.stats.take_retry_after(order.url()),
            floor: Duration::from_millis(500),
        });
    }
    // Published first: every replica answers from status, and whatever happens next,
    // cleanup knows what was put in place.
    w.save().await.map_err(|e| {
        Failure::new(
            FailedStep::Present,
            super::status::Reason::KubernetesError,
            e.to_string(),
            false,
        )
    })?;
    let pending: Vec<&mut ChallengeStatus> = recs
        .iter_mut()
        .filter(|r| r.state == ChallengeState::Pending)
        .collect();
    for rec in &pending {
        let (solver, env) = solver_env(ctx, cert, issuer, rec)?;
        solver
            .present(&env, challenge(rec))
            .await
            .map_err(Failure::solver)?;
    }
    let mut ready = Vec::new();
    let mut waiting = false;
    for rec in pending {
        let (solver, env) = solver_env(ctx, cert, issuer, rec)?;
        match solver
            .ready(&env, challenge(rec))
            .await
            .map_err(Failure::solver)?
        {
            Readiness::Ready => {
                // Still `pending` in status: the next look records what the CA says
                // (saving a status write per order on a quick CA).
                ready.push((rec.type_, rec.token.clone()));
                rec.error = None;
                rec.waiting_for_dns = false;
            }
            Readiness::Waiting(what) => {
                waiting = true;
                rec.error = Some(what);
                rec.waiting_for_dns = rec.type_.is_dns();
            }
        }
    }
    set_ready(order, &ready).await?;
    for rec in recs {
        upsert(&mut w.status, rec);
    }
    Ok(Progress::Wait {
        retry_after: if waiting {
            None
        } else {
            ctx.stats.take_retry_after(order.url())
        },
        floor: Duration::from_millis(if waiting { 2000 } else { 500 }),
    })
}

fn solver_env<'a>(
    ctx: &'a Context,
    cert: &'a Certificate,
    issuer: &'a IssuerHandle,
    rec: &ChallengeStatus,
) -> Result<(&'static dyn Solver, SolveEnv<'a>), Failure> {
    let solver = solvers::for_type(rec.type_).ok_or_else(|| {
        Failure::new(
            FailedStep::Present,
            super::status::Reason::InvalidSpec,
            format!("no solver for {}", rec.type_),
            true,
        )
    })?;
    let config = config(issuer, cert, &rec.dns_name).ok_or_else(|| {
        Failure::new(
            FailedStep::Present,
            super::status::Reason::NoSolver,
            format!("no solver of {} matches {}", issuer.display(), rec.dns_name),
            true,
        )
    })?;
    Ok((
        solver,
        SolveEnv {
            deps: ctx.solver_deps(),
            cert,
            issuer,
            config,
        },
    ))
}

/// Removes what the order's challenges put in place, through their solvers. Returns
/// whether everything was removed. Best effort: failures are logged (and, for DNS-01,
/// reported in an event); the start-up sweep catches HTTP-01 leftovers.
pub async fn cleanup(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    challenges: &[ChallengeStatus],
) -> bool {
    let fallback = SolverConfig::default();
    let mut all_removed = true;
    for solver in solvers::SOLVERS {
        let mine: Vec<&ChallengeStatus> = challenges
            .iter()
            .filter(|c| c.type_ == solver.challenge_type())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut removed = true;
        for rec in &mine {
            let config = config(issuer, cert, &rec.dns_name).unwrap_or(&fallback);
            let env = SolveEnv {
                deps: ctx.solver_deps(),
                cert,
                issuer,
                config,
            };
            if let Err(e) = solver.cleanup(&env, challenge(rec)).await {
                tracing::warn!(certificate = %key_of(cert), error = %e, "cannot remove a {} answer", solver.challenge_type());
                removed = false;
            }
        }
        let list: Vec<Challenge<'_>> = mine.iter().map(|r| challenge(r)).collect();
        solver
            .cleaned_up(ctx.solver_deps(), cert, &list, removed)
            .await;
        all_removed &= removed;
    }
    all_removed
}
