//! Encoding a snapshot for `/metrics` with `prometheus-client`'s text and
//! OpenMetrics encoders; negotiation and gzip are shared with the receiver
//! (`dcmon_protocol::exposition`).

use dcmon_protocol::exposition::Format;
use prometheus_client::registry::Registry;

use crate::snapshot::Snapshot;

/// Encodes `snapshot` in `format`.
pub fn encode(snapshot: Snapshot, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    dcmon_protocol::exposition::encode(&registry, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Kind;

    fn sample_snapshot() -> Snapshot {
        let mut snap = Snapshot::new();
        snap.counter(
            "node_forks_total",
            "Total number of forks.",
            vec![],
            26442.0,
        );
        snap.gauge(
            "node_hwmon_temp_celsius",
            "Hardware monitor for temperature (input)",
            vec![
                ("chip", "platform_coretemp_0".into()),
                ("sensor", "temp\"1\\".into()),
            ],
            55.0,
        );
        snap.family(
            "node_netstat_Tcp_InErrs",
            "Statistic TcpInErrs.",
            Kind::Untyped,
        )
        .push(vec![], 5.0);
        snap.sort();
        snap
    }

    #[test]
    fn text_004_keeps_names_help_and_escapes_labels() {
        let text = encode(sample_snapshot(), Format::Text);
        assert!(text.contains("# HELP node_forks_total Total number of forks.\n# TYPE node_forks_total counter\nnode_forks_total 26442\n"), "{text}");
        assert!(
            text.contains(
                "# HELP node_hwmon_temp_celsius Hardware monitor for temperature (input)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"node_hwmon_temp_celsius{chip="platform_coretemp_0",sensor="temp\"1\\"} 55"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE node_netstat_Tcp_InErrs untyped\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_has_counter_family_and_eof() {
        let text = encode(sample_snapshot(), Format::OpenMetrics);
        assert!(
            text.contains("# TYPE node_forks counter\nnode_forks_total 26442\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
