//! `--otlp-endpoint`, `--otlp-protocol`, `--trace-sample-ratio`: trace export for
//! `switchyard worker` and `switchyard manager`. Each flag overrides its standard
//! `OTEL_*` environment variable (docs/tracing.md); without an endpoint tracing is off.

use switchyard_telemetry::otlp::{OtlpProtocol, TraceConfig, TraceFlags};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Export spans to this OTLP endpoint (base URL; for http/protobuf `/v1/traces` is
    /// appended). Overrides OTEL_EXPORTER_OTLP_ENDPOINT. Without one, tracing is off.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport. Overrides OTEL_EXPORTER_OTLP_PROTOCOL (default http/protobuf).
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Share of new traces sampled, 0 to 1 (`parentbased_traceidratio`: a caller's sampled
    /// flag is followed). Overrides OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
    /// (default parentbased_always_on).
    #[arg(long, value_name = "RATIO")]
    pub trace_sample_ratio: Option<f64>,
}

impl TraceArgs {
    /// The flags over the `OTEL_*` environment variables.
    pub fn config(&self, default_service: &str) -> anyhow::Result<TraceConfig> {
        let flags = TraceFlags {
            endpoint: self.otlp_endpoint.clone(),
            protocol: self.otlp_protocol,
            sample_ratio: self.trace_sample_ratio,
            service_name: None,
        };
        TraceConfig::resolve(&flags, default_service).map_err(anyhow::Error::msg)
    }
}
