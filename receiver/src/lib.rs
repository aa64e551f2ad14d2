//! dcmon-receiver: the central service hosts remote-write to, Grafana
//! queries, and admins send fan commands through. Every endpoint is
//! authenticated; nothing is public.
//!
//! This is the service's frame (flags, admin token, the authenticated
//! router); ingest, storage, the query API and the command queue mount on it.

pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
