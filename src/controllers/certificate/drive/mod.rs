//! Driving one ACME order: resume the order in status (or create one), then carry out
//! the steps the state machine ([`crate::decide::order::next_step`]) names, as far as the CA
//! allows without waiting.

mod place;

use place::*;
use std::time::Duration;

use instant_acme::{CertificateIdentifier, Identifier, NewOrder, Order};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use rustls_pki_types::CertificateDer;

use super::failure::{FailedStep, Failure};
use super::outcome::Progress;
use super::secret::{ANNOTATION_ISSUER, leaf_der};
use super::status::{Reason, StatusWriter};
use super::{key_of, keys, present};
use crate::api::certificate::OrderStatus;
use crate::api::{Certificate, ChallengeState, ChallengeType, IssuerName, OrderState, Time};
use crate::controllers::Context;
use crate::decide::Request;
use crate::decide::order::{self, AuthzView, OrderView, Step};
use crate::pki;
use crate::shared::IssuerHandle;
use crate::solvers::{select_solver, solver_kind};

/// What one pass needs.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub cert: &'a Certificate,
    pub issuer: &'a IssuerHandle,
    pub account: &'a crate::acme::AcmeAccount,
    pub request: &'a Request,
    pub tls: Option<&'a Secret>,
    /// Why a certificate is issued: reason and message, for the log.
    pub why: (Reason, &'a str),
}

/// Takes as many steps of the order as the CA allows without waiting.
pub async fn drive(p: &Pass<'_>, w: &mut StatusWriter<'_>) -> Result<Progress, Failure> {
    let mut order = match resume(p, w).await? {
        Some(o) => o,
        None => create(p, w).await?,
    };
    // The key sent with the CSR in this pass (the next pass reads it back).
    let mut key: Option<String> = None;
    let mut waited = false;
    loop {
        let state: OrderState = order.state().status.into();
        if let Some(o) = w.status.order.as_mut() {
            o.state = state;
        }
        let authzs = match state {
            OrderState::Pending | OrderState::Invalid => authorizations(&mut order).await?,
            _ => Vec::new(),
        };
        let view = OrderView {
            status: state,
            error: order.state().error.as_ref().map(order::Problem::from),
        };
        let choose = |name: &str| choose(p, name);
        match order::next_step(&view, &authzs, &choose) {
            Step::Validate(chosen) => {
                return present::present(p.ctx, p.cert, p.issuer, &mut order, w, &chosen).await;
            }
            Step::Finalize if key.is_none() => {
                key = Some(finalize(p, &mut order).await?);
            }
            // Right after finalize a quick CA issues within moments: look once more.
            Step::AwaitIssuance if key.is_some() && !waited => {
                let wait = p.ctx.stats.take_retry_after(order.url());
                if wait.is_some_and(|w| w > Duration::from_secs(2)) {
                    return Ok(Progress::Wait {
                        retry_after: wait,
                        floor: Duration::from_millis(300),
                    });
                }
                tokio::time::sleep(wait.unwrap_or(Duration::from_millis(300))).await;
                order
                    .refresh()
                    .await
                    .map_err(Failure::from_acme(FailedStep::Order))?;
                waited = true;
            }
            Step::Finalize | Step::AwaitIssuance => {
                return Ok(Progress::Wait {
                    retry_after: p.ctx.stats.take_retry_after(order.url()),
                    floor: Duration::from_millis(300),
                });
            }
            Step::Download => return download(p, &mut order, key).await,
            Step::Fail(f) => {
                record_errors(w, &authzs);
                return Err(Failure::order(f));
            }
        }
    }
}

