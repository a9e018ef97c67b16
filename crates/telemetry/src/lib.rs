//! What the Manager and the Worker share to be observed: how `/metrics` answers
//! (Prometheus text 0.0.4 or OpenMetrics, by `Accept`), the standard `process_*` and
//! `switchyard_build_info` metrics, and trace context.

pub mod exposition;
pub mod histogram;
pub mod labels;
pub mod otlp;
pub mod process;
pub mod trace_context;
