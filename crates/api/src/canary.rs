//! Canary revisions (`apply --canary`): what an operator asks for ([`CanarySpec`]), where a
//! canary stands ([`CanaryStatus`]), what Workers are told ([`CanaryDirective`]) and what
//! they report per generation ([`GenerationCounters`]) for the Manager to judge it.
//!
//! Shares and rates are in parts per million ([`PPM`]): exact integers on the wire, 5% is
//! 50 000.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// 100%, in parts per million.
pub const PPM: u32 = 1_000_000;

/// At most this many steps in one canary.
pub const MAX_STEPS: usize = 10;

/// A step's default length (`--step-for`): 10 minutes.
pub const DEFAULT_STEP_SECS: u64 = 600;

/// The default `--max-error-rate`: 1 percentage point above the stable generation's.
pub const DEFAULT_MAX_ERROR_RATE_PPM: u32 = 10_000;

/// The default `--max-p99-increase`: 20% over the stable generation's p99.
pub const DEFAULT_MAX_P99_INCREASE_PPM: u32 = 200_000;

/// Fewer canary requests than this in a step's window judge nothing: no rollback for an
/// error rate, no promotion (the step waits for traffic).
pub const MIN_JUDGED_REQUESTS: u64 = 20;

/// Fewer requests than this on either side compare no p99.
pub const MIN_P99_REQUESTS: u64 = 100;

/// A canary's p99 is a breach only when it is also this much slower than the stable's
/// (seconds): below it, a relative increase is noise (a loaded host, a cold connection
/// pool), not a regression.
pub const P99_NOISE_FLOOR_SECONDS: f64 = 0.005;

/// The upper bounds (seconds) of the request-duration buckets Workers report per
/// generation ([`GenerationCounters::duration_buckets`]): 0.5 ms doubling to ~16 s, then
/// +Inf. The Workers' `switchyard_generation_request_duration_seconds` histogram's.
pub fn duration_bounds() -> [f64; 16] {
    std::array::from_fn(|i| 0.0005 * f64::from(1u32 << i))
}

/// How requests are assigned to the canary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CanaryKey {
    /// A weighted random draw per request.
    #[default]
    Random,
    /// A hash of this request header's value: a given value lands on the same generation
    /// on every Worker (a request without the header gets a random draw).
    Header {
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
        name: String,
    },
    /// A hash of the client's IP address.
    ClientIp,
}

impl fmt::Display for CanaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanaryKey::Random => f.write_str("random"),
            CanaryKey::Header { name } => write!(f, "header:{name}"),
            CanaryKey::ClientIp => f.write_str("client-ip"),
        }
    }
}

impl FromStr for CanaryKey {
    type Err = String;

    /// `random`, `client-ip` or `header:NAME`.
    fn from_str(s: &str) -> Result<CanaryKey, String> {
        let key = match s {
            "random" => CanaryKey::Random,
            "client-ip" => CanaryKey::ClientIp,
            _ => match s.strip_prefix("header:") {
                Some(name) => CanaryKey::Header {
                    name: name.to_string(),
                },
                None => {
                    return Err(format!(
                        "{s:?} is not a canary key: use random, client-ip or header:NAME"
                    ));
                }
            },
        };
        key.validate()?;
        Ok(key)
    }
}

impl CanaryKey {
    /// A header key must name a valid header.
    pub fn validate(&self) -> Result<(), String> {
        if let CanaryKey::Header { name } = self
            && http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(format!("canary key: {name:?} is not a valid header name"));
        }
        Ok(())
    }
}

