//! The monitoring agent's runtime side: the Prometheus exporter and alerts.
//! The queries themselves run in the dataflow (`tidewater_dataflows::monitor`).

mod alerts;
mod board;
mod exporter;
mod http;

pub use alerts::{
    spawn_alerts, validate_alerts, AlertEvaluator, AlertEvent, AlertRule, AlertRuleError,
    AlertSink, AlertState, Comparison,
};
pub use board::{AlertBoard, AlertsView, FiringAlert};
pub use exporter::Exporter;
pub use http::{routes, MonitoringApi};
