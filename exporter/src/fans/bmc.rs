//! Talking to the BMC: fixed `ipmitool raw` argv for the Supermicro fan
//! commands (no shell, ever), each run through [`crate::tool`] under a
//! timeout and killed on expiry, since a hung BMC is common.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use dcmon_protocol::commands::FanMode;

use crate::tool::{self, ToolError};

/// Why a BMC request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BmcError {
    /// ipmitool is not installed or not executable.
    #[error("cannot run {tool}: {reason} (install ipmitool, or set --fans.ipmitool-path)")]
    Missing {
        /// The path tried.
        tool: String,
        /// The OS error.
        reason: String,
    },
    /// ipmitool ran past its timeout and was killed.
    #[error("ipmitool {args} did not answer within {timeout:?}; killed")]
    Timeout {
        /// The arguments.
        args: String,
        /// The timeout.
        timeout: Duration,
    },
    /// ipmitool failed (no BMC device, not root, the BMC refused…).
    #[error("ipmitool {args} failed (exit {code}): {message}")]
    Failed {
        /// The arguments.
        args: String,
        /// Exit code (-1 when killed by a signal).
        code: i32,
        /// stderr's last line: ipmitool's reason, e.g. `rsp=0xcc … Invalid data field in request`.
        message: String,
    },
    /// The answer is not what the command returns.
    #[error("unexpected answer to ipmitool {args}: {output:?}")]
    BadAnswer {
        /// The arguments.
        args: String,
        /// What it printed.
        output: String,
    },
}

/// What the fan controller needs from a BMC.
pub trait Bmc: Send + Sync {
    /// Runs `ipmitool <args>` and returns stdout.
    fn run(&self, args: &[&str]) -> Result<String, BmcError>;

    /// `raw <bytes>`: the response bytes.
    fn raw(&self, request: &[u8]) -> Result<Vec<u8>, BmcError> {
        let words: Vec<String> = request.iter().map(|b| format!("0x{b:02x}")).collect();
        let mut args = vec!["raw"];
        args.extend(words.iter().map(String::as_str));
        let output = self.run(&args)?;
        parse_raw(&output).ok_or_else(|| BmcError::BadAnswer {
            args: args.join(" "),
            output,
        })
    }

    /// The current fan mode (`raw 0x30 0x45 0x00`).
    fn fan_mode(&self) -> Result<FanMode, BmcError> {
        let answer = self.raw(&[0x30, 0x45, 0x00])?;
        answer
            .first()
            .and_then(|code| FanMode::from_code(*code))
            .ok_or_else(|| BmcError::BadAnswer {
                args: "raw 0x30 0x45 0x00".into(),
                output: format!("{answer:02x?}"),
            })
    }

    /// Sets the fan mode (`raw 0x30 0x45 0x01 <mode>`).
    fn set_fan_mode(&self, mode: FanMode) -> Result<(), BmcError> {
        self.raw(&[0x30, 0x45, 0x01, mode.code()]).map(drop)
    }

    /// A zone's duty, percent (`raw 0x30 0x70 0x66 0x00 <zone>`).
    fn zone_duty(&self, zone: u8) -> Result<u8, BmcError> {
        let answer = self.raw(&[0x30, 0x70, 0x66, 0x00, zone])?;
        answer
            .first()
            .copied()
            .filter(|duty| *duty <= 100)
            .ok_or_else(|| BmcError::BadAnswer {
                args: format!("raw 0x30 0x70 0x66 0x00 0x{zone:02x}"),
                output: format!("{answer:02x?}"),
            })
    }

    /// Sets a zone's duty, percent (`raw 0x30 0x70 0x66 0x01 <zone> <duty>`).
    fn set_zone_duty(&self, zone: u8, duty: u8) -> Result<(), BmcError> {
        self.raw(&[0x30, 0x70, 0x66, 0x01, zone, duty]).map(drop)
    }
}

/// `ipmitool raw` prints each response byte as ` %02x`, 16 to a line.
pub fn parse_raw(output: &str) -> Option<Vec<u8>> {
    output
        .split_whitespace()
        .map(|word| u8::from_str_radix(word, 16).ok())
        .collect()
}

/// The local `ipmitool`.
#[derive(Debug, Clone)]
pub struct Ipmitool {
    /// Executable.
    pub path: PathBuf,
    /// Longest one run may take.
    pub timeout: Duration,
}

impl Bmc for Ipmitool {
    fn run(&self, args: &[&str]) -> Result<String, BmcError> {
        let joined = args.join(" ");
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let output = tool::run(&self.path, &argv, self.timeout).map_err(|err| match err {
            ToolError::TimedOut { after, .. } => BmcError::Timeout {
                args: joined.clone(),
                timeout: after,
            },
            ToolError::NotFound { .. } | ToolError::Spawn { .. } => BmcError::Missing {
                tool: self.path.display().to_string(),
                reason: err.to_string(),
            },
        })?;
        if !output.succeeded() {
            // ipmitool's reason is its last stderr line, e.g.
            // `Unable to send RAW command (… rsp=0xcc): Invalid data field in request`.
            let message = output
                .stderr
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no message")
                .to_owned();
            return Err(BmcError::Failed {
                args: joined,
                code: output.status.code().unwrap_or(-1),
                message,
            });
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_answers_are_hex_bytes() {
        assert_eq!(parse_raw(" 01\n"), Some(vec![1]));
        assert_eq!(parse_raw(" 64\n"), Some(vec![100]));
        assert_eq!(parse_raw("\n"), Some(vec![]));
        assert_eq!(
            parse_raw(" 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n 10\n").map(|b| b.len()),
            Some(17)
        );
        assert_eq!(parse_raw("Could not open device"), None);
    }
}
