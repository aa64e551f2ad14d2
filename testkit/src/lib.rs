//! What the tests and benchmarks of every dcmon crate share, and nothing
//! else: a seeded random generator for synthetic data ([`Rng`]), the
//! synthetic fleet the receiver's side-by-side test and benchmarks send
//! ([`fleet`]), loopback
//! ports ([`free_port`], [`wait_for_port`]) and child processes that cannot
//! outlive a failed test ([`KillOnDrop`], [`start_prometheus`]), and certificates and password
//! hashes for web-configuration tests ([`web`]), and the check that keeps
//! generated documents current ([`docs`]).
//!
//! A crate of its own, used only as a dev-dependency, rather than a file
//! each test target includes by `#[path]`: the receiver's unit tests, its
//! integration tests and benchmarks, and the exporter's tests all reach it
//! the same way, it is compiled once, and the libraries' public APIs carry
//! none of it. Its dependencies are `nix` (for SIGTERM), one both binaries
//! already build, and `rcgen`, `bcrypt`, `rustls` and
//! `reqwest` for [`web`], and `dcmon-protocol` for the remote-write series
//! [`fleet`] produces (it depends on nothing of the testkit's, so there is
//! no cycle).

pub mod docs;
pub mod fleet;
mod net;
mod process;
mod rng;
pub mod web;

pub use net::{free_addr, free_port, wait_for_port};
pub use process::{KillOnDrop, sigterm, start_prometheus, start_prometheus_with, workspace_binary};
pub use rng::Rng;
