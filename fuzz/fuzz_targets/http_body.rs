//! The HTTP body path of `POST /v1/tasks`: any body split into items by
//! [`split_submissions`] (one object, or an array), then each item decoded
//! as the handler does. Never panics; a batch's items are sub-slices of
//! the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewater_operators::model::AckToken;
use tidewater_operators::validate::{split_submissions, ValidationLimits, Validator};

fuzz_target!(|data: &[u8]| {
    let mut validator = Validator::for_source(ValidationLimits::default(), "http", 1);
    if let Ok((_, items)) = split_submissions(data) {
        for item in items {
            assert!(item.len() <= data.len());
            let _ = validator.decode(item, AckToken::NONE, 1_000);
        }
    }
});
