//! Integration tests of dcmon-receiver over real loopback HTTP.

mod auth;
mod commands;
mod common;
mod durability;
mod enrolment;
mod identity;
mod prometheus_e2e;
mod promql_conformance;
mod promql_side_by_side;
mod query_api;
mod quickstart;
mod retention;
mod shipping;
mod write;
