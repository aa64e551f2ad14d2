//! Integration tests of dcmon-receiver over real loopback HTTP.

mod alerting;
mod auth;
mod backup;
mod commands;
mod common;
mod dashboards;
mod durability;
mod enrolment;
mod identity;
mod install_scripts;
mod metric_names;
mod openapi;
mod peer_queries;
mod prometheus_e2e;
mod promql_conformance;
mod promql_side_by_side;
mod query_api;
mod query_limits;
mod quickstart;
mod retention;
mod rules;
mod self_scrape;
mod shipping;
mod systemd_units;
mod write;
