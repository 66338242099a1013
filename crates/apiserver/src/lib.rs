//! The Kubernetes API over HTTPS.
//!
//! Layout: [`server`] holds the TLS accept loop, authentication and the router with the fixed
//! endpoints; [`request`] parses paths, queries and bodies; [`rest`] holds one file per verb,
//! written once for every kind and calling the kind's strategy from the `api` crate; [`objects`]
//! puts JSON objects on the [`store::Datastore`]; [`discovery`] and [`table`] build discovery
//! documents and server-side tables from the registry; [`error`] is the one place `Status`
//! replies are made; [`controllers`] does what kube-apiserver's built-in controllers do;
//! [`pki`] makes the cluster's certificates. Start with [`server::serve`].

pub mod controllers;
pub mod discovery;
pub mod error;
pub mod objects;
pub mod pki;
pub mod request;
pub mod rest;
pub mod server;
pub mod table;
pub mod time;
pub mod tokens;

pub use server::{State, local_service, serve, tls_config, tls_config_with};
