//! The fan policy document (shared with the receiver, which checks it
//! before queueing a `config_update`) and reading it from a file.

pub use dcmon_protocol::fan_policy::*;

/// Reads and validates the policy file at `path`.
pub fn load_file(path: &std::path::Path, host_min_duty: u8) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PolicyError::Syntax(format!("reading {}: {e}", path.display())))?;
    Policy::parse(&text, host_min_duty).map_err(|err| match err {
        PolicyError::Syntax(msg) => PolicyError::Syntax(format!("{}: {msg}", path.display())),
        PolicyError::Invalid { field, message } => PolicyError::Invalid {
            field,
            message: format!("{message} (in {})", path.display()),
        },
    })
}
