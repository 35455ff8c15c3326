//! Tidewater dataflows.
