//! Placing a new order: its identifiers, profile, notAfter (and what a CA that refuses
//! a requested lifetime says), ARI's `replaces`, and the account-wide rate-limit pause.

use super::*;

pub(super) fn new_order<'a>(p: &Pass<'a>, identifiers: &'a [Identifier]) -> NewOrder<'a> {
    let new = NewOrder::new(identifiers);
    match profile(p) {
        Some(profile) => new.profile(profile),
        None => new,
    }
}

/// The profile to order with: the Certificate's, else the issuer's.
fn profile<'a>(p: &Pass<'a>) -> Option<&'a str> {
    (p.request.profile.as_deref()).or(p.issuer.spec.profile.as_deref())
}

/// A Certificate's own profile that the CA's directory does not offer: refused before
/// any order (the issuer's own profile is checked by the issuer controller).
fn profile_refused(p: &Pass<'_>) -> Option<Failure> {
    let wanted = p.request.profile.as_deref()?;
    let offered: Vec<(String, String)> = (p.account.profiles())
        .map(|o| (o.name.to_string(), o.description.to_string()))
        .collect();
    let message = crate::decide::profile_problem(Some(wanted), &offered)?;
    let message = message.replace("from the issuer", "from the Certificate");
    Some(Failure::new(
        FailedStep::Order,
        Reason::UnknownProfile,
        message,
        false,
    ))
}

/// The `notAfter` to ask for: now + `duration`, when the issuer turned the duration
/// feature on (off by default, as in cert-manager: many CAs refuse notAfter).
pub(super) fn not_after(p: &Pass<'_>, now: Timestamp) -> Option<Timestamp> {
    if p.issuer.spec.enable_duration_feature != Some(true) {
        return None;
    }
    let d = p.request.duration?;
    Timestamp::from_second(now.as_second().saturating_add(d.as_secs())).ok()
}

/// Places a new order, with `replaces` when given and `notAfter` when a duration is set
/// (sent by [`crate::acme::Direct`]: instant-acme 0.8.5's `NewOrder` has no notAfter).
pub(super) async fn place(
    p: &Pass<'_>,
    identifiers: &[Identifier],
    replaces: Option<&CertificateIdentifier<'static>>,
) -> Result<Order, instant_acme::Error> {
    let Some(not_after) = not_after(p, p.ctx.memory.wall_now()) else {
        let new = new_order(p, identifiers);
        let new = match replaces {
            Some(id) => new.replaces(id.clone()),
            None => new,
        };
        return p.account.new_order(&new).await;
    };
    let mut payload = serde_json::json!({
        "identifiers": identifiers,
        "notAfter": not_after.to_string(),
    });
    if let Some(profile) = profile(p) {
        payload["profile"] = profile.into();
    }
    if let Some(id) = replaces {
        payload["replaces"] = id.to_string().into();
    }
    let url = p.account.direct.new_order(&payload).await?;
    p.account.order(url).await
}

/// Whether a CA's problem (status, detail) refuses the requested lifetime: a client error
/// that talks about it (Let's Encrypt: "NotBefore and NotAfter are not supported").
pub(super) fn refuses_lifetime(kind: Option<&str>, detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase().replace([' ', '_', '-'], "");
    kind.is_some_and(|t| {
        t.ends_with(":malformed")
            || t.ends_with(":rejectedIdentifier")
            || t.ends_with(":unsupported")
    }) && (lower.contains("notafter") || lower.contains("notbefore"))
}

#[cfg(test)]
#[test]
pub(super) fn lifetime_refusals_are_recognised() {
    let malformed = Some("urn:ietf:params:acme:error:malformed");
    assert!(refuses_lifetime(
        malformed,
        "NotBefore and NotAfter are not supported"
    ));
    assert!(refuses_lifetime(
        malformed,
        "not_after is beyond the maximum validity"
    ));
    assert!(!refuses_lifetime(malformed, "malformed JWS"));
    assert!(!refuses_lifetime(
        Some("urn:ietf:params:acme:error:rateLimited"),
        "too many notAfter orders"
    ));
    assert!(!refuses_lifetime(None, "notAfter service down"));
}

