//! Request parameters of the Prometheus query API: read from the URL and,
//! for POST, from a form-encoded body (both merged, as Prometheus does),
//! with Prometheus's time and duration formats.

use axum::extract::{FromRequest, Query, Request};
use axum::http::{HeaderMap, Method, header};

use crate::app::MAX_QUERY_FORM_BYTES;
use crate::error::{ApiError, ErrorKind};

/// All parameters of a request, in order (body first, then URL).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Reads the parameters of `request`.
    pub async fn from_request(request: Request) -> Result<Params, ApiError> {
        let from_url = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .map(|q| q.0)
            .map_err(|e| ApiError::new(ErrorKind::BadData, format!("invalid query string: {e}")))?;
        let mut pairs = Vec::new();
        if request.method() == Method::POST {
            if is_form(request.headers()) {
                let axum::Form(body) =
                    axum::Form::<Vec<(String, String)>>::from_request(request, &())
                        .await
                        .map_err(|e| {
                            ApiError::new(ErrorKind::BadData, format!("invalid form body: {e}"))
                        })?;
                pairs.extend(body);
            } else {
                refuse_other_body(request).await?;
            }
        }
        pairs.extend(from_url);
        Ok(Params(pairs))
    }

    /// The first value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required time parameter, in ms.
    pub fn time(&self, name: &str) -> Result<i64, ApiError> {
        let text = self
            .get(name)
            .ok_or_else(|| bad_param(name, "missing parameter"))?;
        parse_time(text).map_err(|e| bad_param(name, &e))
    }

    /// An optional time parameter, in ms.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            Some(text) => parse_time(text).map_err(|e| bad_param(name, &e)),
            None => Ok(default),
        }
    }

    /// An optional duration parameter, in ms.
    pub fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|text| parse_duration_ms(text).map_err(|e| bad_param(name, &e)))
            .transpose()
    }

    /// An optional non-negative integer limit (0 means no limit).
    pub fn limit(&self) -> Result<Option<usize>, ApiError> {
        match self.get("limit") {
            None => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(0) => Ok(None),
                Ok(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(bad_param("limit", "limit must be non-negative")),
            },
        }
    }
}

/// Whether the body is declared `application/x-www-form-urlencoded`.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A POST that is not a form: Prometheus then reads the URL only, and
/// clients rely on that (vmalert posts its queries in the URL, with an empty
/// body and no Content-Type). A body we would silently ignore is refused.
async fn refuse_other_body(request: Request) -> Result<(), ApiError> {
    let body = axum::body::to_bytes(request.into_body(), MAX_QUERY_FORM_BYTES)
        .await
        .map_err(|e| ApiError::new(ErrorKind::BadData, format!("reading the body: {e}")))?;
    if body.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::BadData,
            "a POST body must be a form (Content-Type: application/x-www-form-urlencoded); \
             or send the parameters in the URL with an empty body",
        ))
    }
}

/// Prometheus's wording for a bad parameter.
pub fn bad_param(name: &str, why: &str) -> ApiError {
    ApiError::new(
        ErrorKind::BadData,
        format!("invalid parameter \"{name}\": {why}"),
    )
}

/// Smallest and largest times Prometheus accepts (its `minTime`/`maxTime`).
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
/// See [`MIN_TIME_MS`].
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// A time as Unix seconds (fractions allowed) or RFC 3339, in ms.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(format!("cannot parse {text:?} to a valid timestamp"));
        }
        let ms = (seconds * 1000.0).round();
        return Ok(ms.clamp(MIN_TIME_MS as f64, MAX_TIME_MS as f64) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {text:?} to a valid timestamp"))
}

/// A duration as seconds (fractions allowed) or a Prometheus duration
/// (`1m30s`), in ms.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        let ms = (seconds * 1000.0).round();
        if !ms.is_finite() || ms >= i64::MAX as f64 || ms <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {text:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms as i64);
    }
    let duration = dcmon_protocol::duration::parse_duration(text)
        .map_err(|_| format!("cannot parse {text:?} to a valid duration"))?;
    i64::try_from(duration.as_millis())
        .map_err(|_| format!("cannot parse {text:?} to a valid duration. It overflows int64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_formats() {
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(parse_time("1.5"), Ok(1500));
        assert_eq!(parse_time("1970-01-01T00:01:00Z"), Ok(60_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn durations_in_both_formats() {
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert!(parse_duration_ms("soon").is_err());
    }

    #[test]
    fn extreme_numbers_are_clamped_or_refused_never_wrapped() {
        assert_eq!(parse_time("1e300"), Ok(MAX_TIME_MS));
        assert_eq!(parse_time("-1e300"), Ok(MIN_TIME_MS));
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("inf").is_err());
        for text in ["1e300", "-1e300", "9223372036854775807", "NaN", "inf"] {
            assert!(parse_duration_ms(text).is_err(), "{text}");
        }
        // Fits a u64 of ms but not an i64.
        assert!(parse_duration_ms("584942417y").is_err());
        assert!(parse_duration_ms("10000000000000000000ms").is_err());
    }
}
