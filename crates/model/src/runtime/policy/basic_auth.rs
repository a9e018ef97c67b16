//! `basic-auth`: users and password hashes from `basic-users` credentials.
//!
//! (Interface in place; verification is being implemented.)

use super::{CompileCtx, Exchange, FieldError, RequestView, Verdict};
use crate::manifest::BasicAuthSpec;

#[derive(Debug)]
pub struct BasicAuthPolicy {}

/// What the fast part of the check decided.
pub enum BasicAuthStep {
    /// Answered without hashing (no or malformed header, unknown user, cached result).
    Done(Verdict),
    /// A password hash must be verified: run [`BasicAuthPolicy::verify_task`] off the async
    /// threads, then [`BasicAuthPolicy::finish`].
    Verify { username: String, password: String },
}

pub fn compile(
    _spec: &BasicAuthSpec,
    _ctx: &CompileCtx<'_>,
) -> Result<BasicAuthPolicy, Vec<FieldError>> {
    Err(vec![FieldError::new(
        "type",
        "basic-auth is not available yet",
    )])
}

impl BasicAuthPolicy {
    pub fn on_request(&self, _req: &mut RequestView<'_>, _ex: &mut Exchange) -> BasicAuthStep {
        BasicAuthStep::Done(Verdict::Continue)
    }

    /// The slow part, to run on a blocking thread: verifies `password` against the user's
    /// hash (argon2 or bcrypt) and returns whether it matched.
    pub fn verify_task(
        &self,
        _username: String,
        _password: String,
    ) -> impl FnOnce() -> bool + Send + 'static {
        || false
    }

    /// The verdict after [`BasicAuthPolicy::verify_task`] returned `ok`.
    pub fn finish(&self, _username: &str, _ok: bool, _ex: &mut Exchange) -> Verdict {
        Verdict::Continue
    }
}