/// The challenge type the issuer proves `name` with.
fn choose(p: &Pass<'_>, name: &str) -> Result<ChallengeType, order::OrderFailure> {
    let solvers = &p.issuer.spec.solvers;
    let Some(index) = select_solver(solvers, name, p.cert.labels()) else {
        let hint = if name.starts_with("*.") {
            " (wildcards need a dns01 solver)"
        } else {
            ""
        };
        return Err(order::OrderFailure::new(
            Reason::NoSolver,
            format!("no solver of {} matches {name}{hint}", p.issuer.display()),
        ));
    };
    let kind = solver_kind(&solvers[index])
        .map_err(|e| order::OrderFailure::new(Reason::InvalidSpec, e))?;
    if kind.is_dns() && name.parse::<std::net::IpAddr>().is_ok() {
        return Err(order::OrderFailure::new(
            Reason::NoSolver,
            format!(
                "{name} is an IP address, which DNS-01 cannot prove: give {} an http01 or tlsAlpn01 solver whose selector matches it",
                p.issuer.display()
            ),
        ));
    }
    Ok(kind)
}

async fn authorizations(order: &mut Order) -> Result<Vec<AuthzView>, Failure> {
    let mut views = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let authz = authz.map_err(Failure::from_acme(FailedStep::Order))?;
        views.push(AuthzView::from(&*authz));
    }
    Ok(views)
}

/// The CA's errors, on the challenges status records.
fn record_errors(w: &mut StatusWriter<'_>, authzs: &[AuthzView]) {
    let Some(order) = w.status.order.as_mut() else {
        return;
    };
    for ch in authzs.iter().flat_map(|a| &a.challenges) {
        if let Some(e) = &ch.error
            && let Some(rec) = (order.challenges.iter_mut())
                .find(|c| c.token == ch.token && Some(c.type_) == ch.type_)
        {
            rec.state = ChallengeState::Invalid;
            rec.error = Some(e.text());
            rec.waiting_for_dns = false;
        }
    }
}

/// The order in status, if it is for this request and the CA still has it. An order that
/// cannot be resumed has its challenges cleaned up and is forgotten.
async fn resume(p: &Pass<'_>, w: &mut StatusWriter<'_>) -> Result<Option<Order>, Failure> {
    let Some(known) = w.status.order.clone() else {
        return Ok(None);
    };
    if known.request_hash == p.request.hash && known.state != OrderState::Invalid {
        match p.account.order(known.url.clone()).await {
            Ok(o) => return Ok(Some(o)),
            Err(instant_acme::Error::Api(problem))
                if problem.status == Some(404)
                    || problem
                        .r#type
                        .as_deref()
                        .is_some_and(|t| t.ends_with(":malformed")) =>
            {
                tracing::info!(certificate = %key_of(p.cert), ?problem, "the stored order is gone; starting a new one");
            }
            Err(e) => return Err(Failure::from_acme(FailedStep::Order)(e)),
        }
    }
    // An order placed with another issuer (a fallback switch) is cleaned up with its own.
    let placed_with = match &known.issuer {
        Some(n) if !p.issuer.is(n) => issuer_named(p, n).await,
        _ => None,
    };
    let issuer = placed_with.as_ref().unwrap_or(p.issuer);
    present::cleanup(p.ctx, p.cert, issuer, &known.challenges).await;
    w.status.order = None;
    Ok(None)
}

/// The issuer `name` names, if it exists.
async fn issuer_named(p: &Pass<'_>, name: &IssuerName) -> Option<IssuerHandle> {
    let r = crate::api::certificate::IssuerRef {
        name: name.name.clone(),
        kind: Some(name.kind.as_str().to_string()),
    };
    p.ctx
        .stores
        .issuer_by_ref(p.cert, &r, &p.ctx.settings)
        .await
        .ok()
        .flatten()
}

