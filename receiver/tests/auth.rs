//! Nothing is public: every path answers 401 without the admin token.

use crate::common::{Receiver, client};

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
        ("/api/v1/query", 404),
        ("/api/v1/write", 405),
        ("/health", 200),
        ("/api/dcmon/stats", 200),
    ] {
        let (status, _) = get(&receiver.url(path), Some(&token));
        assert_eq!(status, expected, "{path} with the admin token");
    }
}
