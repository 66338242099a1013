//! Patches that need the schema: the strategic merge patch ([`strategic`]) and server-side
//! apply ([`apply`]). JSON patch and JSON merge patch need no schema and come from the
//! `json-patch` crate.
//!
//! Both read the patch metadata of each field (merge key, strategy, list type) through
//! [`crate::openapi::SchemaNode`], which is built from the same table as the served OpenAPI
//! documents, so what kubectl computes a patch from and what we apply it with agree.

pub mod apply;
mod gofmt;
pub mod strategic;

pub use apply::{ApplyError, Conflict, Writer, apply, record_update};
pub use strategic::{PatchError, strategic_merge};
