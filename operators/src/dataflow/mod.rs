//! Timely dataflow operators over the model's streams.
