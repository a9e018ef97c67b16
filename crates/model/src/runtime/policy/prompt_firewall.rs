//! `prompt-firewall`: the text of LLM requests checked against named rules.
//! (Interface in place; inspection is being implemented.)

use super::{FieldError, Verdict};
use crate::manifest::PromptFirewallSpec;

#[derive(Debug)]
pub struct PromptFirewallPolicy {
    pub max_body_bytes: u64,
}

pub fn compile(_spec: &PromptFirewallSpec) -> Result<PromptFirewallPolicy, Vec<FieldError>> {
    Err(vec![FieldError::new(
        "type",
        "prompt-firewall is not available yet",
    )])
}

impl PromptFirewallPolicy {
    /// Inspects a whole request body (at most `max_body_bytes`).
    pub fn inspect(&self, _body: &[u8]) -> Verdict {
        Verdict::Continue
    }

    /// The verdict for a body larger than `max_body_bytes` (never read whole).
    pub fn oversized(&self) -> Verdict {
        Verdict::Continue
    }
}
