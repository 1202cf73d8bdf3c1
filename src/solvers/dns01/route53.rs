//! Amazon Route 53 through the AWS SDK (`aws-sdk-route53`, credentials from
//! [`crate::cloud::aws`]): the hosted zone found by name (`ListHostedZonesByName`), the TXT
//! set read (`ListResourceRecordSets`) and changed with an exact change batch: `DELETE` of
//! the set exactly as read plus `CREATE` of the new set, so a concurrent writer's change
//! makes Route 53 refuse ours (`InvalidChangeBatch`) instead of being overwritten; then
//! it is read again and retried. A change is not waited for in `present`: the solver's
//! `ready` asks `GetChange` and says "not yet" until it is `INSYNC`.

use std::time::Duration;

use aws_sdk_route53::Client;
use aws_sdk_route53::error::ProvideErrorMetadata;
use aws_sdk_route53::types::{
    Change as R53Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord,
    ResourceRecordSet, RrType,
};

use super::api::find_zone;
use super::error::DnsError;
use super::provider::{Change, Pending, Secrets};
use crate::api::issuer::Route53 as Config;
use crate::cloud::CredentialSource;
use crate::cloud::aws::{self, Auth, StaticKeys, words};
use crate::solvers::SolverError;

const PROVIDER: &str = "Route 53";
const TTL: i64 = 60;
/// Exact change batches refused because another writer changed the set first, before
/// giving up.
const CONFLICT_RETRIES: u32 = 20;

/// A TXT record set as read.
struct TxtSet {
    ttl: i64,
    values: Vec<String>,
}

/// Whether Route 53 refused a batch because the set changed since it was read (another
/// writer got there first), as opposed to a refusal that a retry cannot cure.
fn is_conflict(message: &str) -> bool {
    [
        "but it already exists",
        "do not match the current values",
        "but it was not found",
    ]
    .iter()
    .any(|m| message.contains(m))
}

pub struct Route53 {
    client: Client,
    hosted_zone_id: Option<String>,
    source: CredentialSource,
}

/// The access key pair the issuer names; `None`: ambient credentials.
async fn static_keys(
    secrets: &Secrets<'_>,
    cfg: &Config,
) -> Result<Option<StaticKeys>, SolverError> {
    let keys = aws::static_keys(
        secrets.client,
        secrets.namespace(),
        "route53",
        cfg.access_key_id.as_deref(),
        cfg.access_key_id_secret_ref.as_ref(),
        cfg.secret_access_key_secret_ref.as_ref(),
    )
    .await;
    keys.map_err(|e| match e {
        aws::KeysError::Invalid(m) => SolverError::InvalidSpec(m),
        aws::KeysError::SecretMissing(m) => SolverError::SecretNotFound(m),
        aws::KeysError::Kube(e) => SolverError::Kube(e),
    })
}

impl Route53 {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<Route53, SolverError> {
        let auth = Auth {
            keys: static_keys(&secrets, cfg).await?,
            region: cfg.region.clone(),
            role: cfg.role.clone(),
        };
        let signed = aws::sign_in(auth).await.map_err(|e| {
            SolverError::Dns(DnsError::CloudSignIn {
                cloud: "AWS",
                message: e.0,
            })
        })?;
        let mut config = aws_sdk_route53::config::Builder::from(&signed.config);
        if let Some(url) = &cfg.api_url {
            // With an explicit endpoint the SDK's rules give no signing region: Route 53
            // is signed for its partition's global region, never the issuer's.
            config = config
                .endpoint_url(url.trim_end_matches('/'))
                .region(aws_config::Region::from_static(aws::GLOBAL_REGION));
        }
        Ok(Route53 {
            client: Client::from_conf(config.build()),
            hosted_zone_id: cfg.hosted_zone_id.clone(),
            source: signed.source,
        })
    }

