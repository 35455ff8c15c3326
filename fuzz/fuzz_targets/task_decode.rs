//! Task decoding: any bytes through [`Validator::decode`], the path every
//! record takes from a broker (RabbitMQ message body, Kafka record value,
//! MongoDB change document re-encoded) or an HTTP item into a task. It must
//! answer a task or a rejection, never panic, and an accepted task must
//! pass the checks again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewater_operators::model::AckToken;
use tidewater_operators::validate::{check_task, ValidationLimits, Validator};

fuzz_target!(|data: &[u8]| {
    let limits = ValidationLimits::default();
    let mut validator = Validator::new(limits.clone(), 0, 1);
    if let Ok(task) = validator.decode(data, AckToken::NONE, 1_000) {
        assert!(check_task(&task, &limits).is_ok());
    }
});
