//! The latest status of each reservation, for the API.
//!
//! Coordinators report what became of each reservation (made, refused,
//! ended) on a stream broadcast to every worker; the worker's sink writes it
//! here and `GET /v1/reservations/{id}` (one) and `GET /v1/reservations`
//! (all) read it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tidewater_operators::model::ReservationStatus;

/// Reservation statuses by id, shared by a process's workers and its API.
#[derive(Clone, Default)]
pub struct ReservationBook {
    statuses: Arc<RwLock<HashMap<String, ReservationStatus>>>,
}

/// Ended and refused reservations kept for the API, at most.
const KEEP_ENDED: usize = 10_000;

impl ReservationBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records statuses; a later report replaces an earlier one.
    pub fn record(&self, statuses: &[ReservationStatus]) {
        let Ok(mut book) = self.statuses.write() else {
            return;
        };
        for status in statuses {
            match book.get(status.id.as_str()) {
                Some(known) if known.at_us > status.at_us => {}
                _ => {
                    book.insert(status.id.to_string(), status.clone());
                }
            }
        }
        if book.len() > KEEP_ENDED {
            book.retain(|_, s| s.state == tidewater_operators::model::ReservationState::Active);
        }
    }

    /// The latest status of reservation `id`.
    pub fn get(&self, id: &str) -> Option<ReservationStatus> {
        self.statuses.read().ok()?.get(id).cloned()
    }

    /// The latest status of every reservation known, by id.
    pub fn list(&self) -> Vec<ReservationStatus> {
        let Ok(book) = self.statuses.read() else {
            return Vec::new();
        };
        let mut all: Vec<ReservationStatus> = book.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}
