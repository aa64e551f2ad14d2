//! What `dcmon-exporter` and `dcmon-receiver` share: wire types and codecs
//! both must agree on, and the few start-up pieces (flags' duration syntax,
//! logging, listening) that behave the same in both.
#![deny(missing_docs)]

pub mod duration;
pub mod logging;
pub mod net;
