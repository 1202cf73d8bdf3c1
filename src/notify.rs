//! Notifications: the hooks certbot and acme.sh users run after a renewal, as incoming
//! webhooks. An issuer's `spec.notify` (or the operator's default) lists webhooks, each
//! `Generic` JSON or `Slack` (`{"text": ...}`, also what Microsoft Teams accepts).
//!
//! What is sent is built by pure functions ([`Message`], [`body`]); [`Notifier`] reads
//! each URL from its Secret and POSTs in the background with bounded retries. A URL is
//! a credential (whoever has a Slack webhook URL can post to the channel): it is never
//! logged, nor put in an event or status; failures name the webhook by its Secret. No
//! message carries a key, an EAB value or a URL.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::api::issuer::{Notify, NotifyFormat, NotifyWebhook};
use crate::api::{Certificate, Time};

/// Attempts per message and webhook (then the message is dropped, with a warning).
const ATTEMPTS: u32 = 4;
/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failures before the `failed` message, when `failedAfter` is not set.
pub const DEFAULT_FAILED_AFTER: u32 = 3;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A first certificate.
    Issued,
    /// A certificate that replaced an earlier one.
    Renewed,
    /// `failedAfter` attempts in a row failed.
    Failed,
    /// Close to notAfter and not renewed (or, for a deploy target, its copy not
    /// replaced by the renewal).
    Expiring,
    /// `failedAfter` attempts in a row to deploy to a target failed.
    DeployFailed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Issued => "issued",
            Event::Renewed => "renewed",
            Event::Failed => "failed",
            Event::Expiring => "expiring",
            Event::DeployFailed => "deploy-failed",
        }
    }
}

/// One notification about one Certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub event: Event,
    pub namespace: String,
    pub name: String,
    pub dns_names: Vec<String>,
    pub serial: Option<String>,
    pub not_after: Option<Time>,
    /// The condition reason (`Issued`, `OrderFailed`, `RenewalFailing`, ...).
    pub reason: String,
    pub message: String,
}

impl Message {
    pub fn new(event: Event, cert: &Certificate, reason: &str, message: String) -> Message {
        let status = cert.status.as_ref();
        Message {
            event,
            namespace: cert.metadata.namespace.clone().unwrap_or_default(),
            name: cert.metadata.name.clone().unwrap_or_default(),
            dns_names: cert
                .spec
                .dns_names
                .iter()
                .chain(cert.spec.ip_addresses.iter())
                .cloned()
                .collect(),
            serial: None,
            not_after: status.and_then(|s| s.not_after),
            reason: reason.to_string(),
            message,
        }
    }
}

/// The JSON body for `format`.
pub fn body(format: NotifyFormat, m: &Message) -> Value {
    match format {
        NotifyFormat::Generic => json!({
            "event": m.event.as_str(),
            "namespace": m.namespace,
            "name": m.name,
            "dnsNames": m.dns_names,
            "serial": m.serial,
            "notAfter": m.not_after,
            "reason": m.reason,
            "message": m.message,
        }),
        NotifyFormat::Slack => {
            let icon = match m.event {
                Event::Issued | Event::Renewed => ":white_check_mark:",
                Event::Failed | Event::DeployFailed => ":x:",
                Event::Expiring => ":warning:",
            };
            let names = m.dns_names.join(", ");
            let mut text = format!(
                "{icon} Certificate {}/{} {} ({names})",
                m.namespace,
                m.name,
                m.event.as_str()
            );
            if let Some(serial) = &m.serial {
                text.push_str(&format!("; serial {serial}"));
            }
            if let Some(not_after) = &m.not_after {
                text.push_str(&format!("; valid until {not_after}"));
            }
            text.push_str(&format!("\n{}: {}", m.reason, m.message));
            json!({ "text": text })
        }
    }
}

/// Whether a failure streak of `attempts` is the one to report (exactly once per run of
/// failures: at the `failed_after`th).
pub fn report_failure(notify: Option<&Notify>, attempts: i32) -> bool {
    let after = notify
        .and_then(|n| n.failed_after)
        .unwrap_or(DEFAULT_FAILED_AFTER)
        .max(1);
    i64::from(attempts) == i64::from(after)
}

/// Sends notifications; one HTTPS client for all. It keeps nothing per Certificate:
/// what was reported `expiring` is in the controllers' memory
/// ([`crate::shared::memory::Memory::first_expiring`]), pruned with the Certificate.
#[derive(Default)]
pub struct Notifier {
    client: std::sync::OnceLock<Option<HttpsClient>>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

impl Notifier {
    fn client(&self) -> Option<HttpsClient> {
        self.client
            .get_or_init(|| {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .try_with_platform_verifier()
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "notifications: cannot load the system's trusted roots")
                    })
                    .ok()?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Some(Client::builder(TokioExecutor::new()).build(https))
            })
            .clone()
    }

    /// Sends `message` to every webhook of `notify`, each URL read from its Secret in
    /// `secret_namespace`; in the background, so a slow receiver never holds up a
    /// reconcile.
    pub async fn send(
        &self,
        client: &kube::Client,
        notify: &Notify,
        secret_namespace: &str,
        message: &Message,
    ) {
        let Some(https) = self.client() else { return };
        for hook in &notify.webhooks {
            let url = match url(client, hook, secret_namespace).await {
                Ok(url) => url,
                Err(e) => {
                    tracing::warn!(event = message.event.as_str(), certificate = %format!("{}/{}", message.namespace, message.name), "notification not sent: {e}");
                    continue;
                }
            };
            let body = body(hook.format, message).to_string();
            let which = format!(
                "{}/{} key {}",
                secret_namespace, hook.url_secret_ref.name, hook.url_secret_ref.key
            );
            let event = message.event.as_str();
            let https = https.clone();
            tokio::spawn(async move {
                post_with_retries(&https, &url, body, &which, event).await;
            });
        }
    }
}

