//! W3C trace context (`traceparent`), request ids (`x-request-id`), and the head sampler:
//! what a request's trace needs on the request path, without allocating and without locks.
//!
//! Ids come from a per-thread `wyrand` generator seeded once per thread from the operating
//! system: no syscall, no lock and no shared cache line per request. They are unique
//! enough for trace and request ids; they are not secrets.

use std::cell::Cell;

use http::{HeaderMap, HeaderValue};

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header (passed on unchanged).
pub const TRACESTATE: &str = "tracestate";
/// The request id header, kept when well-formed, generated otherwise.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The longest request id kept from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

/// A parsed `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    /// The caller's span: the parent of the spans made for this request.
    pub span_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value as W3C Trace Context level 1 says: lowercase hex, a
    /// version other than `ff`, non-zero ids; version `00` is exactly 55 bytes, and a later
    /// version may carry more fields after a `-`.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() < 55 {
            return None;
        }
        let version = hex_u8(&value[0..2])?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex_u128(&value[3..35])?;
        let span_id = hex_u64(&value[36..52])?;
        let flags = hex_u8(&value[53..55])?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The header's bytes (version `00`), on the stack.
    pub fn format(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[0] = b'0';
        out[1] = b'0';
        out[2] = b'-';
        out[3..35].copy_from_slice(&hex32(self.trace_id));
        out[35] = b'-';
        out[36..52].copy_from_slice(&hex16(self.span_id));
        out[52] = b'-';
        let f = [
            HEX[usize::from(self.flags >> 4)],
            HEX[usize::from(self.flags & 0xf)],
        ];
        out[53..55].copy_from_slice(&f);
        out
    }

    /// The header's value (its one allocation).
    pub fn header_value(&self) -> HeaderValue {
        match HeaderValue::from_bytes(&self.format()) {
            Ok(v) => v,
            // Lowercase hex and dashes are always a valid header value.
            Err(_) => {
                HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
            }
        }
    }
}

/// The caller's span from `headers` (`traceparent`, with its `tracestate`) as an
/// OpenTelemetry context to start spans in; the empty context when there is none (or it is
/// malformed).
pub fn remote_context(headers: &HeaderMap) -> opentelemetry::Context {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    let Some(p) = headers
        .get(TRACEPARENT)
        .and_then(|v| TraceParent::parse(v.as_bytes()))
    else {
        return opentelemetry::Context::new();
    };
    let state = headers
        .get(TRACESTATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceState>().ok())
        .unwrap_or_default();
    let sc = SpanContext::new(
        TraceId::from(p.trace_id),
        SpanId::from(p.span_id),
        TraceFlags::new(p.flags),
        true,
        state,
    );
    opentelemetry::Context::new().with_remote_span_context(sc)
}

/// One request's place in a trace: its own span, and the caller's when it continues one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTrace {
    pub trace_id: u128,
    /// This hop's span: the parent the upstream sees.
    pub span_id: u64,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent: Option<u64>,
    pub sampled: bool,
}

impl RequestTrace {
    /// Continues the trace of `incoming` (a valid `traceparent`) with a new span, or starts
    /// a new trace; sampled as `sampler` decides.
    pub fn begin(incoming: Option<&HeaderValue>, sampler: &Sampler) -> RequestTrace {
        let parent = incoming.and_then(|v| TraceParent::parse(v.as_bytes()));
        let trace_id = parent.map_or_else(new_trace_id, |p| p.trace_id);
        RequestTrace {
            trace_id,
            span_id: new_span_id(),
            parent: parent.map(|p| p.span_id),
            sampled: sampler.should_sample(parent.as_ref(), trace_id),
        }
    }

    /// The `traceparent` sent upstream: this trace, this hop's span as the parent.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: if self.sampled { FLAG_SAMPLED } else { 0 },
        }
    }
}

/// The head sampler: `OTEL_TRACES_SAMPLER`'s `always_on`, `always_off`, `traceidratio` and
/// their `parentbased_` forms (a caller's `sampled` flag is followed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    root: Root,
    parent_based: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Sampled when the trace id's low 64 bits are below this (`ratio * 2^64`).
    Ratio {
        ratio: f64,
        below: u64,
    },
}

impl Default for Sampler {
    /// The OpenTelemetry default: `parentbased_always_on`.
    fn default() -> Self {
        Sampler {
            root: Root::AlwaysOn,
            parent_based: true,
        }
    }
}

