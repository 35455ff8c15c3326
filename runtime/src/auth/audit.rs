//! The audit log: one entry per authenticated call that changes something,
//! naming who (tenant, role, credential id), what (action, method, path,
//! the ids it touched) and how it ended (status). Never the token or the
//! payload.
//!
//! Entries are `tracing` events with target `tidewater::audit`, and, when
//! `auth.audit_log` names a file, JSON lines appended to it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// One audited call.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// When it was answered, microseconds since the Unix epoch.
    pub at_us: u64,
    /// The caller's tenant (`null` with authentication off).
    pub tenant: Option<String>,
    /// The caller's role.
    pub role: &'static str,
    /// The API token's id or the JWT's subject.
    pub credential: Option<String>,
    /// The policy action.
    pub action: &'static str,
    /// The HTTP method.
    pub method: String,
    /// The path (no query string).
    pub path: String,
    /// The task, executor, reservation or token the path names.
    pub target: Option<String>,
    /// The tasks a submission took in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// The answer's status code.
    pub status: u16,
}

/// Where audit entries go.
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// An audit log to `tracing` only.
    pub fn tracing_only() -> Self {
        AuditLog { file: None }
    }

    /// An audit log to `tracing` and appended to `path`.
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
        })
    }

    /// Records `entry`.
    pub fn record(&self, entry: &AuditEntry) {
        tracing::info!(
            target: "tidewater::audit",
            tenant = entry.tenant.as_deref().unwrap_or("-"),
            role = entry.role,
            credential = entry.credential.as_deref().unwrap_or("-"),
            action = entry.action,
            method = %entry.method,
            path = %entry.path,
            target_id = entry.target.as_deref().unwrap_or("-"),
            tasks = entry.tasks.len(),
            status = entry.status,
            "audit"
        );
        let Some(file) = &self.file else { return };
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        match file.lock() {
            Ok(mut file) => {
                if let Err(e) = file.write_all(&line) {
                    tracing::error!(error = %e, "writing the audit log");
                }
            }
            Err(_) => tracing::error!("the audit log's lock is poisoned"),
        }
    }
}

/// The id a path names after its resource (`/v1/tasks/{id}`,
/// `/v1/executors/{id}/…`, `/v1/reservations/{id}`, `/v1/tokens/{id}`).
pub fn target_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "executors", _, "tasks", task, ..] => Some(task.to_string()),
        ["v1", _, id, ..] => Some(
            percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_as_json_lines_without_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::to_file(&path).expect("open");
        let entry = AuditEntry {
            at_us: 1,
            tenant: Some("acme".into()),
            role: "submitter",
            credential: Some("0123456789abcdef".into()),
            action: "cancel",
            method: "DELETE".into(),
            path: "/v1/tasks/t%201".into(),
            target: target_of("/v1/tasks/t%201"),
            tasks: Vec::new(),
            status: 202,
        };
        log.record(&entry);
        log.record(&entry);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["target"], "t 1");
        assert_eq!(lines[0]["tenant"], "acme");
        assert_eq!(lines[0]["status"], 202);
    }

    #[test]
    fn targets_are_read_off_paths() {
        assert_eq!(
            target_of("/v1/executors/e1/heartbeat").as_deref(),
            Some("e1")
        );
        assert_eq!(
            target_of("/v1/executors/e1/tasks/t9/outcome").as_deref(),
            Some("t9")
        );
        assert_eq!(target_of("/v1/tasks"), None);
    }
}