async fn url(
    client: &kube::Client,
    hook: &NotifyWebhook,
    namespace: &str,
) -> Result<String, String> {
    let r = &hook.url_secret_ref;
    let secret =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
            .get_opt(&r.name)
            .await
            .map_err(|e| format!("reading Secret {namespace}/{}: {e}", r.name))?
            .ok_or_else(|| format!("Secret {namespace}/{} (urlSecretRef) not found", r.name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| format!("Secret {namespace}/{} has no key {:?}", r.name, r.key))?;
    let url = String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("Secret {namespace}/{} key {:?} is not text", r.name, r.key))?;
    let url = url.trim().to_string();
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("https" | "http")) => Ok(url),
        _ => Err(format!(
            "Secret {namespace}/{} key {:?} is not an http(s) URL",
            r.name, r.key
        )),
    }
}

/// POSTs `body`; retries connection errors, 429 and 5xx (1 s, 2 s, 4 s apart).
async fn post_with_retries(
    client: &HttpsClient,
    url: &str,
    body: String,
    which: &str,
    event: &str,
) {
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let result = post(client, url, body.clone()).await;
        let retry = match &result {
            Ok(status) if (200..300).contains(status) => {
                tracing::info!(event, webhook = %which, status, "notification sent");
                return;
            }
            Ok(status) => *status == 429 || *status >= 500,
            Err(_) => true,
        };
        let what = match result {
            Ok(status) => format!("answered {status}"),
            Err(e) => e,
        };
        if !retry || attempt == ATTEMPTS {
            tracing::warn!(event, webhook = %which, attempt, "notification not delivered: the webhook {what}");
            return;
        }
        tracing::debug!(event, webhook = %which, attempt, "notification: the webhook {what}; retrying");
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// One POST; the error never contains the URL.
async fn post(client: &HttpsClient, url: &str, body: String) -> Result<u16, String> {
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("caas-operator/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| "cannot be requested (bad URL)".to_string())?;
    let answer = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("did not answer within {TIMEOUT:?}"))?
        .map_err(|e| {
            // hyper's connect errors can name the host; say only what kind of failure.
            if e.is_connect() {
                "cannot be reached".to_string()
            } else {
                "connection failed".to_string()
            }
        })?;
    let status = answer.status().as_u16();
    let _ = answer.into_body().collect().await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: Event) -> Message {
        Message {
            event,
            namespace: "shop".into(),
            name: "web".into(),
            dns_names: vec!["shop.example".into()],
            serial: Some("0a1b".into()),
            not_after: Some("2027-01-01T00:00:00Z".parse().unwrap()),
            reason: "Issued".into(),
            message: "issued by CaaSIssuer shop/ca".into(),
        }
    }

    #[test]
    fn generic_and_slack_shapes() {
        let m = message(Event::Renewed);
        assert_eq!(
            body(NotifyFormat::Generic, &m),
            json!({
                "event": "renewed", "namespace": "shop", "name": "web",
                "dnsNames": ["shop.example"], "serial": "0a1b",
                "notAfter": "2027-01-01T00:00:00Z", "reason": "Issued",
                "message": "issued by CaaSIssuer shop/ca"
            })
        );
        let slack = body(NotifyFormat::Slack, &m);
        let text = slack["text"].as_str().unwrap();
        assert_eq!(slack.as_object().unwrap().len(), 1, "only text: {slack}");
        assert!(text.contains("shop/web renewed (shop.example)"), "{text}");
        assert!(text.contains("serial 0a1b"));
        let expiring = body(NotifyFormat::Slack, &message(Event::Expiring));
        assert!(expiring["text"].as_str().unwrap().starts_with(":warning:"));
    }

    #[test]
    fn failure_reported_once_per_streak() {
        let notify = Notify {
            failed_after: Some(2),
            ..Default::default()
        };
        let reported: Vec<i32> = (1..6)
            .filter(|a| report_failure(Some(&notify), *a))
            .collect();
        assert_eq!(reported, vec![2]);
        assert!(report_failure(None, 3) && !report_failure(None, 4));
        let zero = Notify {
            failed_after: Some(0),
            ..Default::default()
        };
        assert!(report_failure(Some(&zero), 1));
    }
}
