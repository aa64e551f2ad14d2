//! `os`: `node_os_info` and `node_os_version` from `os-release`
//! (`/etc/os-release`, else `/usr/lib/os-release`, under `--path.rootfs`).

use std::collections::HashMap;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::Roots;
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "os";

/// Parses os-release `KEY=value` lines, unquoting values.
pub fn parse_os_release(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (
                k.trim().to_owned(),
                unquoted.replace("\\\"", "\"").replace("\\\\", "\\"),
            )
        })
        .collect()
}

/// `major.minor` of `VERSION_ID` as a number (`20.04` → 20.04), if numeric.
fn version_number(version_id: &str) -> Option<f64> {
    let mut parts = version_id.split('.');
    let major = parts.next()?;
    let joined = match parts.next() {
        Some(minor) => format!("{major}.{minor}"),
        None => major.to_owned(),
    };
    joined.parse().ok()
}

/// The `os` collector.
#[derive(Debug)]
pub struct OsCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> OsCollector {
    OsCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for OsCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let candidates = [
            self.roots.root("/etc/os-release"),
            self.roots.root("/usr/lib/os-release"),
        ];
        let text = candidates
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .ok_or_else(|| CollectError::NoData("no os-release file".into()))?;
        let fields = parse_os_release(&text);
        let get = |key: &str| fields.get(key).cloned().unwrap_or_default();
        out.gauge(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            vec![
                ("build_id", get("BUILD_ID")),
                ("id", get("ID")),
                ("id_like", get("ID_LIKE")),
                ("image_id", get("IMAGE_ID")),
                ("image_version", get("IMAGE_VERSION")),
                ("name", get("NAME")),
                ("pretty_name", get("PRETTY_NAME")),
                ("variant", get("VARIANT")),
                ("variant_id", get("VARIANT_ID")),
                ("version", get("VERSION")),
                ("version_codename", get("VERSION_CODENAME")),
                ("version_id", get("VERSION_ID")),
            ],
            1.0,
        );
        if let Some(version) = version_number(&get("VERSION_ID")) {
            out.gauge(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
                vec![
                    ("id", get("ID")),
                    ("id_like", get("ID_LIKE")),
                    ("name", get("NAME")),
                ],
                version,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_values_and_version() {
        let fields =
            parse_os_release("NAME=\"Debian GNU/Linux\"\nID=debian\n# comment\nVERSION_ID='12'\n");
        assert_eq!(fields["NAME"], "Debian GNU/Linux");
        assert_eq!(fields["VERSION_ID"], "12");
        assert_eq!(version_number("20.04.2"), Some(20.04));
        assert_eq!(version_number("rolling"), None);
    }
}
