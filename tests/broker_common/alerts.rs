//! The alert scenario the broker tests share: a query counting completions
//! by tenant, an alert when a tenant passes 5, and ten tasks of which eight
//! are one tenant's, so that exactly one alert fires.

use tidewater::config::Config;
use tidewater::monitoring::{AlertRule, Comparison};
use tidewater_dataflows::monitor::{Aggregate, Dimension, Filter, QuerySpec, Window};
use tidewater_operators::model::MetricKind;

use super::task_json;

/// The alert that fires, and the routing key / message key of its event.
pub const ALERT: &str = "busy_tenant";
pub const FIRING_KEY: &str = "busy_tenant.firing";

/// Adds the query and the alert rule to `config`.
pub fn configure(config: &mut Config) {
    config.queries = vec![QuerySpec {
        name: "completed_by_tenant".into(),
        filter: Filter {
            metric: Some(MetricKind::Completed),
            ..Filter::default()
        },
        group_by: vec![Dimension::Tenant],
        aggregates: vec![Aggregate::Count],
        window: Window::None,
    }];
    config.alerts = vec![AlertRule {
        name: ALERT.into(),
        query: "completed_by_tenant".into(),
        aggregate: "count".into(),
        op: Comparison::Above,
        threshold: 5.0,
        for_ms: 0,
        webhook: None,
    }];
}

/// Eight tasks for acme (over the threshold), two for globex (under).
pub fn tasks() -> Vec<Vec<u8>> {
    (0..10)
        .map(|i| {
            let tenant = if i < 8 { "acme" } else { "globex" };
            task_json(&format!("alert-{i}"), "noop", tenant)
        })
        .collect()
}

/// Checks the one event: acme's alert firing, with a value past 5 (the
/// alert is evaluated every 250 ms while the tasks complete).
pub fn assert_acme_fired(event: &serde_json::Value) {
    assert_eq!(event["alert"], ALERT);
    assert_eq!(event["state"], "firing");
    assert_eq!(event["group"]["tenant"], "acme");
    let value = event["value"].as_f64().expect("value");
    assert!(value > 5.0 && value <= 8.0, "{event}");
    assert_eq!(event["threshold"], 5.0);
}
