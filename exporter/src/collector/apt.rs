//! `apt`: pending package upgrades (Debian/Ubuntu) with the names of the
//! textfile-collector `apt_info` script, plus `node_reboot_required`.
//!
//! Simulating an upgrade takes seconds of CPU, so it runs on a background
//! thread every `--collector.apt.interval` (first run at the first scrape)
//! and scrapes serve the last result with `dcmon_apt_result_age_seconds`.
//! `apt update` is never run: the figures are as fresh as the host's own
//! package lists, whose age `apt_package_cache_timestamp_seconds` gives.
//! Cheap file checks (reboot flag, cache timestamp) are read on every scrape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, UNIX_EPOCH};

use super::apt_parse::{self, Simulation};
use super::background::{Absence, Background, Renewal};
use super::{CollectError, Collector};
use crate::config::{AptConfig, Config};
use crate::roots::Roots;
use crate::snapshot::Snapshot;
use crate::tool::{Tool, ToolError, ToolOutput};

/// Flag and label name.
pub const NAME: &str = "apt";

/// `(origin, arch)` → number of packages.
type ByOrigin = BTreeMap<(String, String), usize>;

/// The result of one background run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptReport {
    /// Upgrades `apt-get dist-upgrade` would install.
    pub pending: ByOrigin,
    /// Upgrades held back by `apt-mark hold`.
    pub held: ByOrigin,
    /// Autoremove candidates.
    pub autoremove: usize,
    /// Installed packages no archive offers; `None` when `apt list` failed.
    pub obsolete: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// The last successful report and when it was computed.
    report: Option<(Instant, AptReport)>,
    /// Why the latest run failed, if it did.
    error: Option<AptError>,
}

/// Why an apt run produced no report.
#[derive(Debug, Clone)]
struct AptError {
    /// apt is not installed (not a Debian-family host): reported as no
    /// data and logged once, not as a failure every interval.
    absent: bool,
    msg: String,
}

impl AptError {
    fn broken(msg: String) -> Self {
        Self { absent: false, msg }
    }
}

/// The programs a run uses.
#[derive(Debug)]
struct Apt {
    apt_get: Tool,
    apt_mark: Tool,
    apt: Tool,
    absence: Absence,
}

/// The `apt` collector.
#[derive(Debug)]
pub struct AptCollector {
    /// `apt-get`, for errors.
    program: PathBuf,
    state: Background<State>,
    roots: Roots,
}

/// Builds the collector; the background run starts at the first scrape,
/// so building a configuration never runs apt.
pub fn new(config: &Config) -> AptCollector {
    let AptConfig {
        apt_get,
        apt_mark,
        apt,
        interval,
    } = &config.apt;
    let runner = Apt {
        apt_get: Tool::new(&apt_get.program, apt_get.timeout),
        apt_mark: Tool::new(apt_mark, apt_get.timeout),
        apt: Tool::new(apt, apt_get.timeout),
        absence: Absence::default(),
    };
    AptCollector {
        program: apt_get.program.clone(),
        state: Background::new("dcmon-apt", Renewal::Interval(*interval), move |previous| {
            runner.refresh(previous)
        }),
        roots: config.roots.clone(),
    }
}

/// `apt-get --just-print dist-upgrade`: a simulation, which needs no root
/// and, with `Debug::NoLocking`, does not wait for (or block) a running dpkg.
fn simulate(apt_get: &Tool, ignore_holds: bool) -> Result<Simulation, AptError> {
    let mut args = vec![
        "--just-print",
        "-o",
        "Debug::NoLocking=true",
        "-o",
        "APT::Get::Show-User-Simulation-Note=false",
    ];
    if ignore_holds {
        args.extend(["-o", "APT::Ignore-Hold=true"]);
    }
    args.push("dist-upgrade");
    let output = checked(apt_get.clone().args(args).run(), "apt-get")?;
    apt_parse::parse_simulation(&output.stdout)
        .map_err(|e| AptError::broken(format!("apt-get: {e}")))
}

fn checked(result: Result<ToolOutput, ToolError>, what: &str) -> Result<ToolOutput, AptError> {
    let output = result.map_err(|e| AptError {
        absent: matches!(e, ToolError::NotFound { .. }),
        msg: e.to_string(),
    })?;
    if output.succeeded() {
        Ok(output)
    } else {
        Err(AptError::broken(format!(
            "{what} failed ({}): {}",
            output.status,
            output.first_error_line()
        )))
    }
}