impl Sampler {
    pub const ALWAYS_OFF: Sampler = Sampler {
        root: Root::AlwaysOff,
        parent_based: false,
    };

    /// `parentbased_traceidratio` with `ratio` (clamped to 0..=1): what `--trace-sample-ratio`
    /// sets.
    pub fn parent_based_ratio(ratio: f64) -> Sampler {
        Sampler {
            root: Self::ratio_root(ratio),
            parent_based: true,
        }
    }

    fn ratio_root(ratio: f64) -> Root {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        if ratio >= 1.0 {
            return Root::AlwaysOn;
        }
        // `as` saturates; exact enough for a sampling threshold.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let below = (ratio * 18_446_744_073_709_551_616.0) as u64;
        Root::Ratio { ratio, below }
    }

    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1.0).
    pub fn from_otel(name: &str, arg: Option<&str>) -> Result<Sampler, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(a) => match a.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(format!(
                        "OTEL_TRACES_SAMPLER_ARG {a:?} is not a ratio between 0 and 1"
                    )),
                },
            }
        };
        let (root, parent_based) = match name.trim() {
            "always_on" => (Root::AlwaysOn, false),
            "always_off" => (Root::AlwaysOff, false),
            "traceidratio" => (Self::ratio_root(ratio()?), false),
            "parentbased_always_on" => (Root::AlwaysOn, true),
            "parentbased_always_off" => (Root::AlwaysOff, true),
            "parentbased_traceidratio" => (Self::ratio_root(ratio()?), true),
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER {other:?} is not supported (always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio)"
                ));
            }
        };
        Ok(Sampler { root, parent_based })
    }

    /// The ratio of new traces sampled.
    pub fn ratio(&self) -> f64 {
        match self.root {
            Root::AlwaysOn => 1.0,
            Root::AlwaysOff => 0.0,
            Root::Ratio { ratio, .. } => ratio,
        }
    }

    pub fn parent_based(&self) -> bool {
        self.parent_based
    }

    /// Whether a request of trace `trace_id`, continuing `parent` if any, is sampled.
    pub fn should_sample(&self, parent: Option<&TraceParent>, trace_id: u128) -> bool {
        if self.parent_based
            && let Some(p) = parent
        {
            return p.sampled();
        }
        match self.root {
            Root::AlwaysOn => true,
            Root::AlwaysOff => false,
            // The low 64 bits: the random part of a W3C level 2 trace id.
            #[allow(clippy::cast_possible_truncation)]
            Root::Ratio { below, .. } => (trace_id as u64) < below,
        }
    }
}

/// A well-formed request id: 1 to 128 visible ASCII characters, no space, no comma.
pub fn valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The request's id: its `x-request-id` when there is exactly one and it is well-formed
/// (kept as is, no copy), a new one otherwise.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut ids = headers.get_all(X_REQUEST_ID).iter();
    match (ids.next(), ids.next()) {
        (Some(v), None) if valid_request_id(v.as_bytes()) => v.clone(),
        _ => new_request_id(),
    }
}

/// A new request id: 128 random bits as 32 lowercase hex digits.
pub fn new_request_id() -> HeaderValue {
    let id = hex32(new_trace_id());
    match HeaderValue::from_bytes(&id) {
        Ok(v) => v,
        Err(_) => HeaderValue::from_static("0"),
    }
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> u128 {
    loop {
        let id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        if id != 0 {
            return id;
        }
    }
}

/// A new, non-zero span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = random_u64();
        if id != 0 {
            return id;
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// Seeded from the standard library's per-thread random keys (from the operating system
/// once per thread), mixed with the thread's id.
fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id())
}

