//! Forwarding's figures per upstream, at `/metrics` (and so in the
//! receiver's self-scrape): samples sent, failed (an attempt that is
//! retried) and dropped (refused with a 4xx, evicted from the queue by its
//! bounds, or not taken in while forwarding was behind), bytes sent, the
//! queue's size and the age of its oldest batch, when a write last
//! succeeded, and the protobuf message the upstream is sent.

use std::sync::Arc;

use dcmon_ship::metrics::EndpointMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The figures of every upstream, read at scrape time.
#[derive(Debug, Clone)]
pub struct ForwardMetrics {
    upstreams: Vec<Arc<EndpointMetrics>>,
}

impl ForwardMetrics {
    /// Figures over these upstreams.
    pub fn new(upstreams: Vec<Arc<EndpointMetrics>>) -> Self {
        Self { upstreams }
    }
}

type UpstreamLabels = Vec<(&'static str, String)>;

fn encode_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: Vec<(UpstreamLabels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let sample = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(sample)?,
            _ => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for ForwardMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now_ms = dcmon_ship::now_ms();
        let upstream =
            |m: &EndpointMetrics| -> UpstreamLabels { vec![("upstream", m.endpoint().to_owned())] };
        let each = |value: &dyn Fn(&EndpointMetrics) -> f64| -> Vec<(UpstreamLabels, f64)> {
            self.upstreams
                .iter()
                .map(|m| (upstream(m), value(m)))
                .collect()
        };
        let mut samples = Vec::new();
        for m in &self.upstreams {
            let (sent, failed, dropped) = m.totals();
            for (result, value) in [("sent", sent), ("failed", failed), ("dropped", dropped)] {
                let mut labels = upstream(m);
                labels.push(("result", result.to_owned()));
                samples.push((labels, value as f64));
            }
        }
        encode_family(
            &mut encoder,
            "forward_samples",
            "Forwarded samples by outcome: sent (acknowledged), failed (an attempt that is retried), dropped (refused with a 4xx, evicted from the queue by its bounds, or not taken in while forwarding was behind)",
            MetricType::Counter,
            samples,
        )?;
        encode_family(
            &mut encoder,
            "forward_bytes",
            "Bytes of the request bodies the upstream acknowledged (snappy-compressed protobuf, as on the wire)",
            MetricType::Counter,
            each(&|m| m.sent_bytes() as f64),
        )?;
        encode_family(
            &mut encoder,
            "forward_queue_bytes",
            "Bytes of batches waiting in the upstream's on-disk queue",
            MetricType::Gauge,
            each(&|m| m.spool_bytes() as f64),
        )?;
        encode_family(
            &mut encoder,
            "forward_queue_age_seconds",
            "How long the oldest batch in the upstream's queue has waited since its first write was accepted (0: the queue is empty)",
            MetricType::Gauge,
            each(&|m| match m.spool_oldest_ms() {
                0 => 0.0,
                oldest => (now_ms - oldest).max(0) as f64 / 1000.0,
            }),
        )?;
        encode_family(
            &mut encoder,
            "forward_queue_corrupt_files",
            "Queue files found torn or corrupt and removed",
            MetricType::Counter,
            each(&|m| m.corrupt_file_count() as f64),
        )?;
        encode_family(
            &mut encoder,
            "forward_last_success_timestamp_seconds",
            "When a write to the upstream last succeeded (0: never since start)",
            MetricType::Gauge,
            each(&|m| m.last_success_ms() as f64 / 1000.0),
        )?;
        let messages = self
            .upstreams
            .iter()
            .map(|m| {
                let mut labels = upstream(m);
                labels.push((
                    "protobuf_message",
                    m.negotiation().current().proto().to_owned(),
                ));
                labels.push(("setting", m.negotiation().setting().as_str().to_owned()));
                (labels, 1.0)
            })
            .collect();
        encode_family(
            &mut encoder,
            "forward_protobuf_message_info",
            "The protobuf message the upstream is sent now, and its setting (auto falls back to prometheus.WriteRequest once the upstream shows it takes only that); always 1",
            MetricType::Gauge,
            messages,
        )
    }
}
