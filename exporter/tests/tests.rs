//! Integration tests of dcmon-exporter, built as one binary.

mod apt;
mod bad_input;
mod common;
mod fan_policy;
mod fans;
mod fixture_compare;
mod gpu;
mod hardware_catalog;
mod http;
mod ipmi;
mod ipmi_sim;
mod metrics_doc;
mod nvme;
mod peers;
mod runtime_config;
mod shipping;
mod textfile;
mod web_config;
mod wire;