/// `wyrand`: one multiply per 64 bits. Per thread, seeded from the operating system: not for
/// secrets.
pub fn random_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        #[allow(clippy::cast_possible_truncation)]
        let r = (t >> 64) as u64 ^ t as u64;
        r
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `v` as 32 lowercase hex digits.
pub fn hex32(v: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// `v` as 16 lowercase hex digits.
pub fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_u8(s: &[u8]) -> Option<u8> {
    Some(hex_digit(s[0])? << 4 | hex_digit(s[1])?)
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    s.iter()
        .try_fold(0u64, |acc, &b| Some(acc << 4 | u64::from(hex_digit(b)?)))
}

fn hex_u128(s: &[u8]) -> Option<u128> {
    s.iter()
        .try_fold(0u128, |acc, &b| Some(acc << 4 | u128::from(hex_digit(b)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let p = TraceParent::parse(EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(p.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(p.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(p.sampled());
        assert_eq!(&p.format()[..], EXAMPLE.as_bytes());
        assert_eq!(p.header_value(), EXAMPLE);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // Zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, and version 00 with more after it.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version may add fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        let p = TraceParent::parse(later.as_bytes()).expect("future version");
        assert!(!p.sampled());
    }

    #[test]
    fn a_request_continues_the_callers_trace_with_a_new_span() {
        let incoming = HeaderValue::from_static(EXAMPLE);
        let t = RequestTrace::begin(Some(&incoming), &Sampler::default());
        assert_eq!(t.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(t.parent, Some(0x00f0_67aa_0ba9_02b7));
        assert_ne!(t.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(t.sampled);
        let out = t.traceparent();
        assert_eq!(out.trace_id, t.trace_id);
        assert_eq!(out.span_id, t.span_id);
        assert!(out.sampled());
    }

    #[test]
    fn a_request_without_a_valid_traceparent_starts_a_trace() {
        let bad = HeaderValue::from_static("garbage");
        for incoming in [None, Some(&bad)] {
            let t = RequestTrace::begin(incoming, &Sampler::default());
            assert_eq!(t.parent, None);
            assert_ne!(t.trace_id, 0);
            assert!(t.sampled);
        }
        let a = RequestTrace::begin(None, &Sampler::default());
        let b = RequestTrace::begin(None, &Sampler::default());
        assert_ne!(a.trace_id, b.trace_id);
    }

    #[test]
    fn parent_based_sampling_follows_the_callers_flag() {
        let sampled = TraceParent::parse(EXAMPLE.as_bytes()).expect("valid");
        let unsampled = TraceParent {
            flags: 0,
            ..sampled
        };
        let never = Sampler::parent_based_ratio(0.0);
        assert!(never.should_sample(Some(&sampled), sampled.trace_id));
        assert!(!never.should_sample(None, sampled.trace_id));
        let always = Sampler::parent_based_ratio(1.0);
        assert!(!always.should_sample(Some(&unsampled), 1));
        assert!(always.should_sample(None, 1));
        // Not parent-based: the caller's flag is not followed.
        let own = Sampler::from_otel("always_off", None).expect("valid");
        assert!(!own.should_sample(Some(&sampled), sampled.trace_id));
    }

    #[test]
    fn ratio_sampling_samples_about_the_ratio() {
        let s = Sampler::from_otel("traceidratio", Some("0.25")).expect("valid");
        assert!((s.ratio() - 0.25).abs() < f64::EPSILON);
        let n = 40_000;
        let hits = (0..n)
            .filter(|_| s.should_sample(None, new_trace_id()))
            .count();
        let share = hits as f64 / f64::from(n);
        assert!((0.23..0.27).contains(&share), "{share}");
    }

    #[test]
    fn otel_sampler_names() {
        assert_eq!(
            Sampler::from_otel("parentbased_always_on", None),
            Ok(Sampler::default())
        );
        assert!(Sampler::from_otel("always_off", None).is_ok());
        assert!(Sampler::from_otel("jaeger_remote", None).is_err());
        assert!(Sampler::from_otel("traceidratio", Some("2")).is_err());
        assert!(Sampler::from_otel("traceidratio", Some("x")).is_err());
        let s = Sampler::from_otel("parentbased_traceidratio", Some("0.01")).expect("valid");
        assert!(s.parent_based());
        assert!((s.ratio() - 0.01).abs() < f64::EPSILON);
    }

    #[test]
    fn request_ids_are_kept_when_well_formed() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_XYZ:/=+"));
        assert_eq!(request_id(&h), "abc-123_XYZ:/=+");
        for bad in ["", "has space", "a,b", &"x".repeat(129)] {
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).expect("header"));
            let id = request_id(&h);
            assert_ne!(id, bad);
            assert!(valid_request_id(id.as_bytes()));
        }
        assert!(valid_request_id("x".repeat(128).as_bytes()));
        // Non-ASCII bytes.
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_bytes(b"caf\xc3\xa9").expect("obs-text"),
        );
        assert_eq!(request_id(&h).len(), 32);
        // Two of them: neither is the request's.
        h.insert(X_REQUEST_ID, HeaderValue::from_static("one"));
        h.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        assert_eq!(request_id(&h).len(), 32);
    }

    #[test]
    fn generated_request_ids_are_hex_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn hex_formats() {
        assert_eq!(&hex16(0xab), b"00000000000000ab");
        assert_eq!(&hex32(1 << 127)[..2], b"80");
    }
}