    /// The hosted zone (id, name) holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<(String, String), DnsError> {
        let name = fqdn.trim_end_matches('.');
        if let Some(id) = &self.hosted_zone_id {
            return Ok((
                id.trim_start_matches("/hostedzone/").to_string(),
                format!("hosted zone {id}"),
            ));
        }
        find_zone(PROVIDER, fqdn, |candidate| async move {
            let found = self
                .client
                .list_hosted_zones_by_name()
                .dns_name(&candidate)
                .max_items(1)
                .send()
                .await
                .map_err(|e| DnsError::api(PROVIDER, name, &candidate, words(&e)))?;
            let zone = found
                .hosted_zones()
                .first()
                .filter(|z| z.name().trim_end_matches('.') == candidate);
            Ok(zone.map(|z| {
                (
                    z.id().trim_start_matches("/hostedzone/").to_string(),
                    candidate,
                )
            }))
        })
        .await
    }

    /// The TXT set at `name` as Route 53 holds it: its TTL and values (quoted); `None`
    /// when there is none. A DELETE must name it exactly, TTL included.
    async fn values(&self, id: &str, zone: &str, name: &str) -> Result<Option<TxtSet>, DnsError> {
        let listed = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(id)
            .start_record_name(format!("{name}."))
            .start_record_type(RrType::Txt)
            .max_items(1)
            .send()
            .await
            .map_err(|e| DnsError::api(PROVIDER, name, zone, words(&e)))?;
        // The list starts at the name: its first set may be another name's.
        Ok(listed
            .resource_record_sets()
            .first()
            .filter(|set| {
                set.name().trim_end_matches('.').eq_ignore_ascii_case(name)
                    && set.r#type() == &RrType::Txt
            })
            .map(|set| TxtSet {
                ttl: set.ttl().unwrap_or(TTL),
                values: set
                    .resource_records()
                    .iter()
                    .map(|r| r.value().to_string())
                    .collect(),
            }))
    }

    /// Replaces the set `old` by `new` in one batch (exact DELETE, then CREATE); `Ok(None)`
    /// when Route 53 refused it because the set is no longer `old` (retry).
    async fn swap(
        &self,
        (id, zone, name): (&str, &str, &str),
        old: Option<&TxtSet>,
        new: &[String],
    ) -> Result<Option<Pending>, DnsError> {
        // The old set is deleted exactly as read (its TTL too); the new one keeps that TTL.
        let ttl = old.map_or(TTL, |o| o.ttl);
        let set = |action: ChangeAction, values: &[String]| -> Result<R53Change, DnsError> {
            let records = values
                .iter()
                .map(|v| ResourceRecord::builder().value(v).build())
                .collect::<Result<Vec<_>, _>>();
            let set = ResourceRecordSet::builder()
                .name(format!("{name}."))
                .r#type(RrType::Txt)
                .ttl(ttl)
                .set_resource_records(records.ok())
                .build();
            set.and_then(|set| {
                R53Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
            })
            .map_err(|e| DnsError::api(PROVIDER, name, zone, e.to_string()))
        };
        let mut changes = Vec::new();
        if let Some(old) = old.filter(|o| !o.values.is_empty()) {
            changes.push(set(ChangeAction::Delete, &old.values)?);
        }
        if !new.is_empty() {
            changes.push(set(ChangeAction::Create, new)?);
        }
        let batch = ChangeBatch::builder()
            .comment("caas-operator DNS-01")
            .set_changes(Some(changes))
            .build()
            .map_err(|e| DnsError::api(PROVIDER, name, zone, e.to_string()))?;
        let sent = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(id)
            .change_batch(batch)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let info = out.change_info();
                let change = info.map(|i| i.id().trim_start_matches("/change/").to_string());
                let settled = info.map(|i| i.status()) == Some(&ChangeStatus::Insync);
                Ok(Some(change.filter(|c| !settled && !c.is_empty())))
            }
            Err(e)
                if e.code() == Some("InvalidChangeBatch")
                    && is_conflict(e.message().unwrap_or_default()) =>
            {
                tracing::debug!(name, error = %words(&e), "Route 53 set changed under us; reading it again");
                Ok(None)
            }
            Err(e) => Err(DnsError::api(PROVIDER, name, zone, words(&e))),
        }
    }

    /// Whether change `id` is `INSYNC` (on all of Route 53's servers).
    async fn settled(&self, id: &str) -> Result<bool, DnsError> {
        let change = self
            .client
            .get_change()
            .id(id)
            .send()
            .await
            .map_err(|e| DnsError::api(PROVIDER, id, "(change)", words(&e)))?;
        Ok(change.change_info().map(|i| i.status()) == Some(&ChangeStatus::Insync))
    }

    /// Applies `change`; the id of the Route 53 change while it is not yet INSYNC.
    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<Pending, DnsError> {
        let (id, zone) = self.zone(fqdn).await?;
        let name = fqdn.trim_end_matches('.');
        let quoted = format!("\"{value}\"");
        for attempt in 0..CONFLICT_RETRIES {
            let old = self.values(&id, &zone, name).await?;
            let values = old
                .as_ref()
                .map(|o| o.values.as_slice())
                .unwrap_or_default();
            let Some(new) = change.apply(values, &quoted) else {
                return Ok(None);
            };
            if let Some(pending) = self.swap((&id, &zone, name), old.as_ref(), &new).await? {
                return Ok(pending);
            }
            // Another writer won: back off a little (spread, so ten writers do not
            // collide again in step) and read the set again.
            let jitter = rand::random::<u64>() % 200;
            tokio::time::sleep(Duration::from_millis(50 + jitter + 50 * u64::from(attempt))).await;
        }
        Err(DnsError::api(
            PROVIDER,
            name,
            &zone,
            format!("the TXT set kept changing under {CONFLICT_RETRIES} attempts to update it"),
        ))
    }
}

super::provider::pending_changes_provider!(Route53, source);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_changed_set_is_retried() {
        assert!(is_conflict(
            "[Tried to delete resource record set [name='a.', type='TXT'] but the values provided do not match the current values]"
        ));
        assert!(is_conflict(
            "[Tried to create resource record set [name='a.', type='TXT'] but it already exists]"
        ));
        assert!(!is_conflict(
            "[RRSet with DNS name a.other. is not permitted in zone acc.test.]"
        ));
    }
}
