//! Tidewater runtime.
