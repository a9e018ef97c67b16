//! `switchyard validate PATHS…`: check manifests without running anything; every problem
//! is printed with file:line:col.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Resolve `${NAME}` variables for this environment (from the files' kind:
    /// Environment document named so), as `switchyard apply --env` would.
    #[arg(long)]
    pub env: Option<String>,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let (paths, env) = (&args.paths, args.env.as_deref());
    let mut manifests = Vec::new();
    let mut failed = false;
    if let Some(env) = env {
        match switchyard_config::for_env::load_paths(paths, env, None) {
            Ok(set) => manifests = set.manifests,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    for p in paths.iter().filter(|_| env.is_none()) {
        match switchyard_config::load_path(p) {
            Ok(mut m) => manifests.append(&mut m),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !failed {
        match switchyard_engine::compile(&manifests, None) {
            Ok(c) => {
                eprintln!(
                    "ok: {} document(s), {} proxy(ies), no problems found",
                    manifests.len(),
                    c.snapshot.proxy_count()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