impl Apt {
    /// Runs apt once and computes a report.
    fn compute(&self) -> Result<AptReport, AptError> {
        let mut report = AptReport::default();
        let simulation = simulate(&self.apt_get, false)?;
        report.pending = apt_parse::count_by_origin(&simulation.upgrades);
        report.autoremove = simulation.autoremovable;

        // Held packages never show up in a plain simulation; simulating
        // again with holds ignored says which origin each would come from.
        let held = checked(self.apt_mark.clone().args(["showhold"]).run(), "apt-mark")
            .map(|o| apt_parse::parse_held(&o.stdout))?;
        if !held.is_empty() {
            let with_held = simulate(&self.apt_get, true)?;
            report.held = apt_parse::count_by_origin(
                with_held
                    .upgrades
                    .iter()
                    .filter(|u| held.contains(&u.package)),
            );
        }

        // Optional: an `apt` binary may be missing (minimal images).
        report.obsolete = checked(self.apt.clone().args(["list", "--installed"]).run(), "apt")
            .ok()
            .map(|o| apt_parse::count_obsolete(&o.stdout));
        Ok(report)
    }

    /// Computes a report: the new state keeps the previous report when
    /// this run fails, so scrapes go on serving it.
    fn refresh(&self, previous: Option<&State>) -> State {
        let mut state = previous.cloned().unwrap_or_default();
        match self.compute() {
            Ok(report) => {
                state.report = Some((Instant::now(), report));
                state.error = None;
            }
            Err(err) if err.absent => {
                self.absence.note(
                    NAME,
                    &err.msg,
                    "apt not available; the apt collector will report success 0",
                );
                state.error = Some(err);
            }
            Err(err) => {
                tracing::warn!(collector = NAME, error = %err.msg, "apt run failed; serving the previous result");
                state.error = Some(err);
            }
        }
        state
    }
}

impl AptCollector {
    /// Runs apt now, on the calling thread, and stores the result (the
    /// background thread calls the same; tests call it directly).
    pub fn refresh(&self) {
        self.state.run_now();
    }

    fn write_files(&self, out: &mut Snapshot) {
        out.gauge(
            "node_reboot_required",
            "Node reboot is required for software updates.",
            vec![],
            // Existence is the signal; the file's text is not a format.
            if self.roots.root("/run/reboot-required").exists() {
                1.0
            } else {
                0.0
            },
        );
        let stamp = [
            "/var/lib/apt/periodic/update-success-stamp",
            "/var/lib/apt/lists",
        ]
        .iter()
        .find_map(|path| modified_seconds(self.roots.root(path)));
        if let Some(seconds) = stamp {
            out.gauge(
                "apt_package_cache_timestamp_seconds",
                "Apt update last run time.",
                vec![],
                seconds,
            );
        }
    }
}

fn modified_seconds(path: PathBuf) -> Option<f64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

/// Writes a report's families (apt_info.sh writes a zero sample with empty
/// labels when nothing is pending, so the series always exists).
pub fn write_report(out: &mut Snapshot, report: &AptReport) {
    let by_origin =
        |out: &mut Snapshot, name: &'static str, help: &'static str, counts: &ByOrigin| {
            let family = out.family(name, help, crate::snapshot::Kind::Gauge);
            if counts.is_empty() {
                family.push(
                    vec![("arch", String::new()), ("origin", String::new())],
                    0.0,
                );
            }
            for ((origin, arch), count) in counts {
                family.push(
                    vec![("arch", arch.clone()), ("origin", origin.clone())],
                    *count as f64,
                );
            }
        };
    by_origin(
        out,
        "apt_upgrades_pending",
        "Apt packages pending updates by origin.",
        &report.pending,
    );
    by_origin(
        out,
        "apt_upgrades_held",
        "Apt packages pending updates but held back.",
        &report.held,
    );
    out.gauge(
        "apt_autoremove_pending",
        "Apt packages pending autoremoval.",
        vec![],
        report.autoremove as f64,
    );
    if let Some(obsolete) = report.obsolete {
        out.gauge(
            "apt_packages_obsolete",
            "Apt packages which are obsolete.",
            vec![],
            obsolete as f64,
        );
    }
}

impl Collector for AptCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let state = self.state.latest().map(|s| s.value).unwrap_or_default();
        self.write_files(out);
        if let Some((at, report)) = &state.report {
            write_report(out, report);
            out.gauge(
                "dcmon_apt_result_age_seconds",
                "Seconds since the apt figures were computed (they are recomputed in the background).",
                vec![],
                at.elapsed().as_secs_f64(),
            );
        }
        match (&state.error, &state.report) {
            (Some(err), _) if err.absent => Err(CollectError::NoData(err.msg.clone())),
            (Some(err), _) => Err(CollectError::parse(&self.program, err.msg.clone())),
            (None, None) => Err(CollectError::NoData(
                "the first apt run has not finished yet".into(),
            )),
            (None, Some(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_pending_still_writes_the_series() {
        let mut out = Snapshot::new();
        write_report(&mut out, &AptReport::default());
        let pending = out.get("apt_upgrades_pending").unwrap();
        assert_eq!(pending.samples.len(), 1);
        assert_eq!(pending.samples[0].value, 0.0);
        assert!(out.get("apt_packages_obsolete").is_none());
    }

    #[test]
    fn timestamps_are_unix_seconds() {
        use std::time::SystemTime;
        let dir = tempfile::tempdir().unwrap();
        let seconds = modified_seconds(dir.path().to_owned()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - seconds).abs() < 60.0);
    }
}
