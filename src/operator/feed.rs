//! The one Certificate watch of every replica: it keeps the challenge index in step and
//! hands each change to the current leadership term's certificate controller.

use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::Certificate;
use crate::shared::memory::{Memory, object_key};
use crate::solvers::index::ChallengeIndex;

/// Hands the Certificates the one watch sees to the certificate controller of the
/// current leadership term, if any. The controller reads the same store instead of
/// keeping a second watch and a second copy of every Certificate (with managedFields:
/// about 70 MiB at 10,000 Certificates).
#[derive(Default)]
pub(super) struct CertificateFeed {
    senders: std::sync::Mutex<Vec<futures::channel::mpsc::UnboundedSender<Arc<Certificate>>>>,
}

impl CertificateFeed {
    /// From now on, every Certificate applied in the store or deleted from it (but for
    /// one deleted while the watch was down: a relist replaces the store without a
    /// deletion event); the caller adds the store's present contents (both may name an
    /// object twice: the controller merges them). Each controller of the term
    /// (certificates, deployments, Ingresses, Gateways) subscribes once, and only when it
    /// will read the receiver: an unread one keeps every Certificate sent to it.
    pub(super) fn subscribe(&self) -> futures::channel::mpsc::UnboundedReceiver<Arc<Certificate>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.lock().push(tx);
        rx
    }

    fn send(&self, cert: Arc<Certificate>) {
        // A closed receiver is a controller that stopped with its term.
        self.lock()
            .retain(|tx| tx.unbounded_send(cert.clone()).is_ok());
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<futures::channel::mpsc::UnboundedSender<Arc<Certificate>>>>
    {
        // Holding the lock cannot panic midway: use it anyway.
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the challenge index in step with the Certificate watch, feeds the current
/// term's controller, and drops the copies of Certificates written by this process once
/// the watch has them.
pub(super) async fn index_certificates(
    events: impl futures::Stream<Item = Result<watcher::Event<Certificate>, watcher::Error>>,
    store: Store<Certificate>,
    feed: Arc<CertificateFeed>,
    index: Arc<ChallengeIndex>,
    memory: Arc<Memory>,
) {
    events
        .for_each(|event| {
            match event {
                Ok(watcher::Event::Apply(c)) => {
                    // The reflector stores an Apply before passing it on (a (re)list's
                    // objects reach the store together, at InitDone).
                    if let Some(stored) = store.get(&ObjectRef::from_obj(&c)) {
                        feed.send(stored);
                    }
                    applied(&c, &index, &memory);
                }
                Ok(watcher::Event::InitApply(c)) => applied(&c, &index, &memory),
                Ok(watcher::Event::Delete(c)) => {
                    index.remove(&c);
                    // A deleted Certificate wakes its Ingress or Gateway (which makes it
                    // again); the certificate and deploy controllers find it gone and drop
                    // what they remember of it.
                    feed.send(Arc::new(c));
                }
                Ok(watcher::Event::Init) => index.begin_resync(),
                Ok(watcher::Event::InitDone) => {
                    index.end_resync();
                    store.state().into_iter().for_each(|c| feed.send(c));
                }
                Err(e) => tracing::debug!(error = %e, "Certificate watch error; retrying"),
            }
            futures::future::ready(())
        })
        .await;
}

/// A Certificate the watch has: index its challenges, and drop our written copy once the
/// watch has caught up with it.
fn applied(c: &Certificate, index: &ChallengeIndex, memory: &Memory) {
    index.update(c);
    let key = object_key(c.namespace().as_deref(), &c.name_any());
    let version = c.resource_version().and_then(|v| v.parse::<u64>().ok());
    if version >= memory.written_status(&key) {
        memory.caught_up(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Arc<Certificate> {
        let mut c = Certificate::new(name, Default::default());
        c.metadata.namespace = Some("ns".into());
        Arc::new(c)
    }

    #[test]
    fn the_feed_reaches_every_controller_of_the_term_until_it_stops() {
        let feed = CertificateFeed::default();
        // No term: nothing is kept.
        feed.send(cert("before"));
        let mut certificates = feed.subscribe();
        let mut deployments = feed.subscribe();
        feed.send(cert("a"));
        assert_eq!(certificates.try_recv().unwrap().name_any(), "a");
        assert_eq!(deployments.try_recv().unwrap().name_any(), "a");
        // A controller stopped: its sender is dropped at the next send.
        drop(deployments);
        feed.send(cert("b"));
        assert_eq!(certificates.try_recv().unwrap().name_any(), "b");
        assert_eq!(feed.lock().len(), 1);
        drop(certificates);
        feed.send(cert("c"));
        assert!(feed.lock().is_empty());
    }
}
