//! Kubernetes resource machinery with no IO: everything here works on plain values.
//!
//! Layout: [`registry`] lists the served resources and what differs between them; [`field`]
//! renders validation errors as apimachinery does; [`strategy`] defaults and validates objects
//! of every kind ([`pod`] holds the Pod rules); [`openapi`] builds the served OpenAPI v3
//! documents, whose patch extensions also drive [`patch`] (strategic merge patch and
//! server-side apply); [`table`] prints kubectl's columns; [`selector`] parses and matches label
//! and field selectors; [`protobuf`] decodes the bodies kubectl's generator commands send.
//! Start with [`registry`].

pub mod field;
pub mod openapi;
pub mod patch;
pub mod pod;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod strategy;
pub mod table;
