//! What `tidewater run` does when a peer process of its timely cluster is
//! lost: report it and exit with [`PEER_LOST_EXIT_CODE`], so that whoever
//! runs the cluster (an operator, systemd, a Kubernetes StatefulSet)
//! restarts the processes with the same hostfile and they resume from
//! their stores.
//!
//! A timely cluster has a fixed membership: when a peer's connection breaks
//! (the peer crashed, was killed or its host went away), timely's network
//! thread panics with a message starting `timely communication error:`,
//! and the computation cannot go on without that peer. Left alone, the
//! process would keep serving HTTP with dead workers. Instead:
//!
//! ```text
//!  peer killed ─► socket closed ─► timely recv/send thread panics
//!       ─► this hook: the panic is reported as usual, then
//!          error "lost a peer process of the timely cluster" ─► exit(75)
//! ```
//!
//! Exiting at once loses nothing that was acknowledged: HTTP submissions
//! are admitted to the store before `202`, every final outcome is committed
//! before its source is acknowledged, and a restart resumes what the store
//! holds as accepted but unfinished (`tests/cluster_equivalence.rs` shows
//! it on two test hosts). Any other panic goes to the previous hook
//! unchanged.

/// The exit code after a lost peer: `EX_TEMPFAIL` of `sysexits.h`, "try
/// again later", since a restart of the cluster recovers.
pub const PEER_LOST_EXIT_CODE: i32 = 75;

/// How timely's network threads begin their panic message when a
/// connection to a peer fails (timely-communication's `tcp_panic`, whose
/// wording its authors keep stable for this purpose).
const TIMELY_COMMUNICATION_ERROR: &str = "timely communication error";

/// Installs the hook, keeping the previous one for every panic (it runs
/// first, so the panic's own report is printed as before).
pub fn exit_when_a_peer_is_lost() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let message = panic_message(info.payload());
        if message.is_some_and(|m| m.starts_with(TIMELY_COMMUNICATION_ERROR)) {
            tracing::error!(
                cause = message.unwrap_or_default(),
                exit_code = PEER_LOST_EXIT_CODE,
                "lost a peer process of the timely cluster: stopping this process so that the \
                 cluster is restarted with the same hostfile; accepted tasks resume from the store"
            );
            std::process::exit(PEER_LOST_EXIT_CODE);
        }
    }));
}

/// A panic's message, when it is a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&'static str>().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let owned: Box<dyn std::any::Any + Send> = Box::new(format!(
            "{TIMELY_COMMUNICATION_ERROR}: reading data: socket closed"
        ));
        assert!(panic_message(owned.as_ref())
            .is_some_and(|m| m.starts_with(TIMELY_COMMUNICATION_ERROR)));
        let fixed: Box<dyn std::any::Any + Send> = Box::new("MergeQueue poisoned.");
        assert_eq!(panic_message(fixed.as_ref()), Some("MergeQueue poisoned."));
        let other: Box<dyn std::any::Any + Send> = Box::new(7_u32);
        assert_eq!(panic_message(other.as_ref()), None);
    }
}
