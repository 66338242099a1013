//! Cluster controllers that run as clients of the API server (never of the store).
//!
//! Layout: [`scheduler`] binds pending Pods to nodes: a pure filter and pick
//! ([`scheduler::filter`], [`scheduler::pick`]) around a watch loop ([`run_scheduler`]).
//! Start there.

pub mod scheduler;

pub use scheduler::run_scheduler;
