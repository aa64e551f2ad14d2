//! dcmon-exporter: collects host, GPU, IPMI, NVMe and apt metrics and serves
//! them at `/metrics` with node_exporter's names, so existing dashboards and
//! alert rules work unchanged.

pub mod cli;
pub mod collector;
pub mod config;
pub mod exposition;
pub mod http;
pub mod identity;
pub mod roots;
pub mod self_metrics;
pub mod snapshot;
pub mod tool;
