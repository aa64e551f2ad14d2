//! `edac`: memory controller error counters from
//! `/sys/devices/system/edac/mc/mc<N>/`, per controller, csrow and channel,
//! with node_exporter's names. Machines without EDAC export nothing.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, list_dir, read_attribute};
use crate::snapshot::{SampleLabels, Snapshot};

/// Flag and label name.
pub const NAME: &str = "edac";

/// The `edac` collector.
#[derive(Debug)]
pub struct EdacCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> EdacCollector {
    EdacCollector {
        roots: config.roots.clone(),
    }
}

/// One level of the EDAC tree: the metric pair it feeds and its HELP scope.
struct Level {
    correctable: &'static str,
    uncorrectable: &'static str,
    /// Ends the HELP text: "" or " for this csrow" / " for this channel".
    scope: &'static str,
}

const CONTROLLER: Level = Level {
    correctable: "node_edac_correctable_errors_total",
    uncorrectable: "node_edac_uncorrectable_errors_total",
    scope: "",
};
const CSROW: Level = Level {
    correctable: "node_edac_csrow_correctable_errors_total",
    uncorrectable: "node_edac_csrow_uncorrectable_errors_total",
    scope: " for this csrow",
};
const CHANNEL: Level = Level {
    correctable: "node_edac_channel_correctable_errors_total",
    uncorrectable: "node_edac_channel_uncorrectable_errors_total",
    scope: " for this channel",
};

/// Reads `<prefix>ce<suffix>` and `<prefix>ue<suffix>` in `dir` (for example
/// `ce_count`, `ch0_ue_count`, `ce_noinfo_count`) into `level`'s counters.
fn emit_pair(
    out: &mut Snapshot,
    dir: &Path,
    prefix: &str,
    suffix: &str,
    level: &Level,
    labels: SampleLabels,
) -> Result<(), CollectError> {
    let pair = [
        ("ce", level.correctable, "correctable"),
        ("ue", level.uncorrectable, "uncorrectable"),
    ];
    for (kind, name, adjective) in pair {
        let path = dir.join(format!("{prefix}{kind}{suffix}"));
        if let Some(value) = read_attribute(&path)?.and_then(|v| v.parse::<f64>().ok()) {
            let help = format!("Total {adjective} memory errors{}.", level.scope);
            out.counter(name, help, labels.clone(), value);
        }
    }
    Ok(())
}

/// The number after `prefix` in a directory entry (`mc0` → `0`).
fn numbered<'a>(entry: &'a str, prefix: &str) -> Option<&'a str> {
    entry
        .strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The kernel's default label `mc#0csrow#1channel#0` in node_exporter's
/// spelling, `mc0_csrow1_channel0`.
fn format_dimm_label(raw: &str) -> String {
    raw.replace('#', "")
        .replace("csrow", "_csrow")
        .replace("channel", "_channel")
}

impl Collector for EdacCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let base = self.roots.sys("devices/system/edac/mc");
        for mc in list_dir(&base)? {
            let Some(controller) = numbered(&mc, "mc") else {
                continue;
            };
            let dir = base.join(&mc);
            let with = |extra: &[(&'static str, &str)]| -> SampleLabels {
                let mut labels = vec![("controller", controller.to_owned())];
                labels.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
                labels
            };
            emit_pair(out, &dir, "", "_count", &CONTROLLER, with(&[]))?;
            // Errors the controller could not attribute to a csrow.
            emit_pair(
                out,
                &dir,
                "",
                "_noinfo_count",
                &CSROW,
                with(&[("csrow", "unknown")]),
            )?;
            for entry in list_dir(&dir)? {
                let Some(csrow) = numbered(&entry, "csrow") else {
                    continue;
                };
                let row_dir = dir.join(&entry);
                emit_pair(
                    out,
                    &row_dir,
                    "",
                    "_count",
                    &CSROW,
                    with(&[("csrow", csrow)]),
                )?;
                for file in list_dir(&row_dir)? {
                    let Some(channel) = file
                        .strip_prefix("ch")
                        .and_then(|r| r.strip_suffix("_ce_count"))
                    else {
                        continue;
                    };
                    let label = read_attribute(&row_dir.join(format!("ch{channel}_dimm_label")))?
                        .map_or_else(|| "unknown".to_owned(), |raw| format_dimm_label(&raw));
                    let labels = vec![
                        ("channel", channel.to_owned()),
                        ("controller", controller.to_owned()),
                        ("csrow", csrow.to_owned()),
                        ("dimm_label", label),
                    ];
                    emit_pair(
                        out,
                        &row_dir,
                        &format!("ch{channel}_"),
                        "_count",
                        &CHANNEL,
                        labels,
                    )?;
                }
            }
        }
        Ok(())
    }
}
