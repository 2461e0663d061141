//! Shared helpers live in it/; this crate only hosts the end-to-end test binary.
