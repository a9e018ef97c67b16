//! How `/metrics` answers: Prometheus text format 0.0.4 unless the scraper asks for
//! OpenMetrics. `prometheus-client` writes OpenMetrics only, and a Prometheus-format parser
//! (promtool, older Prometheus servers, most agents) reads its counters as untyped metrics
//! without help text; [`Format::render`] rewrites the few places where the formats differ.

use prometheus_client::registry::Registry;

/// An exposition format `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it ranks
    /// `application/openmetrics-text` at least as high as any text type it accepts, the
    /// Prometheus text format otherwise (no header, `*/*`, `text/plain`, anything else).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let mut openmetrics = 0.0_f32;
        let mut text = 0.0_f32;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case("text/plain")
                || media.eq_ignore_ascii_case("text/*")
                || media == "*/*"
            {
                text = text.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// `registry` encoded in this format.
    pub fn render(self, registry: &Registry) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, registry);
        match self {
            Format::OpenMetrics => out,
            Format::Prometheus => to_prometheus(&out),
        }
    }
}

/// OpenMetrics text as `prometheus-client` writes it, in Prometheus text format 0.0.4:
/// - a counter family `x` is declared as `x_total` (its samples' name), an info family `x`
///   as the gauge `x_info`, `unknown` as `untyped`, the other OpenMetrics-only types as
///   `untyped`;
/// - `# UNIT` and `# EOF` lines go.
///
/// Samples are unchanged: their names and values are the same in both formats (exemplars
/// are not used by Switchyard).
fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str("# HELP ");
                out.push_str(&family);
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(&family);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::metrics::info::Info;

    use super::*;

    #[test]
    fn negotiation_prefers_prometheus_text_unless_openmetrics_is_asked_for() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=1, application/openmetrics-text;q=0.5"
            )),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn prometheus_text_names_counter_families_by_their_samples() {
        let mut registry = Registry::with_prefix("sy");
        let c = Counter::<u64>::default();
        c.inc();
        registry.register("requests", "Requests answered", c);
        let g = Gauge::<i64>::default();
        registry.register("open", "Open things", g);
        registry.register("latency_seconds", "Latency", Histogram::new([0.1, 1.0]));
        registry.register(
            "build",
            "Build",
            Info::new(vec![("version".to_string(), "1".to_string())]),
        );
        let text = Format::Prometheus.render(&registry);
        assert!(text.contains("# HELP sy_requests_total Requests answered.\n# TYPE sy_requests_total counter\nsy_requests_total 1\n"), "{text}");
        assert!(text.contains("# TYPE sy_open gauge\nsy_open 0\n"), "{text}");
        assert!(
            text.contains("# TYPE sy_latency_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("# HELP sy_build_info Build.\n# TYPE sy_build_info gauge\nsy_build_info{version=\"1\"} 1\n"), "{text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        let om = Format::OpenMetrics.render(&registry);
        assert!(
            om.ends_with("# EOF\n") && om.contains("# TYPE sy_requests counter\n"),
            "{om}"
        );
    }
}
