//! A canary revision followed from the Manager: a pull whose revision carries a canary
//! directive is compiled against the stable revision this Worker serves and served beside
//! it to the directive's share ([`Reloader::start_canary`]), checked to be exactly the
//! Manager's state before it is ACKed; the share follows the directive; once the directive
//! is gone, the same revision is promoted, and a newer one (the stable content committed
//! again: a rollback) replaces both as any swap does. A Worker not at the stable revision
//! takes it first (`?at=`).

use switchyard_api::canary::{CanaryDirective, CanaryKey};
use switchyard_api::sync::SyncPayload;

use super::state::{self, Parsed, Served};
use super::{CanaryServed, Syncer, cache, report};
use crate::canary::{Split, SplitKey};

/// How a directive assigns requests on this Worker.
fn split_of(d: &CanaryDirective) -> Result<Split, String> {
    let key = match &d.key {
        CanaryKey::Random => SplitKey::Random,
        CanaryKey::ClientIp => SplitKey::ClientIp,
        CanaryKey::Header { name } => SplitKey::Header(
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("canary key: {name:?} is not a header name"))?,
        ),
    };
    Ok(Split::new(d.share_ppm, key))
}

impl Syncer {
    /// Follows `payload`, a pull whose revision is a running canary (`d`).
    pub(super) async fn follow_canary(
        &mut self,
        payload: SyncPayload,
        d: CanaryDirective,
    ) -> Result<(), String> {
        let served = &self.state.served;
        let (payload, d) = if served.revision == d.stable_revision
            && served.store_id == payload.store_id
        {
            (payload, d)
        } else {
            // The stable revision first, as any revision is taken (ACKed once verified).
            let stable = self
                .client
                .pull_at(d.stable_revision)
                .await
                .map_err(|e| e.to_string())?;
            let merged = state::merge(&state::Entities::new(), &stable)
                .map_err(|e| format!("the stable revision's pull did not verify: {e}"))?;
            tracing::info!(
                stable = d.stable_revision,
                canary = d.revision,
                "taking a canary's stable revision first"
            );
            self.apply(stable, merged, None).await?;
            if self.state.served.revision != d.stable_revision {
                return Ok(());
            }
            let again = self
                .client
                .pull(d.stable_revision)
                .await
                .map_err(|e| e.to_string())?;
            match again.canary.clone() {
                Some(d2)
                    if d2.revision == again.revision && d2.stable_revision == d.stable_revision =>
                {
                    (again, d2)
                }
                // It moved on meanwhile: the next check follows it.
                _ => return Ok(()),
            }
        };
        let split = match split_of(&d) {
            Ok(split) => split,
            Err(e) => {
                let store_id = payload.store_id.clone();
                self.rejected(&store_id, d.revision, e, None);
                return Ok(());
            }
        };
        if let Some(live) = &mut self.state.canary
            && live.served.revision == d.revision
        {
            if live.directive != d {
                self.reloader
                    .set_canary_split(split)
                    .map_err(|e| e.to_string())?;
                live.directive = d;
            }
            return Ok(());
        }
        if self.state.rejected == Some(d.revision) {
            return Ok(());
        }
        self.serve_canary(payload, d, split).await;
        Ok(())
    }

    /// Compiles and serves canary `payload` beside the stable revision; ACKs it once what
    /// the canary serves is verified to be the Manager's state, else NACKs it.
    async fn serve_canary(&mut self, payload: SyncPayload, d: CanaryDirective, split: Split) {
        let (store_id, revision) = (payload.store_id.clone(), payload.revision);
        let merged = match state::merge(&self.state.served.entities, &payload) {
            Ok(merged) => merged,
            Err(e) => {
                let why = format!("the canary's pull did not verify: {e}");
                self.rejected(&store_id, revision, why, None);
                return;
            }
        };
        let pulled = match self
            .state
            .served
            .parse(&self.opts.env, &payload, merged, false)
        {
            Ok(pulled) => pulled,
            Err(errors) => {
                self.rejected(&store_id, revision, errors.to_string(), None);
                return;
            }
        };
        let reloader = self.reloader.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let result = match &pulled.parsed {
                Parsed::Set { set, numbering } => {
                    Some(reloader.start_canary(&set.manifests(), numbering, split))
                }
                // `parse(…, false)` parses a whole set.
                Parsed::Delta(_) => None,
            };
            (result, pulled)
        })
        .await;
        let (result, pulled) = match compiled {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "canary compile task failed");
                return;
            }
        };
        let error = match result {
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("the canary was parsed as a change, not a whole set".to_string()),
        };
        if let Some(e) = error {
            self.rejected(&store_id, revision, e, None);
            return;
        }
        // What the canary serves must be the Manager's state at its revision.
        let current = self.reloader.current().load_full();
        let digest = current
            .canary
            .as_ref()
            .map(|c| state::served_digest(&c.runtime.snapshot, &pulled.entities));
        if digest.as_deref() != Some(pulled.state_digest.as_str()) {
            let _ = self.reloader.abort_canary();
            let why = format!(
                "the canary served (digest {}) is not the Manager's state at revision \
                 {revision} (digest {})",
                digest.unwrap_or_default(),
                pulled.state_digest
            );
            self.rejected(&store_id, revision, why, None);
            return;
        }
        let mut served = Served::default();
        served.advance(pulled);
        let share = switchyard_api::canary::percent(d.share_ppm);
        let detail = format!(
            "serving as a canary to {share} of requests beside revision {}",
            self.state.served.revision
        );
        tracing::info!(revision, stable = self.state.served.revision, %share, "canary revision served");
        self.state.canary = Some(CanaryServed {
            served,
            directive: d,
        });
        let address = self.address();
        self.queue(report(&store_id, revision, None, address, Some(detail)));
    }

    /// The canary is promoted (its revision is served with no directive): every new
    /// request runs on it; its state becomes the one served (and cached).
    pub(super) fn promote_canary(&mut self) {
        let Some(c) = self.state.canary.take() else {
            return;
        };
        if let Err(e) = self.reloader.promote_canary() {
            // Not live here any more (a swap replaced it): the next pull catches up.
            tracing::warn!(error = %e, "cannot promote the canary");
            return;
        }
        let revision = c.served.revision;
        self.state.served = c.served;
        let list: Vec<_> = self.state.served.entities.values().cloned().collect();
        let store_id = self.state.served.store_id.clone();
        if let Err(e) = cache::save(
            &self.opts.cache_dir,
            &self.opts.env,
            &store_id,
            revision,
            &list,
        ) {
            tracing::warn!(error = %e, "cannot write the last-known-good cache");
        }
        tracing::info!(revision, "canary promoted: serving it to every request");
    }
}
