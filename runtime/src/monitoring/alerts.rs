//! Alerts: rules over continuous queries that raise and resolve alert
//! events.
//!
//! A rule names a query, one of its aggregates, a comparison and a
//! threshold, and how long the condition must hold (`for_ms`). Each group of
//! the query is evaluated separately. A group whose condition holds becomes
//! *pending*, then *firing* once it held for `for_ms`; it *resolves* when the
//! condition stops holding (or the group disappears). Firing and resolving
//! emit an [`AlertEvent`] to the log, to the webhook if one is configured,
//! to every broker sink (the RabbitMQ alerts exchange, routing key
//! `{alert}.{state}`), to the [`AlertBoard`] that `GET /v1/alerts` reads,
//! and set the `tidewater_alert_firing` gauge.
//!
//! ```text
//!  QueryResults ─► evaluate (every 250 ms) ─► AlertEvent ─┬─► log (tracing)
//!                                                        ├─► webhook (POST JSON)
//!                                                        ├─► broker sinks (JSON)
//!                                                        ├─► AlertBoard (API)
//!                                                        └─► gauge
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tidewater_dataflows::monitor::{QueryResults, QuerySpec};
use tidewater_operators::model::now_micros;

use super::{AlertBoard, Exporter};

/// How a value is compared with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// Fires above the threshold.
    #[serde(rename = ">")]
    Above,
    /// Fires below the threshold.
    #[serde(rename = "<")]
    Below,
}

/// An alert rule from the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The alert's name.
    pub name: String,
    /// The query it watches.
    pub query: String,
    /// Which aggregate of the query (`count`, `avg`, `p99`, …).
    pub aggregate: String,
    /// `>` or `<`.
    pub op: Comparison,
    /// The threshold.
    pub threshold: f64,
    /// How long the condition must hold before the alert fires, ms.
    #[serde(default)]
    pub for_ms: u64,
    /// A URL that receives each alert event as a JSON POST.
    #[serde(default)]
    pub webhook: Option<String>,
}

/// Why an alert rule is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertRuleError {
    /// The query does not exist.
    #[error("alert {alert:?} watches unknown query {query:?}")]
    UnknownQuery {
        /// The alert.
        alert: String,
        /// The query.
        query: String,
    },
    /// The aggregate is not one of the query's.
    #[error("alert {alert:?}: query {query:?} has no aggregate {aggregate:?} (it has {known:?})")]
    UnknownAggregate {
        /// The alert.
        alert: String,
        /// The query.
        query: String,
        /// The aggregate asked for.
        aggregate: String,
        /// The query's aggregates.
        known: Vec<String>,
    },
}

/// Checks rules against the queries they watch.
pub fn validate_alerts(rules: &[AlertRule], queries: &[QuerySpec]) -> Result<(), AlertRuleError> {
    for rule in rules {
        let Some(query) = queries.iter().find(|q| q.name == rule.query) else {
            return Err(AlertRuleError::UnknownQuery {
                alert: rule.name.clone(),
                query: rule.query.clone(),
            });
        };
        let known: Vec<String> = query.aggregates.iter().map(|a| a.label()).collect();
        if !known.contains(&rule.aggregate) {
            return Err(AlertRuleError::UnknownAggregate {
                alert: rule.name.clone(),
                query: rule.query.clone(),
                aggregate: rule.aggregate.clone(),
                known,
            });
        }
    }
    Ok(())
}

/// Whether an alert started or stopped firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition held for the rule's duration.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// An alert raised or resolved, for one group of the watched query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The alert.
    pub alert: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// The group of the query, by dimension.
    pub group: BTreeMap<String, String>,
    /// The value that crossed (or went back over) the threshold.
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// The query epoch the value is as of.
    pub as_of: Option<u64>,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl AlertEvent {
    /// The routing key for broker sinks: `{alert}.{firing|resolved}`.
    pub fn routing_key(&self) -> String {
        let state = match self.state {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        };
        format!("{}.{state}", self.alert)
    }
}

/// A broker that receives alert events (as JSON).
pub trait AlertSink: Send + Sync {
    /// Publishes one event; delivery is the sink's business (the RabbitMQ
    /// connector confirms it and holds it across reconnections).
    fn publish(&self, routing_key: &str, body: Vec<u8>);
}

#[derive(Clone, Copy, Debug)]
enum GroupState {
    Pending { since_ms: u64 },
    Firing,
}

/// Evaluates rules over query results.
pub struct AlertEvaluator {
    rules: Vec<AlertRule>,
    states: Vec<HashMap<BTreeMap<String, String>, GroupState>>,
}

