//! Supermicro fan control: the BMC commands, board identification, and the
//! controller that applies the host's safety rules. Used by the command
//! runner (commands from the receiver) and the local `fans` CLI alike.

pub mod bmc;
pub mod board;
pub mod cli;
pub mod control;
pub mod metrics;
pub mod sensors;

pub use self::bmc::{Bmc, BmcError, Ipmitool};
pub use self::board::Board;
pub use self::control::{FanController, FanError, FanStatus};
pub use self::sensors::{Fan, SharedTemperatures, Temperature};
pub use crate::config::FanPolicy;
