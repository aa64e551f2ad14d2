//! The ingest bench's forwarding runs (`BENCH_FORWARD=1`): dcmon-receiver
//! storing the workload and forwarding it to one upstream
//! (VictoriaMetrics) or two (VictoriaMetrics and Prometheus), both started
//! for the run.
//!
//! While the senders write, the receiver forwards; after them this waits
//! until every upstream's `dcmon_receiver_forward_samples_total` (read
//! from the receiver's `/metrics`) accounts for every sample sent, and
//! then asks each upstream how many samples it holds. The upstreams are
//! processes of their own, so their CPU never enters the receiver's
//! figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use crate::{Server, System};

/// Polling interval of the receiver's `/metrics` while forwarding
/// finishes: the resolution of the forwarding time.
const POLL: Duration = Duration::from_millis(250);

/// How long forwarding may make no progress at all before the wait is
/// given up (retries back off to 10 s at most, so this is stuck).
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// The upstream sets of the forwarding runs, in the order they run.
pub const UPSTREAM_SETS: [&[System]; 2] = [
    &[System::VictoriaMetrics],
    &[System::VictoriaMetrics, System::Prometheus],
];

/// An upstream started for a forwarding run.
#[derive(Debug)]
pub struct Upstream {
    pub system: System,
    pub server: Server,
    /// Its remote-write URL, as the receiver is given it.
    pub write_url: String,
}

/// Flags an upstream starts with besides its usual ones.
pub fn upstream_args(system: System) -> Vec<String> {
    match system {
        // Queries see what was written up to now (not only what is 30 s
        // old), and never an answer cached before the last write.
        System::VictoriaMetrics => vec![
            "-search.latencyOffset=0s".to_owned(),
            "-search.disableCache".to_owned(),
        ],
        _ => Vec::new(),
    }
}

/// How a forwarding run is named.
pub fn run_label(upstreams: usize) -> String {
    match upstreams {
        1 => "dcmon → 1 upstream".to_owned(),
        n => format!("dcmon → {n} upstreams"),
    }
}

/// The receiver's counts for one upstream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// How far one upstream's forwarding had come.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub counts: Counts,
    /// Bytes in its on-disk queue right after the last write, when the
    /// wait began: what forwarding had not kept up with.
    pub queued_after_send: u64,
    /// From the first write until every sample was sent (or dropped);
    /// `None` when the wait was given up.
    pub done_after: Option<Duration>,
}

impl Counts {
    /// Every sample has been either sent or dropped.
    fn accounts_for(&self, samples: u64) -> bool {
        self.sent + self.dropped >= samples
    }
}

/// What one upstream got in a forwarding run.
#[derive(Debug)]
pub struct UpstreamResult {
    pub system: System,
    /// Its final counts, and how the wait went.
    pub progress: Progress,
    /// The protobuf message the receiver sends it.
    pub message: Option<String>,
    /// The samples it holds by its own account.
    pub holds: Result<u64, String>,
}

/// The forwarding figures of a run.
#[derive(Debug)]
pub struct Forwarded {
    pub upstreams: Vec<UpstreamResult>,
    /// From the first write until every upstream was done; `None` when the
    /// wait was given up.
    pub done_after: Option<Duration>,
    /// Receiver CPU time from the first write until then.
    pub cpu: Duration,
}

/// Waits until the receiver has sent (or dropped) all `samples` to every
/// upstream; `started` is when the first write went out. Returns how far
/// each upstream came, or gives up (with a printed note) after
/// `STALL_LIMIT` without progress.
pub fn wait_forwarded(
    label: &str,
    control: &Client,
    receiver: &mut Server,
    token: &str,
    upstreams: &mut [Upstream],
    samples: u64,
    started: Instant,
) -> Result<Vec<Progress>, String> {
    let mut done = vec![Progress::default(); upstreams.len()];
    let mut last_progress = Instant::now();
    let mut first_poll = true;
    loop {
        receiver.check_alive()?;
        for upstream in upstreams.iter_mut() {
            upstream
                .server
                .check_alive()
                .map_err(|e| format!("{label}: upstream {}: {e}", upstream.system.label()))?;
        }
        let text = metrics_text(control, receiver, token)?;
        let now = started.elapsed();
        for (upstream, progress) in upstreams.iter().zip(done.iter_mut()) {
            let latest = counts_of(&text, &upstream.write_url);
            if latest != progress.counts {
                last_progress = Instant::now();
            }
            progress.counts = latest;
            if first_poll {
                progress.queued_after_send = queue_bytes_of(&text, &upstream.write_url);
            }
            if progress.done_after.is_none() && latest.accounts_for(samples) {
                progress.done_after = Some(now);
            }
        }
        first_poll = false;
        if done.iter().all(|p| p.done_after.is_some()) {
            return Ok(done);
        }
        if last_progress.elapsed() > STALL_LIMIT {
            println!(
                "{label}: forwarding made no progress for {} s; measuring anyway",
                STALL_LIMIT.as_secs()
            );
            return Ok(done);
        }
        std::thread::sleep(POLL);
    }
}

/// Final counts and message per upstream, and what each upstream holds.
pub fn finish(
    control: &Client,
    receiver: &Server,
    token: &str,
    upstreams: &[Upstream],
    waited: Vec<Progress>,
    first_tick_ms: i64,
) -> Result<Vec<UpstreamResult>, String> {
    let text = metrics_text(control, receiver, token)?;
    Ok(upstreams
        .iter()
        .zip(waited)
        .map(|(upstream, progress)| UpstreamResult {
            system: upstream.system,
            progress: Progress {
                counts: counts_of(&text, &upstream.write_url),
                ..progress
            },
            message: message_of(&text, &upstream.write_url),
            holds: held_samples(control, upstream, first_tick_ms),
        })
        .collect())
}