impl AlertEvaluator {
    /// An evaluator for `rules`.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        let states = vec![HashMap::new(); rules.len()];
        AlertEvaluator { rules, states }
    }

    /// Evaluates every rule at `now_ms`; returns the events raised.
    pub fn evaluate(&mut self, results: &QueryResults, now_ms: u64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for (rule, states) in self.rules.iter().zip(&mut self.states) {
            let Some(result) = results.get(&rule.query) else {
                continue;
            };
            let mut seen = Vec::new();
            for row in &result.rows {
                let Some(&value) = row.values.get(&rule.aggregate) else {
                    continue;
                };
                let holds = match rule.op {
                    Comparison::Above => value > rule.threshold,
                    Comparison::Below => value < rule.threshold,
                };
                seen.push(row.key.clone());
                let event = |state| AlertEvent {
                    alert: rule.name.clone(),
                    state,
                    group: row.key.clone(),
                    value: Some(value),
                    threshold: rule.threshold,
                    as_of: result.as_of,
                    at_ms: now_ms,
                };
                match (states.get(&row.key).copied(), holds) {
                    (None, true) => {
                        if rule.for_ms == 0 {
                            states.insert(row.key.clone(), GroupState::Firing);
                            events.push(event(AlertState::Firing));
                        } else {
                            states
                                .insert(row.key.clone(), GroupState::Pending { since_ms: now_ms });
                        }
                    }
                    (Some(GroupState::Pending { since_ms }), true) => {
                        if now_ms >= since_ms + rule.for_ms {
                            states.insert(row.key.clone(), GroupState::Firing);
                            events.push(event(AlertState::Firing));
                        }
                    }
                    (Some(GroupState::Firing), false) => {
                        states.remove(&row.key);
                        events.push(event(AlertState::Resolved));
                    }
                    (Some(GroupState::Pending { .. }), false) => {
                        states.remove(&row.key);
                    }
                    (Some(GroupState::Firing), true) | (None, false) => {}
                }
            }
            // Groups that vanished from the result no longer hold.
            let gone: Vec<BTreeMap<String, String>> = states
                .keys()
                .filter(|k| !seen.contains(k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(GroupState::Firing) = states.remove(&key) {
                    events.push(AlertEvent {
                        alert: rule.name.clone(),
                        state: AlertState::Resolved,
                        group: key,
                        value: None,
                        threshold: rule.threshold,
                        as_of: result.as_of,
                        at_ms: now_ms,
                    });
                }
            }
        }
        events
    }

    /// Whether any group of rule `name` fires.
    pub fn firing(&self, name: &str) -> bool {
        self.rules
            .iter()
            .zip(&self.states)
            .any(|(r, s)| r.name == name && s.values().any(|g| matches!(g, GroupState::Firing)))
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }
}

/// Evaluates alerts every 250 ms on `runtime` until the returned handle is
/// aborted, sending events to the log, the webhooks, the broker sinks, the
/// board and the gauge.
pub fn spawn_alerts(
    runtime: &tokio::runtime::Handle,
    rules: Vec<AlertRule>,
    results: QueryResults,
    exporter: Arc<Exporter>,
    sinks: Vec<Arc<dyn AlertSink>>,
    board: AlertBoard,
) -> tokio::task::JoinHandle<()> {
    runtime.spawn(async move {
        let mut evaluator = AlertEvaluator::new(rules);
        let client = reqwest::Client::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let events = evaluator.evaluate(&results, now_micros() / 1000);
            board.apply(&events);
            for event in events {
                match event.state {
                    AlertState::Firing => tracing::warn!(alert = %event.alert, group = ?event.group, value = ?event.value, threshold = event.threshold, "alert firing"),
                    AlertState::Resolved => tracing::info!(alert = %event.alert, group = ?event.group, "alert resolved"),
                }
                if !sinks.is_empty() {
                    match serde_json::to_vec(&event) {
                        Ok(body) => {
                            for sink in &sinks {
                                sink.publish(&event.routing_key(), body.clone());
                            }
                        }
                        Err(e) => tracing::error!(alert = %event.alert, error = %e, "encoding an alert event"),
                    }
                }
                let webhook = evaluator
                    .rules()
                    .iter()
                    .find(|r| r.name == event.alert)
                    .and_then(|r| r.webhook.clone());
                if let Some(url) = webhook {
                    if let Err(e) = client.post(&url).json(&event).send().await {
                        tracing::error!(alert = %event.alert, %url, error = %e, "alert webhook failed");
                    }
                }
            }
            for rule in evaluator.rules() {
                exporter.set_alert(&rule.name, evaluator.firing(&rule.name));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_dataflows::monitor::{Aggregate, Filter, Window};

    #[test]
    fn an_alert_fires_after_its_duration_and_resolves() {
        let spec = QuerySpec {
            name: "lat".into(),
            filter: Filter::default(),
            group_by: vec![],
            aggregates: vec![Aggregate::Max],
            window: Window::None,
        };
        let results = QueryResults::new(std::slice::from_ref(&spec));
        let rule = AlertRule {
            name: "slow".into(),
            query: "lat".into(),
            aggregate: "max".into(),
            op: Comparison::Above,
            threshold: 1.0,
            for_ms: 100,
            webhook: None,
        };
        validate_alerts(std::slice::from_ref(&rule), std::slice::from_ref(&spec)).expect("valid");
        let mut evaluator = AlertEvaluator::new(vec![rule]);
        let one = |v: f64| BTreeMap::from([(Vec::new(), vec![v])]);
        results.publish(&spec, 1, &one(2.0));
        assert!(evaluator.evaluate(&results, 1000).is_empty(), "pending");
        assert!(evaluator.evaluate(&results, 1050).is_empty());
        let fired = evaluator.evaluate(&results, 1100);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert!(evaluator.firing("slow"));
        results.publish(&spec, 2, &one(0.5));
        let resolved = evaluator.evaluate(&results, 1200);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert!(!evaluator.firing("slow"));
    }
}
