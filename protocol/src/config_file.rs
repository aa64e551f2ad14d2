//! The optional `--config.file`: a TOML file whose keys are flag names
//! (`"web.listen-address" = ":9870"`, or nested tables: `[web]`
//! `listen-address = ":9870"`). Its settings become flags placed before the
//! real command line; with `args_override_self`, a later occurrence of a
//! flag wins, so the command line always beats the file, and the file beats
//! the built-in defaults.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;

/// Returns `args` with the settings of the file named by `--config.file`
/// (if any) inserted right after the program name. Unknown settings are an
/// error naming the file and key.
pub fn merge_into_args(cmd: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, clap::Error> {
    merge_into_args_with_sections(cmd, args, &[]).map(|(args, _)| args)
}

/// Like [`merge_into_args`], but the top-level keys named in `sections` are
/// not flags: they are returned untouched for the caller to deserialise (for
/// settings a flag cannot express, such as an array of tables).
pub fn merge_into_args_with_sections(
    cmd: &Command,
    args: Vec<OsString>,
    sections: &[&str],
) -> Result<(Vec<OsString>, toml::Table), clap::Error> {
    match config_file_arg(&args) {
        Some(path) => with_config_file(cmd, &path, args, sections),
        None => Ok((args, toml::Table::new())),
    }
}

/// A config-file error naming the file, as clap reports a bad flag value.
pub fn config_file_error(path: &Path, msg: impl std::fmt::Display) -> clap::Error {
    clap::Error::raw(
        clap::error::ErrorKind::InvalidValue,
        format!("config file {}: {msg}\n", path.display()),
    )
}

/// The file named by `--config.file`, if any.
pub fn config_file_path(args: &[OsString]) -> Option<PathBuf> {
    config_file_arg(args)
}

/// Finds `--config.file F` or `--config.file=F` before full parsing.
fn config_file_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_str()?;
        if arg == "--config.file" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config.file=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// Returns `args` with the file's settings inserted as flags right after the
/// program name, so that the real command line, parsed later, wins.
fn with_config_file(
    cmd: &Command,
    path: &Path,
    args: Vec<OsString>,
    sections: &[&str],
) -> Result<(Vec<OsString>, toml::Table), clap::Error> {
    let fail = |msg: String| config_file_error(path, msg);
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(e.to_string()))?;
    let mut taken = toml::Table::new();
    for section in sections {
        if let Some(value) = table.remove(*section) {
            taken.insert((*section).to_owned(), value);
        }
    }
    let mut settings = Vec::new();
    flatten("", &table, &mut settings).map_err(fail)?;
    let known = |long: &str| cmd.get_arguments().any(|a| a.get_long() == Some(long));
    let mut flags = Vec::new();
    for (key, value) in settings {
        if key == "config.file" || !known(&key) {
            return Err(fail(format!("unknown setting {key:?}")));
        }
        match value {
            Setting::Bool(true) => flags.push(format!("--{key}")),
            Setting::Bool(false) if known(&format!("no-{key}")) => {
                flags.push(format!("--no-{key}"))
            }
            Setting::Bool(false) => {}
            Setting::Text(text) => flags.push(format!("--{key}={text}")),
        }
    }
    let mut out = Vec::with_capacity(args.len() + flags.len());
    let mut args = args.into_iter();
    out.extend(args.next());
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(args);
    Ok((out, taken))
}

enum Setting {
    Bool(bool),
    Text(String),
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, Setting)>,
) -> Result<(), String> {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out)?,
            toml::Value::Boolean(b) => out.push((key, Setting::Bool(*b))),
            toml::Value::String(s) => out.push((key, Setting::Text(s.clone()))),
            toml::Value::Integer(i) => out.push((key, Setting::Text(i.to_string()))),
            other => {
                return Err(format!(
                    "setting {key:?}: unsupported value {}",
                    other.type_str()
                ));
            }
        }
    }
    Ok(())
}
