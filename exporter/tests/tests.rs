//! Integration tests of dcmon-exporter, built as one binary.

mod common;
mod fixture_compare;
