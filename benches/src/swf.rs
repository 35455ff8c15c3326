//! Simulation of a batch cluster from a Standard Workload Format (SWF) log.
