//! HTTP handlers, one module per API area.

pub mod dcmon;
pub mod write;
