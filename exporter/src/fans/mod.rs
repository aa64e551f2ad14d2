//! Supermicro fan control: the BMC commands, board identification, the
//! controller that applies the host's safety rules, the fan safety task
//! that maintains it, and the fan policy (per-zone curves) it can run.
//! Used by the command runner (commands from the receiver) and the local
//! `fans` CLI alike.

pub mod bmc;
pub mod board;
pub mod cli;
pub mod control;
pub mod governor;
pub mod metrics;
pub mod policy;
pub mod regulator;
pub mod safety;
pub mod sensors;
pub mod sources;

pub use self::bmc::{Bmc, BmcError, Ipmitool};
pub use self::board::Board;
pub use self::control::{FanController, FanError, FanStatus};
pub use self::policy::{Policy, PolicyError};
pub use self::sensors::{FanSensor, SharedTemperatures, Temperature};
pub use crate::config::FanRules;
