//! dcmon-receiver: the central service hosts remote-write to, Grafana
//! queries, and admins send fan commands through. Every endpoint is
//! authenticated; nothing is public.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod error;
pub mod forward;
pub mod heartbeat;
pub mod metrics;
pub mod promql;
pub mod rules;
pub mod self_scrape;
pub mod serve;
pub mod storage;
pub mod tick;
