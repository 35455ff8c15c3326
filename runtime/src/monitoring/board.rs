//! The alerts now firing, and the latest alert events, for `GET /v1/alerts`.
//!
//! The alert loop ([`super::spawn_alerts`]) applies each event it raises
//! here: a firing event adds its (alert, group), a resolving one removes
//! it. The HTTP API and the dashboard read the board.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::{AlertEvent, AlertState};

/// Alert events kept for the API, at most.
const KEEP_EVENTS: usize = 100;

/// One alert firing for one group of its query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FiringAlert {
    /// The alert.
    pub alert: String,
    /// The query group, by dimension.
    pub group: BTreeMap<String, String>,
    /// The value that crossed the threshold.
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// The query epoch the value is as of.
    pub as_of: Option<u64>,
    /// When it started firing, ms since the Unix epoch.
    pub since_ms: u64,
}

/// What `GET /v1/alerts` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlertsView {
    /// Alerts firing now, by name then group.
    pub firing: Vec<FiringAlert>,
    /// The latest events, newest first.
    pub recent: Vec<AlertEvent>,
}

#[derive(Default)]
struct Board {
    firing: BTreeMap<(String, Vec<(String, String)>), FiringAlert>,
    recent: VecDeque<AlertEvent>,
}

/// Firing alerts, shared by the alert loop and the HTTP API.
#[derive(Clone, Default)]
pub struct AlertBoard {
    board: Arc<RwLock<Board>>,
}

impl AlertBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies events in the order they were raised.
    pub fn apply(&self, events: &[AlertEvent]) {
        let Ok(mut board) = self.board.write() else {
            return;
        };
        for event in events {
            let key = (
                event.alert.clone(),
                event
                    .group
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            match event.state {
                AlertState::Firing => {
                    board.firing.insert(
                        key,
                        FiringAlert {
                            alert: event.alert.clone(),
                            group: event.group.clone(),
                            value: event.value,
                            threshold: event.threshold,
                            as_of: event.as_of,
                            since_ms: event.at_ms,
                        },
                    );
                }
                AlertState::Resolved => {
                    board.firing.remove(&key);
                }
            }
            board.recent.push_front(event.clone());
            board.recent.truncate(KEEP_EVENTS);
        }
    }

    /// The firing alerts and the latest events.
    pub fn view(&self) -> AlertsView {
        let Ok(board) = self.board.read() else {
            return AlertsView::default();
        };
        AlertsView {
            firing: board.firing.values().cloned().collect(),
            recent: board.recent.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(alert: &str, state: AlertState, at_ms: u64) -> AlertEvent {
        AlertEvent {
            alert: alert.into(),
            state,
            group: BTreeMap::from([("kind".to_string(), "sleep".to_string())]),
            value: Some(2.0),
            threshold: 1.0,
            as_of: Some(3),
            at_ms,
        }
    }

    #[test]
    fn firing_then_resolving_leaves_only_the_events() {
        let board = AlertBoard::new();
        board.apply(&[
            event("slow", AlertState::Firing, 10),
            event("busy", AlertState::Firing, 11),
        ]);
        let view = board.view();
        assert_eq!(view.firing.len(), 2);
        assert_eq!(view.firing[1].alert, "slow");
        assert_eq!(view.firing[1].since_ms, 10);
        board.apply(&[event("slow", AlertState::Resolved, 20)]);
        let view = board.view();
        assert_eq!(view.firing.len(), 1);
        assert_eq!(view.firing[0].alert, "busy");
        assert_eq!(view.recent.len(), 3);
        assert_eq!(view.recent[0].state, AlertState::Resolved);
    }
}
