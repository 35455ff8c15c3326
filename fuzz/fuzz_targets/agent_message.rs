//! Broker agent messages: any bytes decoded as the three messages remote
//! agents and the coordinator exchange over RabbitMQ: an agent's control
//! message (join, heartbeat, leave) as the coordinator reads it off the
//! control exchange and checks its credential, the work an agent reads
//! off its queue, and the completion it reports back. Decoding must answer
//! a message or an error, never panic; a control message must pass the
//! credential check without panicking, give its coordinator command, and
//! survive a re-encoding unchanged.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tidewater_connectors::rabbitmq::agent_protocol::{
    authorize, AgentMessage, AgentWork, RemoteCompletion,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = serde_json::from_slice::<AgentMessage>(data) {
        let tokens = BTreeMap::from([("gpu-box-1".to_string(), "s3cret".to_string())]);
        let _ = authorize(&tokens, &message);
        let _ = authorize(&BTreeMap::new(), &message);
        let _ = message.command();
        let again = serde_json::to_vec(&message).expect("a decoded message encodes");
        let back: AgentMessage = serde_json::from_slice(&again).expect("and decodes again");
        assert_eq!(back, message);
    }
    let _ = serde_json::from_slice::<AgentWork>(data);
    let _ = serde_json::from_slice::<RemoteCompletion>(data);
});
