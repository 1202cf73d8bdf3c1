//! The issuer's ACME account: its key Secret (created before registration, so a key
//! the CA knows is never lost), finding an existing account, registering with EAB, and
//! the status that reports it.

use super::*;

/// Writes a new account key Secret: the key is stored before the CA ever sees it, so a
/// registration interrupted at any point (a refused write, a restart) is retried with
/// the same key and the CA finds the account instead of making a second one.
pub(super) async fn create_key_secret(
    issuer: &IssuerHandle,
    secrets: &Api<Secret>,
) -> Result<Secret, AccountState> {
    let key = AccountKey::generate().map_err(from_error)?;
    let name = &issuer.spec.private_key_secret_ref.name;
    match secrets
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &account_key_secret(issuer, key.to_pem()),
        )
        .await
    {
        Ok(created) => Ok(created),
        // Someone (another issuer sharing the key Secret) was first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => Err(failure(
            Reason::AccountKeyRace,
            "the account key Secret was created concurrently; retrying with it".into(),
        )),
        Err(e) => Err(failure(
            Reason::SecretWriteFailed,
            format!(
                "cannot write the account key Secret {name} (nothing is registered until it is stored): {e}"
            ),
        )),
    }
}

/// The account of a key Secret (cached while the Secret is unchanged): the CA's account
/// for that key, or a new one registered with it (and EAB) when the CA has none.
pub(super) async fn existing_account(
    ctx: &Context,
    issuer: &IssuerHandle,
    http: &AcmeHttp,
    secrets: &Api<Secret>,
    secret: &Secret,
) -> Result<AccountState, Error> {
    let server = issuer.spec.server.trim();
    let version = secret.resource_version().unwrap_or_default();
    if let Some(account) = ctx.accounts.cached(issuer, &version) {
        return Ok(usable(issuer, registered(server, account.id()), &account));
    }
    let Some(key) = secret.data.as_ref().and_then(|d| d.get("tls.key")) else {
        return Ok(failure(
            Reason::InvalidSpec,
            format!(
                "the account key Secret {} has no tls.key",
                issuer.spec.private_key_secret_ref.name
            ),
        ));
    };
    let key = match AccountKey::from_pem(&String::from_utf8_lossy(&key.0)) {
        Ok(k) => k,
        Err(e) => return Ok(from_error(e)),
    };
    let direct = match Direct::new(http, server, key).await {
        Ok(d) => d,
        Err(e) => return Ok(from_error(AcmeError::from_acme(e))),
    };
    let found = match direct.find_account().await {
        Ok(None) => match account_key::finish_pending(http, server, secrets, secret).await {
            account_key::Pending::None => Ok(None),
            account_key::Pending::Finished(next) => {
                // The swap changed the Secret: its next version is loaded then.
                let mut state = registered(server, &next.kid().unwrap_or_default());
                state.rotated = rotation_asked(issuer);
                return Ok(state);
            }
            // Never register the old key while the CA may have moved the account.
            account_key::Pending::Unknown(e) => {
                return Ok(failure(
                    Reason::KeyRolloverFailed,
                    format!(
                        "an account key rollover may have happened and cannot be checked now (retried): {e}"
                    ),
                ));
            }
        },
        other => other,
    };
    let kid = match found {
        Ok(Some(kid)) => kid,
        Ok(None) => match register(ctx, issuer, &direct).await? {
            Ok(kid) => kid,
            Err(state) => return Ok(state),
        },
        Err(e) => return Ok(from_error(AcmeError::from_acme(e))),
    };
    let account = match acme::attach(http, server, direct, kid).await {
        Ok(a) => a,
        Err(e) => return Ok(from_error(e)),
    };
    let version = note_account_uri(secrets, secret, account.id())
        .await
        .unwrap_or(version);
    ctx.accounts.insert(issuer, &version, account.clone());
    Ok(usable(issuer, registered(server, account.id()), &account))
}

/// The registered account's state, unless the issuer names a profile the CA's directory
/// does not offer: then `UnknownProfile` (Ready=False) before any order is placed.
fn usable(
    issuer: &IssuerHandle,
    state: AccountState,
    account: &instant_acme::Account,
) -> AccountState {
    let offered: Vec<(String, String)> = (account.profiles())
        .map(|p| (p.name.to_string(), p.description.to_string()))
        .collect();
    let wanted = issuer.spec.profile.as_deref();
    match crate::decide::profile_problem(wanted, &offered) {
        None => state,
        Some(message) => AccountState {
            account_uri: state.account_uri,
            ..failure(Reason::UnknownProfile, message)
        },
    }
}

