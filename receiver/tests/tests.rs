//! Integration tests of dcmon-receiver over real loopback HTTP.

mod auth;
mod common;
mod durability;
mod prometheus_e2e;
mod retention;
mod shipping;
mod write;
