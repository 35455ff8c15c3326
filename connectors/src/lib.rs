//! Tidewater connectors.
