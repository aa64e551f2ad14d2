//! The textfile collector end to end: a real exporter process reading real
//! directories, scraped over loopback.

use std::path::Path;

use crate::common::parse_exposition;
use crate::common::process::{Server, get_text, promtool_check_metrics};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn only_textfile(dirs: &[&Path]) -> Server {
    let mut args = vec![
        "--collector.disable-defaults".to_owned(),
        "--collector.textfile".to_owned(),
    ];
    for dir in dirs {
        args.push("--collector.textfile.directory".to_owned());
        args.push(dir.to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::exporter(&args)
}

fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    parse_exposition(text)
        .get(name)
        .and_then(|f| f.series.get(labels).copied())
}

fn scrape_error(text: &str) -> f64 {
    value(text, "node_textfile_scrape_error", "").expect("node_textfile_scrape_error")
}

fn mtime_label(path: &Path) -> String {
    format!("file={:?}", path.to_str().unwrap())
}

#[test]
fn good_files_are_exported_with_their_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    write(
        &one,
        "raid.prom",
        "# HELP raid_disks_failed Failed member disks.\n\
         # TYPE raid_disks_failed gauge\n\
         raid_disks_failed{array=\"md0\",note=\"a \\\"quoted\\\" \\\\ value\"} 0\n\
         raid_disks_failed{array=\"md1\"} 1\n\
         cron_seen 1\n",
    );
    write(
        &one,
        "backup.prom",
        "# HELP backup_runs_total Backup runs.\n\
         # TYPE backup_runs_total counter\n\
         backup_runs_total{result=\"ok\"} 12\n\
         # TYPE backup_duration_seconds histogram\n\
         backup_duration_seconds_bucket{le=\"60\"} 3\n\
         backup_duration_seconds_bucket{le=\"+Inf\"} 4\n\
         backup_duration_seconds_sum 250.5\n\
         backup_duration_seconds_count 4\n",
    );
    write(&one, "notes.txt", "not a metric file\n");
    write(&two, "cron.prom", "cron_seen{job=\"nightly\"} 1\n");

    // With every default collector, so the check covers the combined output.
    let exporter = Server::exporter(&[
        "--collector.textfile.directory",
        one.to_str().unwrap(),
        "--collector.textfile.directory",
        two.to_str().unwrap(),
    ]);
    let text = get_text(&exporter.url("/metrics"));
    promtool_check_metrics(&text);
    let families = parse_exposition(&text);

    assert_eq!(scrape_error(&text), 0.0);
    let raid = &families["raid_disks_failed"];
    assert_eq!(
        (raid.kind.as_str(), raid.help.as_str()),
        ("gauge", "Failed member disks.")
    );
    assert_eq!(raid.series[r#"array="md1""#], 1.0);
    assert_eq!(
        raid.series[r#"array="md0",note="a \"quoted\" \\ value""#],
        0.0
    );
    assert_eq!(families["backup_runs_total"].kind, "counter");
    assert_eq!(
        value(&text, "backup_runs_total", r#"result="ok""#),
        Some(12.0)
    );
    assert_eq!(
        value(&text, "backup_duration_seconds_bucket", r#"le="+Inf""#),
        Some(4.0)
    );
    assert_eq!(value(&text, "backup_duration_seconds_sum", ""), Some(250.5));
    // One family from two directories; with no HELP anywhere it is named
    // after the files, as node_exporter names it.
    let cron = &families["cron_seen"];
    assert_eq!(cron.series.len(), 2);
    assert_eq!(
        cron.help,
        format!(
            "Metric read from {}, {}",
            one.join("raid.prom").display(),
            two.join("cron.prom").display()
        )
    );
    let mtimes = &families["node_textfile_mtime_seconds"].series;
    assert_eq!(mtimes.len(), 3, "{mtimes:?}");
    let modified = std::fs::metadata(one.join("raid.prom"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
        / 1000.0;
    assert_eq!(mtimes[&mtime_label(&one.join("raid.prom"))], modified);
    assert!(!text.contains("notes.txt"));
}

#[test]
fn a_file_with_a_syntax_error_is_skipped_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.prom", "good_metric 1\n");
    write(
        dir.path(),
        "bad.prom",
        "bad_first 1\n# TYPE bad_second gauge\nbad_second{x=\"1\" 2\n",
    );
    let exporter = only_textfile(&[dir.path()]);
    let text = get_text(&exporter.url("/metrics"));

    assert_eq!(scrape_error(&text), 1.0);
    assert_eq!(value(&text, "good_metric", ""), Some(1.0));
    // The whole file is skipped, its good first line too.
    assert!(!text.contains("bad_first"), "{text}");
    let bad = dir.path().join("bad.prom");
    assert_eq!(
        value(&text, "node_textfile_mtime_seconds", &mtime_label(&bad)),
        None
    );
    let logged = exporter.log_lines_containing("failed to parse textfile data");
    assert!(
        logged
            .iter()
            .any(|l| l.contains(bad.to_str().unwrap()) && l.contains("line=3")),
        "{}",
        exporter.log_text()
    );
}

#[test]
fn families_across_files_merge_and_conflicts_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let header = "# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\n";
    write(
        dir.path(),
        "a.prom",
        &format!("{header}jobs_total{{host=\"a\"}} 1\n"),
    );
    write(
        dir.path(),
        "b.prom",
        &format!("{header}jobs_total{{host=\"b\"}} 2\n"),
    );
    // Other HELP, other TYPE, and a series a.prom already gave: dropped.
    write(
        dir.path(),
        "c.prom",
        "# HELP jobs_total Something else.\n# TYPE jobs_total counter\njobs_total{host=\"c\"} 3\n",
    );
    write(
        dir.path(),
        "d.prom",
        "# TYPE jobs_total gauge\njobs_total{host=\"d\"} 4\nd_ok 1\n",
    );
    write(
        dir.path(),
        "e.prom",
        &format!("{header}jobs_total{{host=\"a\"}} 9\n"),
    );
    let exporter = only_textfile(&[dir.path()]);
    let text = get_text(&exporter.url("/metrics"));
    promtool_check_metrics(&text);

    let jobs = &parse_exposition(&text)["jobs_total"];
    assert_eq!(
        (jobs.kind.as_str(), jobs.help.as_str()),
        ("counter", "Jobs run.")
    );
    assert_eq!(
        jobs.series.iter().collect::<Vec<_>>(),
        [
            (&r#"host="a""#.to_owned(), &1.0),
            (&r#"host="b""#.to_owned(), &2.0)
        ]
    );
    // The rest of a conflicting file is kept.
    assert_eq!(value(&text, "d_ok", ""), Some(1.0));
    assert_eq!(scrape_error(&text), 1.0);
    for needle in [
        "inconsistent metric help text",
        "metric family is counter in an earlier file, gauge here",
        "series already read from an earlier file",
    ] {
        assert!(
            !exporter.log_lines_containing(needle).is_empty(),
            "no {needle:?} in {}",
            exporter.log_text()
        );
    }
}

#[test]
fn an_unreadable_file_sets_the_error_and_spares_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.prom", "good_metric 1\n");
    // A dangling link and a directory: open or read fails, even for root.
    std::os::unix::fs::symlink(dir.path().join("missing"), dir.path().join("gone.prom")).unwrap();
    std::fs::create_dir(dir.path().join("folder.prom")).unwrap();
    let exporter = only_textfile(&[dir.path()]);
    let text = get_text(&exporter.url("/metrics"));

    assert_eq!(scrape_error(&text), 1.0);
    assert_eq!(value(&text, "good_metric", ""), Some(1.0));
    let failed = exporter.log_lines_containing("failed to read textfile");
    for name in ["gone.prom", "folder.prom"] {
        assert!(
            failed.iter().any(|l| l.contains(name)),
            "{name}: {}",
            exporter.log_text()
        );
    }
    assert_eq!(
        parse_exposition(&text)["node_textfile_mtime_seconds"]
            .series
            .len(),
        1
    );
}

#[test]
fn a_directory_that_disappears_sets_the_error_until_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let (kept, vanishing) = (tmp.path().join("kept"), tmp.path().join("vanishing"));
    std::fs::create_dir(&kept).unwrap();
    std::fs::create_dir(&vanishing).unwrap();
    write(&kept, "kept.prom", "kept_metric 1\n");
    write(&vanishing, "v.prom", "vanishing_metric 1\n");
    let exporter = only_textfile(&[&kept, &vanishing]);

    let before = get_text(&exporter.url("/metrics"));
    assert_eq!(scrape_error(&before), 0.0);
    assert_eq!(value(&before, "vanishing_metric", ""), Some(1.0));

    std::fs::remove_dir_all(&vanishing).unwrap();
    let during = get_text(&exporter.url("/metrics"));
    assert_eq!(scrape_error(&during), 1.0);
    assert_eq!(value(&during, "kept_metric", ""), Some(1.0));
    assert!(!during.contains("vanishing_metric"));
    assert!(
        exporter
            .log_lines_containing("failed to read textfile collector directory")
            .iter()
            .any(|l| l.contains(vanishing.to_str().unwrap())),
        "{}",
        exporter.log_text()
    );

    std::fs::create_dir(&vanishing).unwrap();
    write(&vanishing, "v.prom", "vanishing_metric 2\n");
    let after = get_text(&exporter.url("/metrics"));
    assert_eq!(scrape_error(&after), 0.0);
    assert_eq!(value(&after, "vanishing_metric", ""), Some(2.0));
}
