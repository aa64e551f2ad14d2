//! dcmon-exporter: collects host, GPU, IPMI, NVMe and apt metrics and serves
//! them at `/metrics` with node_exporter's names, so existing dashboards and
//! alert rules work unchanged, and optionally pushes the same metrics to
//! remote-write endpoints with an on-disk spool for outages.

pub mod cli;
pub mod collector;
pub mod config;
pub mod exposition;
pub mod fans;
pub mod http;
pub mod identity;
pub mod receiver_tls;
pub mod roots;
pub mod runner;
pub mod runtime_config;
pub mod runtime_config_cli;
pub mod self_metrics;
pub mod shipper;
pub mod snapshot;
pub mod state_dir;
pub mod tool;
