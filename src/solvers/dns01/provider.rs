//! DNS providers behind one trait: each adds and removes one TXT value at a name
//! ([`Change`]), leaving other values there (an apex and its wildcard share
//! `_acme-challenge.<name>`), with credentials read from the issuer's [`Secrets`].

use futures::future::BoxFuture;

use super::error::DnsError;
use crate::api::issuer::SecretKeySelector;
use crate::shared::{IssuerHandle, read_secret_key};
use crate::solvers::SolverError;

/// The id of a provider's change still being applied to its servers, if any.
pub type Pending = Option<String>;

/// The future of a provider's call.
pub type DnsFuture<'a, T = ()> = BoxFuture<'a, Result<T, DnsError>>;

/// Which way one TXT value changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

impl Change {
    /// A record set's `values` after the change of `value`; `None` when there is nothing
    /// to do (already there, or already gone).
    pub fn apply(self, values: &[String], value: &str) -> Option<Vec<String>> {
        let present = values.iter().any(|v| v == value);
        match self {
            Change::Add if !present => Some([values, &[value.to_string()]].concat()),
            Change::Remove if present => {
                Some(values.iter().filter(|v| *v != value).cloned().collect())
            }
            _ => None,
        }
    }
}

pub trait DnsProvider: Send + Sync {
    /// Publishes `value` at `fqdn` (absolute) next to other values, or removes it leaving
    /// the others; either is idempotent.
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a>;

    /// Publishes `value` at `fqdn` (absolute), next to other values (idempotent).
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        self.change(Change::Add, fqdn, value)
    }

    /// Removes `value` at `fqdn`, leaving other values (idempotent).
    fn remove_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        self.change(Change::Remove, fqdn, value)
    }

    /// Publishes `value` as [`add_txt`](Self::add_txt) does; returns the provider's id
    /// of the change while it is still being applied to the provider's servers (Route 53
    /// `PENDING`, Cloud DNS `pending`), for [`applied`](Self::applied).
    fn publish<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a, Option<String>> {
        Box::pin(async move { self.add_txt(fqdn, value).await.map(|()| None) })
    }

    /// Whether the change `id` (from [`publish`](Self::publish)) has reached all the
    /// provider's servers.
    fn applied<'a>(&'a self, _id: &'a str) -> DnsFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    /// The name where the value ends up, for the propagation check (acme-dns: the
    /// account's `fulldomain`).
    fn served_at(&self, fqdn: &str) -> String {
        fqdn.to_string()
    }

    /// Which cloud credential source signed in (never its value), for providers on the
    /// cloud layer.
    fn credential_source(&self) -> Option<crate::cloud::CredentialSource> {
        None
    }

    /// Whether the zone serves `value` at `fqdn`, when the provider can ask its own
    /// authoritative server (RFC 2136); `None`: check through DNS resolution.
    fn serves<'a>(&'a self, _fqdn: &'a str, _value: &'a str) -> DnsFuture<'a, Option<bool>> {
        Box::pin(async { Ok(None) })
    }
}

/// [`DnsProvider`] for a provider whose changes reach its servers in the background:
/// its own `update(fqdn, value, change)` returns the id of a change still being applied,
/// and `settled(id)` says whether it has been. With a field name after the type: the
/// field holding its [`crate::cloud::CredentialSource`].
macro_rules! pending_changes_provider {
    ($provider:ty $(, $source:ident)?) => {
        impl $crate::solvers::dns01::provider::DnsProvider for $provider {
            $(
                fn credential_source(&self) -> Option<$crate::cloud::CredentialSource> {
                    Some(self.$source.clone())
                }
            )?

            fn change<'a>(
                &'a self,
                change: $crate::solvers::dns01::provider::Change,
                fqdn: &'a str,
                value: &'a str,
            ) -> $crate::solvers::dns01::provider::DnsFuture<'a> {
                Box::pin(async move { self.update(fqdn, value, change).await.map(|_| ()) })
            }

            fn publish<'a>(
                &'a self,
                fqdn: &'a str,
                value: &'a str,
            ) -> $crate::solvers::dns01::provider::DnsFuture<'a, Option<String>> {
                let add = $crate::solvers::dns01::provider::Change::Add;
                Box::pin(self.update(fqdn, value, add))
            }

            fn applied<'a>(
                &'a self,
                id: &'a str,
            ) -> $crate::solvers::dns01::provider::DnsFuture<'a, bool> {
                Box::pin(self.settled(id))
            }
        }
    };
}

pub(crate) use pending_changes_provider;

/// Where a provider reads its credentials: the Secrets in the issuer's Secret namespace.
#[derive(Clone, Copy)]
pub struct Secrets<'a> {
    pub client: &'a kube::Client,
    pub issuer: &'a IssuerHandle,
}

impl Secrets<'_> {
    pub fn namespace(&self) -> &str {
        &self.issuer.secret_namespace
    }

    /// The value of `key` in Secret `name` (trimmed); `None` when either is missing.
    pub async fn get(&self, name: &str, key: &str) -> Result<Option<String>, SolverError> {
        let raw = read_secret_key(self.client, self.namespace(), name, key).await?;
        Ok(raw.map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// The value of the Secret key a solver names; `SecretNotFound` names it, and `what`
    /// it should hold, when it is missing.
    pub async fn value(&self, r: &SecretKeySelector, what: &str) -> Result<String, SolverError> {
        self.get(&r.name, &r.key).await?.ok_or_else(|| {
            SolverError::SecretNotFound(format!(
                "the {what} Secret {}/{} (key {:?}) does not exist",
                self.namespace(),
                r.name,
                r.key
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_edits_a_set_or_has_nothing_to_do() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let values = set(&["a", "b"]);
        assert_eq!(Change::Add.apply(&values, "c"), Some(set(&["a", "b", "c"])));
        assert_eq!(Change::Add.apply(&values, "a"), None);
        assert_eq!(Change::Remove.apply(&values, "a"), Some(set(&["b"])));
        assert_eq!(Change::Remove.apply(&values, "c"), None);
    }
}
