//! HTTP handlers, one module per API area.

pub mod clients;
pub mod commands;
pub mod dcmon;
pub mod openapi;
pub mod query;
pub mod query_json;
pub mod query_params;
pub mod write;
pub mod write_limits;
