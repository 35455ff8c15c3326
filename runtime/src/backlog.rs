//! How many tasks each tenant has waiting or running in this process, for
//! `limits.max_queued_per_tenant`.
//!
//! The HTTP API adds each task it takes in ([`TenantBacklog::add`]); the
//! result sinks remove it when its final outcome is recorded
//! ([`TenantBacklog::finish`], through `PipelineStats::record_finals`).
//! Only tasks that were added are counted down, so tasks from other
//! sources, or resumed after a restart, do not skew the counts.

use std::collections::HashMap;
use std::sync::Mutex;

use tidewater_operators::model::Completion;

#[derive(Default)]
struct Books {
    tenant_of: HashMap<String, String>,
    counts: HashMap<String, usize>,
}

/// Tasks not yet final, by tenant.
#[derive(Default)]
pub struct TenantBacklog {
    books: Mutex<Books>,
}

impl TenantBacklog {
    /// Counts task `id` of `tenant` as taken in.
    pub fn add(&self, id: &str, tenant: &str) {
        let Ok(mut books) = self.books.lock() else {
            return;
        };
        if books
            .tenant_of
            .insert(id.to_string(), tenant.to_string())
            .is_none()
        {
            *books.counts.entry(tenant.to_string()).or_default() += 1;
        }
    }

    /// Counts the tasks of `finals` as done.
    pub fn finish(&self, finals: &[Completion]) {
        let Ok(mut books) = self.books.lock() else {
            return;
        };
        for completion in finals {
            if let Some(tenant) = books.tenant_of.remove(completion.task.id.as_str()) {
                if let Some(count) = books.counts.get_mut(&tenant) {
                    *count -= 1;
                    if *count == 0 {
                        books.counts.remove(&tenant);
                    }
                }
            }
        }
    }

    /// Tasks of `tenant` taken in and not yet final.
    pub fn count(&self, tenant: &str) -> usize {
        self.books
            .lock()
            .map_or(0, |books| books.counts.get(tenant).copied().unwrap_or(0))
    }
}
