//! What `dcmon-exporter` and `dcmon-receiver` share: wire types and codecs
//! both must agree on, and the few start-up pieces (flags' duration syntax,
//! logging, listening) that behave the same in both.
#![deny(missing_docs)]

pub mod commands;
pub mod config_file;
pub mod duration;
pub mod excerpt;
pub mod exposition;
pub mod fan_policy;
pub mod identity;
pub mod logging;
pub mod net;
pub mod prompb;
pub mod prompb_v2;
pub mod protowire;
pub mod remote_write;
pub mod size;
