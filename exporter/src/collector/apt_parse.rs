//! Pure parsers for apt's output: `apt-get --just-print dist-upgrade`
//! (pending upgrades by origin and architecture, autoremove candidates),
//! `apt-mark showhold`, and `apt list --installed` (obsolete packages).
//!
//! Only `Inst` lines are counted, never the summary line: apt 3.0's `apt`
//! binary rewrote the summary, phased updates (Ubuntu) are counted as "not
//! upgraded" without an `Inst` line, and `-qq` drops the summary altogether
//! (see `tests/fixtures/apt/README.md`).

use std::collections::BTreeMap;

/// One package apt would install or upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Package name, without an `:arch` qualifier.
    pub package: String,
    /// The origins, as apt_info.sh labels them: `Label:Version/Suite`
    /// entries joined by `,` without spaces
    /// (`Debian:12.15/oldstable,Debian-Security:12/oldstable-security`).
    pub origin: String,
    /// Architecture (`amd64`, `all`).
    pub arch: String,
}

/// What one dist-upgrade simulation says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simulation {
    /// One entry per `Inst` line.
    pub upgrades: Vec<Upgrade>,
    /// Packages listed as "automatically installed and no longer required".
    pub autoremovable: usize,
}

const AUTOREMOVE_HEADING: &str =
    "The following packages were automatically installed and are no longer required:";

/// A package name without its `:arch` qualifier (`libc6:i386` → `libc6`).
pub fn base_name(package: &str) -> &str {
    package.split_once(':').map_or(package, |(name, _)| name)
}

/// Parses one `Inst` line: `Inst pkg [old] (new Origin[, Origin…] [arch]) […]`.
/// `[old]` is missing for new packages; versions carry epochs, so nothing
/// is split on `:`.
pub fn parse_inst(line: &str) -> Option<Upgrade> {
    let rest = line.strip_prefix("Inst ")?;
    let package = rest.split_whitespace().next()?;
    let open = rest.find('(')?;
    let close = open + rest[open..].find(')')?;
    let inside = &rest[open + 1..close];
    let (_version, origins_and_arch) = inside.trim().split_once(' ')?;
    let (origins, arch) = match origins_and_arch.rfind('[') {
        Some(at) => (
            &origins_and_arch[..at],
            origins_and_arch[at + 1..].trim_end().trim_end_matches(']'),
        ),
        None => (origins_and_arch, ""),
    };
    let origin = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    Some(Upgrade {
        package: base_name(package).to_owned(),
        origin,
        arch: arch.trim().to_owned(),
    })
}

/// Parses `apt-get --just-print dist-upgrade` (any quiet level). Errors when
/// the text has neither `Inst` lines nor anything apt prints on success,
/// so a failed or garbled run is not read as "no upgrades".
pub fn parse_simulation(text: &str) -> Result<Simulation, String> {
    let mut simulation = Simulation::default();
    let mut in_autoremove = false;
    let mut looks_like_apt = false;
    for line in text.lines() {
        if in_autoremove {
            if let Some(names) = line.strip_prefix("  ") {
                simulation.autoremovable += names.split_whitespace().count();
                continue;
            }
            in_autoremove = false;
        }
        if line == AUTOREMOVE_HEADING {
            in_autoremove = true;
            looks_like_apt = true;
        } else if line.starts_with("Inst ") {
            let upgrade = parse_inst(line).ok_or_else(|| format!("unreadable line {line:?}"))?;
            simulation.upgrades.push(upgrade);
        } else if line.starts_with("Reading package lists")
            || line.starts_with("Conf ")
            || line.starts_with("NOTE: This is only a simulation")
            || line.contains(" upgraded, ")
        {
            looks_like_apt = true;
        }
    }
    // `-qq` with nothing to do prints nothing at all: that is a valid
    // empty result. Any other text must look like apt's.
    if !looks_like_apt && simulation.upgrades.is_empty() && !text.trim().is_empty() {
        return Err("output does not look like apt-get's".into());
    }
    Ok(simulation)
}

/// Counts upgrades by `(origin, arch)`.
pub fn count_by_origin<'a>(
    upgrades: impl IntoIterator<Item = &'a Upgrade>,
) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for upgrade in upgrades {
        *counts
            .entry((upgrade.origin.clone(), upgrade.arch.clone()))
            .or_default() += 1;
    }
    counts
}

/// Package names from `apt-mark showhold` (one per line).
pub fn parse_held(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| base_name(l).to_owned())
        .collect()
}

/// Installed packages no configured archive offers any more: the
/// `[installed,local]` lines of `apt list --installed`.
pub fn count_obsolete(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_end().ends_with("[installed,local]"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inst_line_with_epoch_two_origins_and_dependency_groups() {
        let up = parse_inst(
            "Inst libpam-modules [1.5.2-6+deb12u1] (1:1.5.2-6+deb12u2 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64]) [libpam-modules:amd64 on libpam-modules-bin:amd64] [libpam-modules:amd64 ]",
        )
        .unwrap();
        assert_eq!(up.package, "libpam-modules");
        assert_eq!(
            up.origin,
            "Debian:12.15/oldstable,Debian-Security:12/oldstable-security"
        );
        assert_eq!(up.arch, "amd64");
    }

    #[test]
    fn new_package_without_old_version() {
        let up = parse_inst("Inst phased-new (3 unstable-updates [all])").unwrap();
        assert_eq!(
            (up.origin.as_str(), up.arch.as_str()),
            ("unstable-updates", "all")
        );
    }

    #[test]
    fn autoremove_block_is_counted() {
        let text = format!(
            "Reading package lists...\n{AUTOREMOVE_HEADING}\n  a b\n  c\nUse 'apt autoremove' to remove them.\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
        );
        let sim = parse_simulation(&text).unwrap();
        assert_eq!(sim.autoremovable, 3);
        assert!(sim.upgrades.is_empty());
    }

    #[test]
    fn foreign_text_is_an_error() {
        assert!(parse_simulation("E: Could not get lock /var/lib/dpkg/lock-frontend\n").is_err());
        assert!(parse_simulation("Inst broken-line-without-parens\n").is_err());
        assert_eq!(parse_simulation("").unwrap(), Simulation::default());
    }
}