/// A CA's refusal of the order's `notAfter`, as a reason the user can act on.
pub(super) fn duration_refused(p: &Pass<'_>, e: &instant_acme::Error) -> Option<Failure> {
    let instant_acme::Error::Api(problem) = e else {
        return None;
    };
    let detail = problem.detail.as_deref().unwrap_or_default();
    if not_after(p, p.ctx.memory.wall_now()).is_none()
        || !refuses_lifetime(problem.r#type.as_deref(), detail)
    {
        return None;
    }
    Some(Failure::new(
        FailedStep::Order,
        Reason::DurationNotSupported,
        format!(
            "the CA refused the requested lifetime (spec.duration, sent as the order's notAfter): {detail}; \
             remove spec.duration, or remove enableDurationFeature: true from the issuer (off by default) to take the CA's default lifetime"
        ),
        true,
    ))
}

/// New orders of the account are paused (a rate limit, restored from the issuer's status
/// after a restart): nothing is sent, and the failure says when they resume.
fn paused(p: &Pass<'_>) -> Option<Failure> {
    super::super::rate_limit::restore(p.ctx, p.issuer, p.account.id());
    let wait = p.ctx.memory.account_paused(p.account.id())?;
    let resumes = p.ctx.memory.wall_now() + SignedDuration::try_from(wait).unwrap_or_default();
    let mut f = Failure::new(
        FailedStep::Order,
        Reason::RateLimited,
        format!(
            "the CA rate-limited the ACME account of {}: new orders resume at {}",
            p.issuer.display(),
            resumes.round(jiff::Unit::Second).unwrap_or(resumes)
        ),
        false,
    );
    f.paused = Some(wait);
    Some(f)
}

/// A new order (naming the certificate it replaces, for renewals), persisted in status
/// before anything else: a restart resumes it.
pub(super) async fn create(p: &Pass<'_>, w: &mut StatusWriter<'_>) -> Result<Order, Failure> {
    if let Some(stop) = paused(p).or_else(|| profile_refused(p)) {
        return Err(stop);
    }
    let identifiers: Vec<Identifier> = p
        .request
        .dns_names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .chain(p.request.ip_addresses.iter().map(|ip| Identifier::Ip(*ip)))
        .collect();
    // A renewal names the certificate it replaces (ARI, RFC 9773), so the CA can exempt
    // it from rate limits; a CA that refuses gets a plain order.
    let replaces = p
        .tls
        .filter(|s| s.annotations().get(ANNOTATION_ISSUER) == Some(&p.issuer.display()))
        .and_then(leaf_der)
        .and_then(|der| {
            CertificateIdentifier::try_from(&CertificateDer::from(der.as_slice()))
                .ok()
                .map(|id| id.into_owned())
        });
    let failed = |e: instant_acme::Error| {
        duration_refused(p, &e).unwrap_or_else(|| Failure::from_acme(FailedStep::Order)(e))
    };
    let order = match replaces {
        Some(id) => match place(p, &identifiers, Some(&id)).await {
            Ok(o) => {
                tracing::info!(certificate = %key_of(p.cert), replaces = %id, "renewal order names the certificate it replaces");
                o
            }
            // Only a refusal of the request itself (not a rate limit or an outage) is
            // retried without `replaces`.
            Err(instant_acme::Error::Api(problem))
                if !problem
                    .r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":rateLimited"))
                    && problem.status.is_none_or(|s| s < 500) =>
            {
                tracing::info!(certificate = %key_of(p.cert), ?problem, "the CA refused `replaces`; ordering without it");
                place(p, &identifiers, None).await.map_err(failed)?
            }
            Err(e) => return Err(failed(e)),
        },
        None => place(p, &identifiers, None).await.map_err(failed)?,
    };
    w.status.order = Some(OrderStatus {
        url: order.url().to_string(),
        issuer: Some(p.issuer.issuer_name()),
        state: OrderState::Pending,
        request_hash: p.request.hash.clone(),
        challenges: Vec::new(),
        state_since: Some(Time(p.ctx.memory.wall_now())),
    });
    w.save().await.map_err(|e| {
        Failure::new(
            FailedStep::Order,
            Reason::KubernetesError,
            e.to_string(),
            false,
        )
    })?;
    tracing::info!(certificate = %key_of(p.cert), reason = p.why.0.as_str(), order = %order.url(), "created an ACME order: {}", p.why.1);
    Ok(order)
}
