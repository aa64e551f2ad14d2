//! The README's first command: `scripts/quickstart` builds both programs,
//! starts a receiver and an enrolled exporter, and prints a query that
//! returns this machine's data; Ctrl-C stops both.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::client;
use crate::common::peer::free_addr;

fn port(addr: &str) -> String {
    addr.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn the_quickstart_gives_a_working_stack_and_stops_cleanly() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (receiver_addr, exporter_addr) = (free_addr(), free_addr());
    let mut script = Command::new(workspace.join("scripts/quickstart"))
        .env("DCMON_QUICKSTART_DIR", data.path())
        .env("DCMON_RECEIVER_PORT", port(&receiver_addr))
        .env("DCMON_EXPORTER_PORT", port(&exporter_addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, printed) = mpsc::channel();
    let stdout = script.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let stderr = script.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    // What the script prints: the token file and a query to paste.
    let mut token_file = None;
    let mut query_url = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let line = printed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the quickstart printed its banner");
        if let Some(path) = line.trim().strip_prefix("admin token: ") {
            token_file = Some(path.to_owned());
        }
        if let Some(start) = line.find("'http://") {
            let url = &line[start + 1..];
            query_url = Some(url[..url.find('\'').unwrap()].to_owned());
        }
        if line.contains("Ctrl-C stops both") {
            break;
        }
    }
    let token = std::fs::read_to_string(token_file.expect("token file printed")).unwrap();
    let query_url = query_url.expect("a query printed");
    assert!(query_url.starts_with(&format!("http://{receiver_addr}/api/v1/query?")));

    // The printed query answers with this machine's data once it shipped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let response = client()
            .get(&query_url)
            .bearer_auth(token.trim())
            .send()
            .unwrap();
        let answer: Value = response.json().unwrap_or_default();
        if answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break answer;
        }
        assert!(Instant::now() < deadline, "no data in time: {answer}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(answer["status"], "success");
    let metrics = client()
        .get(format!("http://{exporter_addr}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("node_load1 "));

    // Ctrl-C stops both.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(script.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = script.wait().unwrap();
    let stderr = errors.join().unwrap();
    assert!(stderr.contains("Stopped."), "{status}: {stderr}");
    for addr in [&receiver_addr, &exporter_addr] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still listening after Ctrl-C"
        );
    }
}
