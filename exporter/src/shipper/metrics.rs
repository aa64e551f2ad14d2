//! The shipper's own metrics, per endpoint: samples sent, failed (an attempt
//! that will be retried) and dropped (refused with a 4xx, evicted from the
//! spool by its bounds, or lost with a corrupt spool file), the bytes of
//! the delivered request bodies (so wire bytes per sample are
//! `dcmon_remote_write_bytes_total / dcmon_remote_write_samples_total{result="sent"}`),
//! the protobuf message the endpoint is sent now, the spool's size, and
//! when a write last succeeded. Shown on `/metrics` and shipped with every
//! batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use dcmon_ship::metrics::EndpointMetrics;

use crate::snapshot::Snapshot;

/// The metrics of every endpoint, shared by the shipper and `/metrics`.
#[derive(Debug, Default)]
pub struct ShipperMetrics {
    endpoints: Vec<Arc<EndpointMetrics>>,
    skipped_ticks: AtomicU64,
}

impl ShipperMetrics {
    /// Metrics over these endpoints.
    pub fn new(endpoints: Vec<Arc<EndpointMetrics>>) -> Self {
        Self {
            endpoints,
            skipped_ticks: AtomicU64::new(0),
        }
    }

    /// Counts ticks never collected because a collection overran them.
    pub fn skipped(&self, ticks: u64) {
        self.skipped_ticks.fetch_add(ticks, Ordering::Relaxed);
    }

    /// Ticks skipped so far.
    pub fn skipped_ticks(&self) -> u64 {
        self.skipped_ticks.load(Ordering::Relaxed)
    }

    /// Appends the shipper families to `out`.
    pub fn collect(&self, out: &mut Snapshot) {
        out.counter(
            "dcmon_remote_write_ticks_skipped_total",
            "Collection ticks skipped because the previous collection overran them (no batch exists for them).",
            vec![],
            self.skipped_ticks() as f64,
        );
        for m in &self.endpoints {
            let label = || m.endpoint().to_owned();
            for (result, counter) in [
                ("sent", m.totals().0),
                ("failed", m.totals().1),
                ("dropped", m.totals().2),
            ] {
                out.counter(
                    "dcmon_remote_write_samples_total",
                    "Samples by outcome: sent (acknowledged), failed (an attempt that is retried), dropped (refused with a 4xx, evicted from the spool by its bounds, or in a corrupt spool file).",
                    vec![("endpoint", label()), ("result", result.into())],
                    counter as f64,
                );
            }
            out.counter(
                "dcmon_remote_write_bytes_total",
                "Bytes of the request bodies (snappy-compressed protobuf, as on the wire, without HTTP headers) the endpoint acknowledged; divided by dcmon_remote_write_samples_total{result=\"sent\"}, the wire bytes per sample.",
                vec![("endpoint", label())],
                m.sent_bytes() as f64,
            );
            out.gauge(
                "dcmon_remote_write_protobuf_message_info",
                "The protobuf message the endpoint is sent now (protobuf_message), and its setting (setting: v1, v2, or auto, which falls back to prometheus.WriteRequest once the endpoint shows it takes only that); always 1.",
                vec![
                    ("endpoint", label()),
                    ("protobuf_message", m.negotiation().current().proto().into()),
                    ("setting", m.negotiation().setting().as_str().into()),
                ],
                1.0,
            );
            out.counter(
                "dcmon_remote_write_spool_corrupt_files_total",
                "Spool files found torn or corrupt and removed.",
                vec![("endpoint", label())],
                m.corrupt_file_count() as f64,
            );
            out.gauge(
                "dcmon_remote_write_spool_bytes",
                "Bytes of batches waiting in the on-disk spool.",
                vec![("endpoint", label())],
                m.spool_bytes() as f64,
            );
            out.gauge(
                "dcmon_remote_write_last_success_timestamp_seconds",
                "When a write to the endpoint last succeeded (0: never since start).",
                vec![("endpoint", label())],
                m.last_success_ms() as f64 / 1000.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shipper::message::{Negotiation, ProtobufMessage};

    #[test]
    fn families_carry_the_endpoint_and_result_labels() {
        let negotiation = Arc::new(Negotiation::new(ProtobufMessage::Auto));
        let endpoint = Arc::new(EndpointMetrics::new(
            "http://r/api/v1/write",
            Arc::clone(&negotiation),
        ));
        endpoint.sent(10, 120, 1_700_000_000_500);
        endpoint.failed(3);
        endpoint.dropped(2);
        endpoint.set_spool_bytes(4096);
        let mut out = Snapshot::new();
        ShipperMetrics::new(vec![Arc::clone(&endpoint)]).collect(&mut out);
        let samples = &out.get("dcmon_remote_write_samples_total").unwrap().samples;
        let value = |result: &str| {
            samples
                .iter()
                .find(|s| s.labels.contains(&("result", result.into())))
                .unwrap()
                .value
        };
        assert_eq!(
            (value("sent"), value("failed"), value("dropped")),
            (10.0, 3.0, 2.0)
        );
        assert_eq!(
            out.get("dcmon_remote_write_spool_bytes").unwrap().samples[0].value,
            4096.0
        );
        assert_eq!(
            out.get("dcmon_remote_write_last_success_timestamp_seconds")
                .unwrap()
                .samples[0]
                .value,
            1_700_000_000.5
        );
        assert_eq!(
            out.get("dcmon_remote_write_bytes_total").unwrap().samples[0].value,
            120.0
        );
        let message = |out: &Snapshot| {
            let sample = &out
                .get("dcmon_remote_write_protobuf_message_info")
                .unwrap()
                .samples[0];
            (sample.labels.clone(), sample.value)
        };
        let labels = |message: &str| {
            vec![
                ("endpoint", "http://r/api/v1/write".to_owned()),
                ("protobuf_message", message.to_owned()),
                ("setting", "auto".to_owned()),
            ]
        };
        assert_eq!(
            message(&out),
            (labels("io.prometheus.write.v2.Request"), 1.0)
        );
        negotiation.fall_back();
        let mut after = Snapshot::new();
        ShipperMetrics::new(vec![Arc::clone(&endpoint)]).collect(&mut after);
        assert_eq!(message(&after), (labels("prometheus.WriteRequest"), 1.0));
    }
}
