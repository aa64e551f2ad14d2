//! Integration tests of dcmon-receiver over real loopback HTTP.

mod auth;
mod common;
mod durability;
mod prometheus_e2e;
mod promql_conformance;
mod query_api;
mod retention;
mod write;
