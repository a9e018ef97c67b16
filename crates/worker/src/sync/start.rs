//! The first generation of a Worker that follows a Manager: the Manager's current revision
//! if it answers in time, else the last-known-good cache.

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
    ) -> Result<(Reloader, SyncState, &'static str, Option<String>), StartError>
    where
        B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
    {
        let client = opts.client()?;
        let mut pending = Vec::new();
        let manager_error = match from_manager(&opts, &client, &build, &mut pending).await {
            Ok((reloader, served)) => {
                return Ok((reloader, SyncState::new(served, pending), "manager", None));
            }
            Err(e) => e,
        };
        tracing::warn!(error = %manager_error, "Manager unavailable at start; trying the last-known-good cache");
        let (reloader, served) = from_cache(&opts, &build, &manager_error)?;
        tracing::warn!(
            revision = served.revision,
            "serving the last-known-good cache until the Manager answers"
        );
        let state = SyncState::new(served, pending);
        Ok((reloader, state, "cache", Some(manager_error)))
    }
}

impl SyncState {
    fn new(served: Served, pending: Vec<switchyard_api::sync::ReportBody>) -> SyncState {
        SyncState {
            served,
            rejected: None,
            pending,
        }
    }
}

/// The first generation from the Manager's current revision (its ACK queued), or why not
/// (a NACK queued when that revision does not compile here).
async fn from_manager<B>(
    opts: &ManagedOptions,
    client: &SyncClient,
    build: &B,
    pending: &mut Vec<switchyard_api::sync::ReportBody>,
) -> Result<(Reloader, Served), String>
where
    B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
{
    let payload = match tokio::time::timeout(opts.start_timeout, client.pull(0)).await {
        Ok(Ok(payload)) => payload,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {:?}", opts.start_timeout)),
    };
    let entities = state::merge(&Entities::new(), &payload)?;
    let address = opts.address.clone();
    match build_from(&opts.env, entities, payload.revision, build) {
        Ok((reloader, served)) => {
            let list: Vec<_> = served.entities.values().cloned().collect();
            if let Err(e) = cache::save(&opts.cache_dir, &opts.env, payload.revision, &list) {
                tracing::warn!(error = %e, "cannot write the last-known-good cache");
            }
            pending.push(report(payload.revision, None, address));
            Ok((reloader, served))
        }
        Err(errors) => {
            pending.push(report(payload.revision, Some(errors.to_string()), address));
            Err(format!("revision {} rejected: {errors}", payload.revision))
        }
    }
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
    build_from(&opts.env, entities, file.revision, build).map_err(|e| {
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
    revision: u64,
    build: &B,
) -> Result<(Reloader, Served), ConfigErrors>
where
    B: Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
{
    let (parsed, numbering) = state::parse_set(env, &entities, revision, &EntitySet::new())?;
    let reloader = build(&parsed.manifests(), &numbering)?;
    let served = Served {
        entities,
        parsed,
        revision,
    };
    Ok((reloader, served))
}
