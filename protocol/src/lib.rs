//! Types and small codecs shared by `dcmon-exporter` and `dcmon-receiver`.
//!
//! This crate holds only what both programs must agree on. It does no I/O and
//! starts no runtime.
#![deny(missing_docs)]

pub mod duration;
pub mod logging;
