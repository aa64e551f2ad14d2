//! The exporter's HTTP surface over real loopback: content types, format
//! negotiation, gzip, landing page.

use std::io::Read;

use crate::common::process::{Server, get, get_text};

#[test]
fn default_scrape_is_text_004_with_the_content_type_prometheus_3_requires() {
    let exporter = Server::exporter(&[]);
    let (status, headers, body) = get(&exporter.url("/metrics"), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("# TYPE node_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    // Every family carries HELP and TYPE.
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(helps, types);
    assert!(helps > 40, "only {helps} families");
}

#[test]
fn openmetrics_when_accept_asks_for_it() {
    let exporter = Server::exporter(&[]);
    let accept =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    let (status, headers, body) = get(&exporter.url("/metrics"), &[("accept", accept)]);
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE node_cpu_seconds counter\n"), "{text}");
}

#[test]
fn gzip_when_accepted() {
    let exporter = Server::exporter(&[]);
    let (status, headers, body) = get(&exporter.url("/metrics"), &[("accept-encoding", "gzip")]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("node_load1 "), "{text}");
    let (_, plain_headers, _) = get(&exporter.url("/metrics"), &[]);
    assert!(plain_headers.get("content-encoding").is_none());
}

#[test]
fn landing_page_links_to_metrics_and_unknown_paths_are_404() {
    let exporter = Server::exporter(&["--web.telemetry-path", "/custom"]);
    let page = get_text(&exporter.url("/"));
    assert!(page.contains("href=\"/custom\""), "{page}");
    assert!(get_text(&exporter.url("/custom")).contains("node_load1"));
    assert_eq!(get(&exporter.url("/metrics"), &[]).0, 404);
}

#[test]
fn disabled_collectors_are_not_run() {
    let exporter = Server::exporter(&["--collector.disable-defaults", "--collector.loadavg"]);
    let text = get_text(&exporter.url("/metrics"));
    let collectors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("node_scrape_collector_success"))
        .collect();
    assert_eq!(
        collectors,
        ["node_scrape_collector_success{collector=\"loadavg\"} 1"]
    );
    assert!(text.contains("dcmon_exporter_build_info{version="));
    assert!(text.contains("process_resident_memory_bytes "));
}
