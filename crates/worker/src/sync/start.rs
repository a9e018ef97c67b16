//! The first generation of a Worker that follows a Manager: the Manager's current revision
//! if it answers in time (ACKed once the state served is verified to be the Manager's),
//! else the last-known-good cache (authenticated, with the store it belongs to, so the
//! first pull tells whether the Manager's history is still that one).

use switchyard_api::sync::{ReportBody, ServedFrom};
use switchyard_config::{ConfigErrors, Located, Manifest};
use switchyard_engine::{EntitySet, Numbering};

use super::state::{self, Entities, Served};
use super::{ManagedOptions, StartError, SyncClient, SyncState, Syncer, cache, report};
use crate::reload::Reloader;

impl Syncer {
    /// Builds the first generation with `build`: from the Manager if it answers in time,
    /// else from the last-known-good cache. Returns where it came from (`manager` or
    /// `cache`) and, for the cache, why the Manager could not be used.
    pub async fn start<B>(
        opts: ManagedOptions,
        build: B,
    ) -> Result<(Reloader, SyncState, ServedFrom, Option<String>), StartError>
    where
        B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
    {
        let mut pending = Vec::new();
        let mut errors = Vec::new();
        // Each Manager of the control plane in turn; the cache only when none answers.
        for url in opts.managers() {
            let client = opts.client_for(url)?;
            match from_manager(&opts, &client, &build, &mut pending).await {
                Ok((reloader, served)) => {
                    note_store(&reloader, &served);
                    return Ok((
                        reloader,
                        SyncState::new(served, pending),
                        ServedFrom::Manager,
                        None,
                    ));
                }
                Err(e) if opts.fallbacks.is_empty() => errors.push(e),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        let manager_error = errors.join("; ");
        tracing::warn!(error = %manager_error, "Manager unavailable at start; trying the last-known-good cache");
        let (reloader, served) = from_cache(&opts, &build, &manager_error)?;
        tracing::warn!(
            revision = served.revision,
            store = %served.store_id,
            "serving the last-known-good cache until the Manager answers"
        );
        note_store(&reloader, &served);
        let state = SyncState::new(served, pending);
        Ok((reloader, state, ServedFrom::Cache, Some(manager_error)))
    }
}

/// Shows the store of the served revision in `/status`.
fn note_store(reloader: &Reloader, served: &Served) {
    let store_id = served.store_id.clone();
    reloader.update_sync_status(|s| s.store_id = Some(store_id));
}

impl SyncState {
    fn new(served: Served, pending: Vec<ReportBody>) -> SyncState {
        SyncState {
            served,
            rejected: None,
            pending,
            pulled_at: None,
            canary: None,
        }
    }
}

/// The first generation from the Manager's current revision (its ACK queued), or why not
/// (a NACK queued when that revision does not compile here).
async fn from_manager<B>(
    opts: &ManagedOptions,
    client: &SyncClient,
    build: &B,
    pending: &mut Vec<ReportBody>,
) -> Result<(Reloader, Served), String>
where
    B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
{
    let pull = async {
        let head = client.pull(0).await?;
        // The current revision is a canary: the first generation is its stable revision,
        // and the sync task adds the canary beside it once it runs.
        match &head.canary {
            Some(d) if d.revision == head.revision => client.pull_at(d.stable_revision).await,
            _ => Ok(head),
        }
    };
    let payload = match tokio::time::timeout(opts.start_timeout, pull).await {
        Ok(Ok(payload)) => payload,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {:?}", opts.start_timeout)),
    };
    let pulled_at = Some(super::now_millis());
    let entities = state::merge(&Entities::new(), &payload)?;
    let address = opts.address.clone();
    let (store_id, revision) = (payload.store_id.as_str(), payload.revision);
    let nack = |error: String| ReportBody {
        pulled_at,
        ..report(store_id, revision, Some(error), address.clone(), None)
    };
    let first = Origin {
        revision,
        store_id: payload.store_id.clone(),
        state_digest: payload.state_digest.clone(),
    };
    let (reloader, served) = match build_from(&opts.env, entities, first, build) {
        Ok(built) => built,
        Err(errors) => {
            pending.push(nack(errors.to_string()));
            return Err(format!("revision {revision} rejected: {errors}"));
        }
    };
    // What is served must be the Manager's state before it is ACKed.
    let digest = state::served_digest(&reloader.current().load().snapshot, &served.entities);
    if digest != served.state_digest {
        let why = format!(
            "the state served (digest {digest}) is not the Manager's state at revision \
             {revision} (digest {})",
            served.state_digest
        );
        pending.push(nack(why.clone()));
        return Err(why);
    }
    let list: Vec<_> = served.entities.values().cloned().collect();
    if let Err(e) = cache::save(&opts.cache_dir, &opts.env, store_id, revision, &list) {
        tracing::warn!(error = %e, "cannot write the last-known-good cache");
    }
    pending.push(ReportBody {
        pulled_at,
        ..report(store_id, revision, None, address.clone(), None)
    });
    Ok((reloader, served))
}

/// Where a first generation comes from: a revision of a store, and the Manager's digest of
/// its state.
struct Origin {
    revision: u64,
    store_id: String,
    state_digest: String,
}

/// The first generation from the last-known-good cache.
fn from_cache<B>(
    opts: &ManagedOptions,
    build: &B,
    manager_error: &str,
) -> Result<(Reloader, Served), StartError>
where
    B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
{
    let no_config = |cache: String| StartError::NoConfig {
        manager: manager_error.to_string(),
        cache,
    };
    let file = match cache::load(&opts.cache_dir, &opts.env) {
        Ok(Some(file)) => file,
        Ok(None) => {
            let path = cache::path(&opts.cache_dir, &opts.env);
            return Err(no_config(format!("{} does not exist", path.display())));
        }
        Err(e) => return Err(no_config(e)),
    };
    let entities = state::entities_of(file.entities);
    let origin = Origin {
        revision: file.revision,
        store_id: file.store_id,
        state_digest: file.state_digest,
    };
    build_from(&opts.env, entities, origin, build).map_err(|e| {
        no_config(format!(
            "the cached revision {} does not compile: {e}",
            file.revision
        ))
    })
}

/// Parses `entities` and builds the first generation from them.
fn build_from<B>(
    env: &str,
    entities: Entities,
    origin: Origin,
    build: &B,
) -> Result<(Reloader, Served), ConfigErrors>
where
    B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
{
    let (parsed, numbering) = state::parse_set(env, &entities, origin.revision, &EntitySet::new())?;
    let reloader = build(&parsed.manifests(), &numbering)?;
    let served = Served {
        entities,
        parsed,
        revision: origin.revision,
        store_id: origin.store_id,
        state_digest: origin.state_digest,
    };
    Ok((reloader, served))
}