/// A canary as asked for (`ApplyRequest::canary`): the shares it goes through, each held
/// for `step_secs` while its numbers stay within the limits, then 100%.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// The canary's share at each step, in parts per million, increasing, each below
    /// 100% (the last step that holds promotes it to 100%).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10))]
    pub steps_ppm: Vec<u32>,
    #[serde(default)]
    pub key: CanaryKey,
    /// How long each step is held before it is judged to have held.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub step_secs: u64,
    /// The canary is rolled back when its error rate (gateway errors and upstream 5xx per
    /// request) exceeds the stable generation's by more than this, in parts per million.
    #[cfg_attr(feature = "openapi", schema(maximum = 1000000))]
    pub max_error_rate_ppm: u32,
    /// The canary is rolled back when its p99 request duration exceeds the stable
    /// generation's by more than this fraction, in parts per million (200 000: +20%).
    #[cfg_attr(feature = "openapi", schema(maximum = 100000000))]
    pub max_p99_increase_ppm: u32,
    /// Count policy denials as errors (default: counted apart — a firewall rule that
    /// denies more is not failing, unless this says it is).
    #[serde(default)]
    pub denials_are_errors: bool,
}

impl CanarySpec {
    /// One step at `share_ppm` with the defaults.
    pub fn at(share_ppm: u32) -> CanarySpec {
        CanarySpec {
            steps_ppm: vec![share_ppm],
            key: CanaryKey::Random,
            step_secs: DEFAULT_STEP_SECS,
            max_error_rate_ppm: DEFAULT_MAX_ERROR_RATE_PPM,
            max_p99_increase_ppm: DEFAULT_MAX_P99_INCREASE_PPM,
            denials_are_errors: false,
        }
    }

    /// Every problem with it, each naming its field.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if self.steps_ppm.is_empty() || self.steps_ppm.len() > MAX_STEPS {
            errors.push(format!("canary.steps_ppm: 1 to {MAX_STEPS} steps"));
        }
        if let Some(s) = self.steps_ppm.iter().find(|s| **s == 0 || **s >= PPM) {
            errors.push(format!(
                "canary.steps_ppm: {} is not a share above 0% and below 100%",
                percent(*s)
            ));
        }
        if self.steps_ppm.windows(2).any(|w| w[0] >= w[1]) {
            errors.push(
                "canary.steps_ppm: each step's share must be larger than the one before".into(),
            );
        }
        if !(1..=86_400).contains(&self.step_secs) {
            errors.push("canary.step_secs: 1 s to 24 h".into());
        }
        if self.max_error_rate_ppm > PPM {
            errors.push("canary.max_error_rate_ppm: at most 100%".into());
        }
        if self.max_p99_increase_ppm > 100 * PPM {
            errors.push("canary.max_p99_increase_ppm: at most 10000%".into());
        }
        if let Err(e) = self.key.validate() {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// `12.5%` for 125 000 parts per million.
pub fn percent(ppm: u32) -> String {
    let whole = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        format!("{whole}%")
    } else {
        let text = format!("{whole}.{frac:04}");
        format!("{}%", text.trim_end_matches('0'))
    }
}

/// `5%`, `0.5%`, `12.25%` as parts per million (at most 4 decimals, 0..=100).
pub fn parse_percent(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a percentage like 5% or 0.5%");
    let number = text.trim().strip_suffix('%').ok_or_else(bad)?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty()
        || frac.len() > 4
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<4}").parse().map_err(|_| bad())?;
    let ppm = whole
        .checked_mul(10_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    Ok(ppm)
}

/// `POST /v1/envs/{env}/canary/promote` and `…/abort`: finishing a canary by hand.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryAction {
    /// Why, in words: kept in the audit record and the canary's `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub reason: Option<String>,
}

/// Where a canary is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryState {
    /// Serving its step's share beside the stable revision.
    Running,
    /// Every step held (or an operator promoted it): it is the revision served.
    Promoted,
    /// Its numbers breached a limit: a new revision with the stable content was committed.
    RolledBack,
    /// An operator aborted it: a new revision with the stable content was committed.
    Aborted,
}

