//! Integration tests of dcmon-exporter, built as one binary.

mod apt;
mod bad_input;
mod common;
mod fixture_compare;
mod gpu;
mod http;
mod ipmi;
mod nvme;
mod peers;
