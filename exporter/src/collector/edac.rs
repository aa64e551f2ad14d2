//! `edac`: memory controller error counters from
//! `/sys/devices/system/edac/mc/mc<N>/`, per controller, csrow and channel,
//! with node_exporter's names. Machines without EDAC report no data.

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, list_dir, read_attribute};
use crate::snapshot::{Labels, Snapshot};

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

/// The kernel's default label `mc#0csrow#1channel#0` in node_exporter's
/// spelling, `mc0_csrow1_channel0`.
fn format_dimm_label(raw: &str) -> String {
    raw.replace('#', "")
        .replace("csrow", "_csrow")
        .replace("channel", "_channel")
}

fn count(path: &std::path::Path) -> Result<Option<f64>, CollectError> {
    Ok(read_attribute(path)?.and_then(|v| v.parse().ok()))
}

impl Collector for EdacCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let base = self.roots.sys("devices/system/edac/mc");
        for mc in list_dir(&base)? {
            let Some(controller) = mc
                .strip_prefix("mc")
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let dir = base.join(&mc);
            let ctl = || -> Labels { vec![("controller", controller.to_owned())] };
            let totals = [
                (
                    "ce_count",
                    "node_edac_correctable_errors_total",
                    "Total correctable memory errors.",
                ),
                (
                    "ue_count",
                    "node_edac_uncorrectable_errors_total",
                    "Total uncorrectable memory errors.",
                ),
            ];
            for (file, name, help) in totals {
                if let Some(v) = count(&dir.join(file))? {
                    out.counter(name, help, ctl(), v);
                }
            }
            // Errors the controller could not attribute to a csrow.
            let unknown = [
                (
                    "ce_noinfo_count",
                    "node_edac_csrow_correctable_errors_total",
                    "Total correctable memory errors for this csrow.",
                ),
                (
                    "ue_noinfo_count",
                    "node_edac_csrow_uncorrectable_errors_total",
                    "Total uncorrectable memory errors for this csrow.",
                ),
            ];
            for (file, name, help) in unknown {
                if let Some(v) = count(&dir.join(file))? {
                    let mut labels = ctl();
                    labels.push(("csrow", "unknown".into()));
                    out.counter(name, help, labels, v);
                }
            }
            for entry in list_dir(&dir)? {
                let Some(csrow) = entry
                    .strip_prefix("csrow")
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let row_dir = dir.join(&entry);
                let row_labels = || {
                    let mut labels = ctl();
                    labels.push(("csrow", csrow.to_owned()));
                    labels
                };
                let rows = [
                    (
                        "ce_count",
                        "node_edac_csrow_correctable_errors_total",
                        "Total correctable memory errors for this csrow.",
                    ),
                    (
                        "ue_count",
                        "node_edac_csrow_uncorrectable_errors_total",
                        "Total uncorrectable memory errors for this csrow.",
                    ),
                ];
                for (file, name, help) in rows {
                    if let Some(v) = count(&row_dir.join(file))? {
                        out.counter(name, help, row_labels(), v);
                    }
                }
                for file in list_dir(&row_dir)? {
                    let Some(channel) = file
                        .strip_prefix("ch")
                        .and_then(|r| r.strip_suffix("_ce_count"))
                    else {
                        continue;
                    };
                    let label = read_attribute(&row_dir.join(format!("ch{channel}_dimm_label")))?
                        .map_or_else(|| "unknown".to_owned(), |raw| format_dimm_label(&raw));
                    let channel_labels = || {
                        vec![
                            ("channel", channel.to_owned()),
                            ("controller", controller.to_owned()),
                            ("csrow", csrow.to_owned()),
                            ("dimm_label", label.clone()),
                        ]
                    };
                    let channels = [
                        (
                            "ce_count",
                            "node_edac_channel_correctable_errors_total",
                            "Total correctable memory errors for this channel.",
                        ),
                        (
                            "ue_count",
                            "node_edac_channel_uncorrectable_errors_total",
                            "Total uncorrectable memory errors for this channel.",
                        ),
                    ];
                    for (suffix, name, help) in channels {
                        if let Some(v) = count(&row_dir.join(format!("ch{channel}_{suffix}")))? {
                            out.counter(name, help, channel_labels(), v);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
