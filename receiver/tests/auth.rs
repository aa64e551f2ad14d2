//! Nothing is public: every path answers 401 without a valid token; scoped
//! tokens reach only their own routes (403 elsewhere) and stop working as
//! soon as they are revoked.

use dcmon_protocol::remote_write::{Version, compress, encode_v1};

use crate::common::{Receiver, client, now_ms, series, write_headers};

fn get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().unwrap()).unwrap_or_default(),
    )
}

#[test]
fn every_path_requires_the_admin_token() {
    let receiver = Receiver::start(&[]);
    let token = receiver.token.clone();
    assert_eq!(token.len(), 64, "256-bit hex token");
    assert!(
        !receiver.log().contains(&token),
        "the token must never be logged"
    );
    assert!(receiver.log().contains("generated a new admin token"));

    for path in [
        "/",
        "/metrics",
        "/health",
        "/api/v1/query",
        "/api/v1/write",
        "/api/dcmon/stats",
    ] {
        let url = receiver.url(path);
        let (status, body) = get(&url, None);
        assert_eq!(status, 401, "{path} without a token");
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "unauthorized");
        let (status, _) = get(
            &url,
            Some("not-the-token-but-long-enough-to-be-plausible-0000000000"),
        );
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    for (path, expected) in [
        ("/", 404),
        // Reached, but without its `query` parameter.
        ("/api/v1/query", 400),
        ("/api/v1/write", 405),
        ("/health", 200),
        ("/api/dcmon/stats", 200),
    ] {
        let (status, _) = get(&receiver.url(path), Some(&token));
        assert_eq!(status, expected, "{path} with the admin token");
    }
}

#[test]
fn scoped_tokens_reach_only_their_routes_until_revoked() {
    let receiver = Receiver::start(&[]);
    let read = receiver.create_token("grafana", "read");
    let write = receiver.create_token("prometheus", "write");
    assert!(read.starts_with("dcmon_") && write.starts_with("dcmon_") && read != write);
    let body = || {
        compress(&encode_v1(&[series(
            &[("__name__", "up")],
            &[(now_ms(), 1.0)],
        )]))
    };
    let headers = write_headers(Version::V1);

    // The write token writes; it cannot read or administer.
    assert_eq!(
        receiver.write_raw(Some(&write), &headers, body()).status,
        204
    );
    assert_eq!(get(&receiver.url("/metrics"), Some(&write)).0, 403);
    assert_eq!(get(&receiver.url("/api/dcmon/stats"), Some(&write)).0, 403);
    // The read token reads; it cannot write or administer.
    let refused = receiver.write_raw(Some(&read), &headers, body());
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(get(&receiver.url("/metrics"), Some(&read)).0, 200);
    let (status, body_json) = get(&receiver.url("/api/dcmon/stats"), Some(&read));
    assert_eq!(
        (status, body_json["errorType"].as_str()),
        (403, Some("forbidden"))
    );
    // Both may ask for health.
    assert_eq!(get(&receiver.url("/health"), Some(&read)).0, 200);

    // Listing never shows secrets; revocation is immediate.
    let (ok, listing, _) = receiver.admin_command(&["token", "list"]);
    assert!(
        ok && listing.contains("grafana") && listing.contains("prometheus"),
        "{listing}"
    );
    assert!(!listing.contains(&read) && !listing.contains(&write));
    let (ok, _, stderr) = receiver.admin_command(&["token", "revoke", "--name", "prometheus"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        receiver.write_raw(Some(&write), &headers, body()).status,
        401
    );
    let (ok, _, stderr) = receiver.admin_command(&["token", "revoke", "--name", "nobody"]);
    assert!(!ok && stderr.contains("no token named"), "{stderr}");
    let (_, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(
        stats["samples"], 1,
        "only the one accepted write was stored: {stats}"
    );
}