impl CanaryState {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Running => "running",
            CanaryState::Promoted => "promoted",
            CanaryState::RolledBack => "rolled-back",
            CanaryState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<CanaryState> {
        [
            CanaryState::Running,
            CanaryState::Promoted,
            CanaryState::RolledBack,
            CanaryState::Aborted,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// One generation's numbers over the current step's window, summed over the Workers that
/// reported them to the Manager answering.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowNumbers {
    pub revision: u64,
    pub requests: u64,
    /// Gateway errors (502/503/504 of its own, cut responses) and upstream 5xx.
    pub errors: u64,
    /// Policy denials, counted apart: not errors.
    pub denials: u64,
    /// `errors / requests` in parts per million (`None`: no requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_ppm: Option<u32>,
    /// The upper bound of the duration bucket holding the 99th percentile (`None`: no
    /// requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_seconds: Option<f64>,
    /// Workers whose numbers are in it.
    pub workers: u32,
}

/// `GET /v1/envs/{env}/canary`: the environment's latest canary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryStatus {
    pub env: String,
    /// The canary revision.
    pub revision: u64,
    /// The revision served beside it (and returned to on a rollback).
    pub stable_revision: u64,
    pub spec: CanarySpec,
    pub state: CanaryState,
    /// The step it is at (0-based; the last one it reached once ended).
    pub step: u32,
    /// The share of the current step (0 once ended).
    pub share_ppm: u32,
    pub actor: String,
    pub started_at: i64,
    pub step_started_at: i64,
    /// When the current step is due to be judged (`None` once ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ends_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// Why it ended (the numbers that triggered a rollback, who aborted or promoted it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The revision committed when it was rolled back or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_revision: Option<u64>,
    /// The current step's numbers (while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<WindowNumbers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<WindowNumbers>,
    /// What the Manager is waiting for, or why the step holds so far, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// In a pull (`SyncPayload::canary`) while a canary runs: the payload's revision is served
/// as a canary beside `stable_revision`, to `share_ppm` of requests chosen by `key`. A
/// Worker not at `stable_revision` pulls it first (`?at=`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryDirective {
    pub revision: u64,
    pub stable_revision: u64,
    pub share_ppm: u32,
    pub key: CanaryKey,
}

/// One live generation's running totals on a Worker (in `StatsBody::generations`): the
/// Manager judges a canary by their growth over a step.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationCounters {
    #[serde(deserialize_with = "crate::integral::revision")]
    pub revision: u64,
    #[serde(deserialize_with = "crate::integral::u64")]
    pub requests: u64,
    /// Gateway errors and upstream 5xx.
    #[serde(deserialize_with = "crate::integral::u64")]
    pub errors: u64,
    #[serde(deserialize_with = "crate::integral::u64")]
    pub denials: u64,
    /// Requests per duration bucket ([`duration_bounds`], then +Inf): 17 counts.
    #[cfg_attr(feature = "openapi", schema(max_items = 17))]
    pub duration_buckets: Vec<u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentages_read_and_print_exactly() {
        assert_eq!(parse_percent("5%"), Ok(50_000));
        assert_eq!(parse_percent("0.5%"), Ok(5_000));
        assert_eq!(parse_percent("12.25%"), Ok(122_500));
        assert_eq!(parse_percent("100%"), Ok(PPM));
        assert!(parse_percent("5").is_err());
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("0.00001%").is_err());
        assert!(parse_percent("99999999999%").is_err());
        assert_eq!(percent(50_000), "5%");
        assert_eq!(percent(5_000), "0.5%");
        assert_eq!(percent(122_500), "12.25%");
    }

    #[test]
    fn a_spec_names_each_problem() {
        assert!(CanarySpec::at(50_000).validate().is_ok());
        let bad = CanarySpec {
            steps_ppm: vec![50_000, 10_000, PPM],
            ..CanarySpec::at(1)
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("100%"), "{e}");
        assert!(e.contains("larger than the one before"), "{e}");
        assert_eq!(
            "header:x-user-id".parse::<CanaryKey>(),
            Ok(CanaryKey::Header {
                name: "x-user-id".into()
            })
        );
        assert!("header:bad name".parse::<CanaryKey>().is_err());
        assert!("cookie".parse::<CanaryKey>().is_err());
    }

    #[test]
    fn the_bounds_are_the_workers_histograms() {
        let b = duration_bounds();
        assert_eq!(b[0], 0.0005);
        assert_eq!(b[15], 0.0005 * 32768.0);
    }
}
