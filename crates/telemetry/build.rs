//! Records the commit the binary is built from, for `switchyard_build_info`: the
//! `SWITCHYARD_COMMIT` environment variable if set (a Docker build has no `.git`), else
//! `git rev-parse`, else "unknown". Rebuilt when either changes.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo::rerun-if-env-changed=SWITCHYARD_COMMIT");
    let commit = match std::env::var("SWITCHYARD_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => {
            // HEAD moves with commits and checkouts (in a worktree too: --git-dir finds it).
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                for file in ["HEAD", "logs/HEAD"] {
                    let path = Path::new(&dir).join(file);
                    if path.exists() {
                        println!("cargo::rerun-if-changed={}", path.display());
                    }
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo::rustc-env=SWITCHYARD_COMMIT={commit}");
}
