//! Serving Prometheus metrics over HTTP, as both programs do: content
//! negotiation between text format 0.0.4 (the default) and OpenMetrics 1.0,
//! as client_golang's `expfmt.Negotiate` does, and gzip when accepted;
//! reading the text format back is [`parse`]'s.

use std::io::Write;

pub mod parse;

/// Content-Type of the Prometheus text format, which Prometheus 3 requires.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content-Type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition formats the exporter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Picks the format from an `Accept` header: the acceptable media range with
/// the highest q-value among those we speak, earlier ranges winning ties;
/// text 0.0.4 when nothing better is asked for.
pub fn negotiate(accept: Option<&str>) -> Format {
    let mut best: Option<(f32, Format)> = None;
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut version, mut q) = (None, 1.0f32);
        for param in parts {
            if let Some((key, value)) = param.split_once('=') {
                match key.trim().to_ascii_lowercase().as_str() {
                    "version" => version = Some(value.trim().to_owned()),
                    "q" => q = value.trim().parse().unwrap_or(0.0),
                    _ => {}
                }
            }
        }
        let format = match (media.as_str(), version.as_deref()) {
            ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => Format::OpenMetrics,
            ("text/plain", None | Some("0.0.4")) => Format::Text,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Text, |(_, format)| format)
}

/// Whether an `Accept-Encoding` header allows gzip (`gzip` or `*`, q > 0).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.unwrap_or("").split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let q: f32 = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse().unwrap_or(0.0));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
    })
}

/// Encodes everything registered in `registry` in `format`.
pub fn encode(registry: &prometheus_client::registry::Registry, format: Format) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let result = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
    };
    // Writing into a String cannot fail.
    result.expect("encoding into a String");
    out
}

/// Gzips `body` at a fast level: scrapes are frequent, bodies are small.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing into a Vec");
    encoder.finish().expect("writing into a Vec")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_text_004() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("application/json")), Format::Text);
    }

    #[test]
    fn prometheus_scrape_accept_header_gets_openmetrics() {
        let prometheus3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus3)), Format::OpenMetrics);
        assert_eq!(
            negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=2.0.0")),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }
}
