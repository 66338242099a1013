//! Placeholder: the in-memory backend is being written.

/// The in-memory backend.
pub struct MemoryStore;
