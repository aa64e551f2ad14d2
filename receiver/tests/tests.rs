//! Integration tests of dcmon-receiver over real loopback HTTP.

mod auth;
