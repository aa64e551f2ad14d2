//! HTTP handlers, one module per API area.

pub mod clients;
pub mod commands;
pub mod dcmon;
pub mod write;
