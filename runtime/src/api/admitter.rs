//! Group commit for HTTP submissions: the admissions of requests that
//! arrive together share one durable store transaction.
//!
//! ```text
//!  POST /v1/tasks ─┐
//!  POST /v1/tasks ─┼─► channel ─► admitter thread: drain what waits,
//!  POST /v1/tasks ─┘              TaskStore::admit(all) (one commit),
//!                                 answer each request its own slice
//! ```
//!
//! With one commit per request, concurrent submissions queue behind each
//! other's fsync; here a commit carries every request that arrived while
//! the previous one was being written, so the rate grows with concurrency
//! while a lone request waits for no one. Within a group the requests are
//! admitted in arrival order, so an id submitted twice in one group is new
//! for the first request and `Existing` for the second, as it would be
//! one after the other.

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use tidewater_connectors::store::{Admission, TaskStore};
use tidewater_operators::model::Task;

/// Most tasks one group commit carries.
const MAX_GROUP_TASKS: usize = 65_536;

/// One request's tasks and where its answer goes.
struct Request {
    tasks: Vec<Task>,
    reply: oneshot::Sender<Result<Vec<Admission>, String>>,
}

/// Why an admission got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The store refused the transaction.
    #[error("{0}")]
    Store(String),
    /// The admitter thread is gone (the server is stopping).
    #[error("the admitter stopped")]
    Stopped,
}

/// Admits tasks into the store, grouping concurrent requests into one
/// transaction; cheap to clone.
#[derive(Clone)]
pub struct Admitter {
    requests: mpsc::Sender<Request>,
}

impl Admitter {
    /// Starts the admitter thread over `store`; it ends when the last
    /// clone of the admitter is dropped.
    pub fn start(store: Arc<dyn TaskStore>) -> std::io::Result<Admitter> {
        let (requests, inbox) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("tidewater-admit".into())
            .spawn(move || serve(store.as_ref(), &inbox))?;
        Ok(Admitter { requests })
    }

    /// Admits `tasks` (in one transaction with whatever else waits); one
    /// answer per task, in order.
    pub async fn admit(&self, tasks: Vec<Task>) -> Result<Vec<Admission>, AdmitError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { tasks, reply })
            .map_err(|_| AdmitError::Stopped)?;
        answer
            .await
            .map_err(|_| AdmitError::Stopped)?
            .map_err(AdmitError::Store)
    }
}

/// The admitter thread: one group commit per turn until every sender is
/// gone.
fn serve(store: &dyn TaskStore, inbox: &mpsc::Receiver<Request>) {
    while let Ok(first) = inbox.recv() {
        let mut group = vec![first];
        let mut tasks = group[0].tasks.len();
        while tasks < MAX_GROUP_TASKS {
            match inbox.try_recv() {
                Ok(request) => {
                    tasks += request.tasks.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let mut all = Vec::with_capacity(tasks);
        let mut sizes = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for request in group {
            sizes.push(request.tasks.len());
            all.extend(request.tasks);
            replies.push(request.reply);
        }
        match store.admit(&all) {
            Ok(admissions) => {
                let mut admissions = admissions.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    let _ = reply.send(Ok(admissions.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_connectors::store::MemoryStore;
    use tidewater_operators::model::ResourceRequest;

    fn task(id: &str, tenant: &str) -> Task {
        let mut task = Task::new(id, "noop", ResourceRequest::cpu(10, 0));
        task.tenant = tenant.into();
        task
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_answers_in_order() {
        let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::new());
        let admitter = Admitter::start(Arc::clone(&store)).expect("admitter");
        let requests: Vec<_> = (0..64)
            .map(|i| {
                let admitter = admitter.clone();
                tokio::spawn(async move {
                    // Every request carries its own task and the shared one.
                    let tasks = vec![task(&format!("own-{i}"), "a"), task("shared", "a")];
                    admitter.admit(tasks).await
                })
            })
            .collect();
        let mut shared_new = 0;
        for request in requests {
            let answers = request.await.expect("joined").expect("admitted");
            assert_eq!(answers.len(), 2);
            assert!(answers[0].is_new(), "each request's own id is new");
            match &answers[1] {
                Admission::New => shared_new += 1,
                Admission::Existing { same_body, .. } => assert!(same_body),
            }
        }
        assert_eq!(
            shared_new, 1,
            "the shared id is new for exactly one request"
        );
        match admitter
            .admit(vec![task("shared", "b")])
            .await
            .expect("admitted")
            .as_slice()
        {
            [Admission::Existing { same_body, .. }] => assert!(!same_body),
            other => panic!("a different body under a taken id: {other:?}"),
        }
        assert!(store.get("own-63").expect("get").is_some());
    }
}