/// The receiver's `/metrics`, read with its admin token.
fn metrics_text(control: &Client, receiver: &Server, token: &str) -> Result<String, String> {
    control
        .get(receiver.url("/metrics"))
        .bearer_auth(token)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .map_err(|e| format!("receiver /metrics: {e}"))
}

/// The labels and value of each sample of `family` in exposition `text`.
fn samples_of<'t>(
    text: &'t str,
    family: &str,
) -> impl Iterator<Item = (BTreeMap<String, String>, &'t str)> {
    let prefix = format!("{family}{{");
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(&prefix)?;
        let (labels, value) = rest.rsplit_once("} ")?;
        Some((parse_labels(labels), value.trim()))
    })
}

/// `a="x",b="y"` (with `\"`, `\\` and `\n` escapes in values) as a map.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// The receiver names an upstream by its URL as a URL parser writes it.
fn upstream_name(write_url: &str) -> String {
    reqwest::Url::parse(write_url).map_or_else(|_| write_url.to_owned(), |u| u.to_string())
}

/// The receiver's forwarded-sample counts for the upstream at `write_url`.
fn counts_of(text: &str, write_url: &str) -> Counts {
    let name = upstream_name(write_url);
    let mut counts = Counts::default();
    for (labels, value) in samples_of(text, "dcmon_receiver_forward_samples_total") {
        if labels.get("upstream") != Some(&name) {
            continue;
        }
        let value = value.parse::<f64>().unwrap_or(0.0) as u64;
        match labels.get("result").map(String::as_str) {
            Some("sent") => counts.sent = value,
            Some("failed") => counts.failed = value,
            Some("dropped") => counts.dropped = value,
            _ => {}
        }
    }
    counts
}

/// The bytes in the receiver's on-disk queue for the upstream at
/// `write_url`.
fn queue_bytes_of(text: &str, write_url: &str) -> u64 {
    let name = upstream_name(write_url);
    samples_of(text, "dcmon_receiver_forward_queue_bytes")
        .find(|(labels, _)| labels.get("upstream") == Some(&name))
        .and_then(|(_, value)| value.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The protobuf message the receiver sends the upstream at `write_url`.
fn message_of(text: &str, write_url: &str) -> Option<String> {
    let name = upstream_name(write_url);
    samples_of(text, "dcmon_receiver_forward_protobuf_message_info")
        .find(|(labels, _)| labels.get("upstream") == Some(&name))
        .and_then(|(mut labels, _)| labels.remove("protobuf_message"))
}

/// The samples `upstream` holds by its own account: VictoriaMetrics
/// counts them over the whole workload (after a flush), Prometheus tells
/// how many it appended to its head.
fn held_samples(control: &Client, upstream: &Upstream, first_tick_ms: i64) -> Result<u64, String> {
    let server = &upstream.server;
    match upstream.system {
        System::VictoriaMetrics => {
            control
                .get(server.url("/internal/force_flush"))
                .send()
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("force_flush: {e}"))?;
            let now_ms = crate::support::now_ms();
            // Every sample lies between the first tick and now.
            let window_s = (now_ms - first_tick_ms) / 1000 + 60;
            let answer: serde_json::Value = control
                .get(server.url("/api/v1/query"))
                .query(&[
                    (
                        "query",
                        format!("sum(count_over_time({{job=\"dcmon\"}}[{window_s}s]))"),
                    ),
                    ("time", format!("{:.3}", now_ms as f64 / 1000.0)),
                ])
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.json())
                .map_err(|e| format!("query: {e}"))?;
            let value = &answer["data"]["result"][0]["value"][1];
            match value.as_str() {
                Some(v) => v
                    .parse::<f64>()
                    .map(|v| v as u64)
                    .map_err(|_| format!("query answered {value}")),
                // No series at all.
                None if answer["data"]["result"]
                    .as_array()
                    .is_some_and(Vec::is_empty) =>
                {
                    Ok(0)
                }
                None => Err(format!("query answered {answer}")),
            }
        }
        System::Prometheus => {
            let text = control
                .get(server.url("/metrics"))
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.text())
                .map_err(|e| format!("/metrics: {e}"))?;
            // One line per sample type (float, histogram) in newer
            // versions, a single unlabelled one in older ones.
            let total: f64 = text
                .lines()
                .filter(|l| l.starts_with("prometheus_tsdb_head_samples_appended_total"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum();
            Ok(total as u64)
        }
        System::Dcmon => Err("not an upstream".into()),
    }
}

/// Prints what each upstream got in a forwarding run.
pub fn print_upstreams(label: &str, forwarded: &Forwarded, samples: u64) {
    for upstream in &forwarded.upstreams {
        let Progress {
            counts:
                Counts {
                    sent,
                    failed,
                    dropped,
                },
            queued_after_send,
            done_after,
        } = upstream.progress;
        let done = match done_after {
            Some(after) => format!(
                "done after {:.2} s ({:.0} samples/s)",
                after.as_secs_f64(),
                samples as f64 / after.as_secs_f64()
            ),
            None => "not done".to_owned(),
        };
        let holds = match &upstream.holds {
            Ok(held) if *held == samples => format!("holds {held} samples (as sent)"),
            Ok(held) => format!("holds {held} samples, NOT the {samples} sent"),
            Err(e) => format!("holds ? samples ({e})"),
        };
        println!(
            "{label} / {}: sent {sent}, failed {failed}, dropped {dropped} ({}); \
             queue {queued_after_send} bytes after the last write; {done}; {holds}",
            upstream.system.label(),
            upstream.message.as_deref().unwrap_or("message ?"),
        );
    }
}