/// Registers the key of `direct` (with EAB); `Ok(Err(state))` when that fails.
pub(super) async fn register(
    ctx: &Context,
    issuer: &IssuerHandle,
    direct: &Direct,
) -> Result<Result<String, AccountState>, Error> {
    let eab = match eab(ctx, issuer).await? {
        Ok(eab) => eab,
        Err(state) => return Ok(Err(state)),
    };
    match direct
        .register(issuer.spec.email.as_deref(), eab.as_ref())
        .await
    {
        Ok(kid) => {
            tracing::info!(issuer = %issuer.display(), account = %kid, "registered an ACME account");
            Ok(Ok(kid))
        }
        Err(e) => {
            let mut state = from_error(AcmeError::from_acme(e));
            if let Some(eab) = eab
                .as_ref()
                .filter(|e| e.hmac.len() < e.algorithm.min_key_len())
            {
                state.condition.message.push_str(&format!(
                        " (the HMAC key is {} bytes; {:?} wants at least {} (RFC 7518 section 3.2): check keyAlgorithm against what the CA gave you)",
                        eab.hmac.len(),
                        eab.algorithm,
                        eab.algorithm.min_key_len()
                    ));
            }
            Ok(Err(state))
        }
    }
}

/// Records the account URI on a key Secret the operator made (for `kubectl describe`);
/// returns the Secret's new resourceVersion. A user's own Secret is left alone.
pub(super) async fn note_account_uri(
    secrets: &Api<Secret>,
    secret: &Secret,
    uri: &str,
) -> Option<String> {
    let ours = secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE);
    if !ours
        || secret
            .annotations()
            .get(ACCOUNT_URI_ANNOTATION)
            .map(String::as_str)
            == Some(uri)
    {
        return None;
    }
    let patch = crate::shared::patch::Annotations::new([(ACCOUNT_URI_ANNOTATION, uri)]);
    match secrets
        .patch(
            &secret.name_any(),
            &crate::shared::patch::operator_params(),
            &patch.patch(),
        )
        .await
    {
        Ok(s) => s.resource_version(),
        Err(e) => {
            tracing::warn!(secret = %secret.name_any(), "cannot note the account URI on the account key Secret: {e}");
            None
        }
    }
}

/// Where the account URI is noted on the account key Secret.
pub(super) const ACCOUNT_URI_ANNOTATION: &str = "caas.dev/account-uri";

/// The EAB key the issuer names; `Ok(Err(state))` when it cannot be had.
pub(super) async fn eab(
    ctx: &Context,
    issuer: &IssuerHandle,
) -> Result<Result<Option<Eab>, AccountState>, Error> {
    let Some(eab) = &issuer.spec.external_account_binding else {
        return Ok(Ok(None));
    };
    let r = &eab.key_secret_ref;
    let Some(raw) = read_secret_key(&ctx.client, &issuer.secret_namespace, &r.name, &r.key).await?
    else {
        return Ok(Err(failure(
            Reason::SecretNotFound,
            format!(
                "the EAB HMAC key Secret {}/{} (key {:?}) does not exist",
                issuer.secret_namespace, r.name, r.key
            ),
        )));
    };
    let algorithm = match acme::MacAlgorithm::parse(eab.key_algorithm.as_deref()) {
        Ok(a) => a,
        Err(e) => return Ok(Err(failure(Reason::InvalidSpec, e))),
    };
    Ok(match acme::decode_eab_hmac(&raw) {
        Ok(hmac) => Ok(Some(Eab {
            key_id: eab.key_id.trim().to_string(),
            hmac,
            algorithm,
        })),
        Err(e) => Err(from_error(e)),
    })
}

pub(super) fn account_key_secret(issuer: &IssuerHandle, key_pem: String) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(issuer.spec.private_key_secret_ref.name.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (COMPONENT_LABEL.to_string(), "account-key".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                "caas.dev/issuer".to_string(),
                issuer.display(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "tls.key".to_string(),
            ByteString(key_pem.into_bytes()),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

pub(super) fn registered(server: &str, uri: &str) -> AccountState {
    AccountState {
        condition: Condition::new(
            "Ready",
            true,
            Reason::AccountRegistered.as_str(),
            format!("the ACME account is registered at {server}"),
        ),
        account_uri: Some(uri.to_string()),
        retry: false,
        rotated: None,
    }
}