/// Sends the CSR, made with the order's key (kept before it is used); returns the key.
async fn finalize(p: &Pass<'_>, order: &mut Order) -> Result<String, Failure> {
    let key_pem = keys::next(p.ctx, p.cert, p.request, p.tls).await?;
    let r = p.request;
    let csr = pki::csr_der(
        &key_pem,
        &r.dns_names,
        &r.ip_addresses,
        r.common_name.as_deref(),
    )
    .map_err(|e| Failure::new(FailedStep::Keys, Reason::InvalidSpec, e.to_string(), true))?;
    match order.finalize_csr(&csr).await {
        Ok(()) => Ok(key_pem),
        // A finalize the CA already took (its answer was lost and the request sent
        // again): the order has moved on; look at it again.
        Err(instant_acme::Error::Api(problem))
            if problem
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":orderNotReady")) =>
        {
            order
                .refresh()
                .await
                .map(|_| key_pem)
                .map_err(Failure::from_acme(FailedStep::Order))
        }
        Err(e) => Err(Failure::from_acme(FailedStep::Order)(e)),
    }
}

/// The chain of a valid order: with `preferredChain`, the CA's alternates are fetched too
/// (instant-acme 0.8.5 ignores `Link: rel="alternate"`) and the preferred one taken.
async fn fetch_chain(p: &Pass<'_>, order: &mut Order) -> Result<String, Failure> {
    let fail = |reason, message: String| Failure::new(FailedStep::Download, reason, message, true);
    let chain = match p.issuer.spec.preferred_chain.as_deref().map(str::trim) {
        // The alternate chains need a download of our own (instant-acme 0.8.5 ignores
        // `Link: rel="alternate"`).
        Some(preferred) if !preferred.is_empty() => {
            let url = order.state().certificate.clone().ok_or_else(|| {
                fail(
                    Reason::AcmeError,
                    "the CA gave no certificate URL for a valid order".into(),
                )
            })?;
            let mut chains = p
                .account
                .direct
                .chains(&url)
                .await
                .map_err(Failure::from_acme(FailedStep::Download))?;
            let index = pki::preferred_chain(&chains, preferred);
            tracing::debug!(certificate = %key_of(p.cert), offered = chains.len(), index, "chose a chain for preferredChain {preferred:?}");
            chains.swap_remove(index)
        }
        _ => order
            .certificate()
            .await
            .map_err(Failure::from_acme(FailedStep::Download))?
            .ok_or_else(|| {
                fail(
                    Reason::AcmeError,
                    "the CA sent no certificate for a valid order".into(),
                )
            })?,
    };
    Ok(chain)
}

/// Downloads the chain and checks it against the kept key and the requested names:
/// never write a Secret that the next look would reject.
async fn download(
    p: &Pass<'_>,
    order: &mut Order,
    key: Option<String>,
) -> Result<Progress, Failure> {
    let fail = |reason, message: String| Failure::new(FailedStep::Download, reason, message, true);
    let chain = fetch_chain(p, order).await?;
    let key_pem = match key {
        Some(k) => Some(k),
        None => keys::existing(p.ctx, p.cert, p.request, p.tls).await?,
    };
    let Some(key_pem) = key_pem else {
        return Err(fail(
            Reason::KeyLost,
            "the private key for this order is gone (its Secret was deleted); starting over".into(),
        ));
    };
    let info = pki::parse_chain(&chain).map_err(|e| {
        fail(
            Reason::InvalidCertificate,
            format!("the CA sent an unreadable certificate: {e}"),
        )
    })?;
    if !pki::key_matches(&key_pem, &info) {
        return Err(fail(
            Reason::CertificateMismatch,
            "the issued certificate is not for this order's key; starting over".into(),
        ));
    }
    let mut got: Vec<String> = info
        .dns_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let mut want = p.request.dns_names.clone();
    got.sort();
    want.sort();
    let mut got_ips = info.ip_addresses.clone();
    let mut want_ips = p.request.ip_addresses.clone();
    got_ips.sort();
    want_ips.sort();
    if got != want || got_ips != want_ips {
        return Err(fail(
            Reason::CertificateMismatch,
            format!(
                "the CA issued names {got:?} and IP addresses {got_ips:?}, not the requested {want:?} and {want_ips:?}"
            ),
        ));
    }
    Ok(Progress::Issued {
        chain,
        key_pem,
        info,
    })
}
