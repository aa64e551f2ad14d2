//! Credentials and identities under attack, over real HTTP: a host token
//! works once; extreme numbers in tokens, registrations and commands are
//! refused without harming the receiver; host names are unambiguous; a
//! forged token cannot inflate the log; the scheme's case does not matter.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcmon_protocol::identity::RegisterRequest;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};

use crate::common::hosts::{
    claims, keys, now_secs, post_registration, random_nonce, register, registration, rs256,
};
use crate::common::{Receiver, client};

/// GET `path` with `authorization` as the whole header value; the status,
/// or `None` when the connection failed (the receiver died or hung up).
fn get_with(receiver: &Receiver, path: &str, authorization: &str) -> Option<(u16, String)> {
    let response = client()
        .get(receiver.url(path))
        .header("authorization", authorization)
        .send()
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().unwrap_or_default()))
}

/// The receiver still answers an authenticated request.
fn assert_alive(receiver: &Receiver) {
    let health = get_with(receiver, "/health", &format!("Bearer {}", receiver.token));
    assert_eq!(
        health.map(|(s, _)| s),
        Some(200),
        "the receiver must still answer"
    );
}

/// `claims` (any JSON) signed RS256 with `key`, with `header`.
fn sign(key: &RsaPrivateKey, header: &Header, claims: &Value) -> String {
    let der = key.to_pkcs1_der().unwrap();
    jsonwebtoken::encode(header, claims, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
}

#[test]
fn a_host_token_is_accepted_once_on_any_route() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let [key, _] = keys();
    let host = register(&receiver, key, "replay-01");
    let token = format!("Bearer {}", rs256(key, &claims(&host)));

    let first = get_with(&receiver, "/api/dcmon/commands/next?timeout=0s", &token);
    assert_eq!(first.map(|(s, _)| s), Some(204));
    // The same token again, on the same route and on another one.
    for path in ["/api/dcmon/commands/next?timeout=0s", "/health"] {
        let (status, body) = get_with(&receiver, path, &token).unwrap();
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("already used"), "{body}");
    }
    // A fresh token per request, as the exporter signs them, keeps working.
    for _ in 0..3 {
        let fresh = format!("Bearer {}", rs256(key, &claims(&host)));
        let (status, body) = get_with(&receiver, "/health", &fresh).unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn extreme_times_crit_headers_and_nbf_are_refused() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let [key, _] = keys();
    let host = register(&receiver, key, "times-01");
    let rs = Header::new(Algorithm::RS256);
    let with = |iat: i64, exp: i64, extra: &[(&str, Value)]| {
        let mut c = serde_json::to_value(claims(&host)).unwrap();
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        for (name, value) in extra {
            c[*name] = value.clone();
        }
        c
    };
    let now = now_secs();
    let critical = Header {
        crit: Some(vec!["exp".into()]),
        ..rs.clone()
    };
    for (what, header, claims, reason) in [
        (
            "exp i64::MAX issued long ago (the lifetime overflowed)",
            &rs,
            with(-1_000, i64::MAX, &[]),
            "lives longer than 5 minutes",
        ),
        (
            "exp i64::MAX issued now",
            &rs,
            with(now, i64::MAX, &[]),
            "lives longer than 5 minutes",
        ),
        (
            "iat i64::MIN",
            &rs,
            with(i64::MIN, now + 60, &[]),
            "lives longer than 5 minutes",
        ),
        (
            "nbf ten minutes ahead",
            &rs,
            with(now, now + 120, &[("nbf", json!(now + 600))]),
            "not valid yet",
        ),
        ("crit header", &critical, with(now, now + 120, &[]), "crit"),
        (
            "no jti",
            &rs,
            with(now, now + 120, &[("jti", Value::Null)]),
            "jti",
        ),
    ] {
        let token = format!("Bearer {}", sign(key, header, &claims));
        let answer = get_with(&receiver, "/health", &token);
        let (status, body) = answer.unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.contains(reason), "{what}: {body}");
    }
    // An `nbf` in the past is fine.
    let token = format!(
        "Bearer {}",
        sign(key, &rs, &with(now, now + 120, &[("nbf", json!(now - 5))]))
    );
    assert_eq!(
        get_with(&receiver, "/health", &token).map(|(s, _)| s),
        Some(200)
    );
}

#[test]
fn extreme_numbers_in_registrations_and_commands_are_refused() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let [key, _] = keys();
    let host = register(&receiver, key, "numbers-01");

    for timestamp in [i64::MIN, i64::MAX] {
        let request = RegisterRequest::signed(
            key,
            "numbers-02",
            "0123abcd",
            timestamp,
            &random_nonce(),
            "1",
        )
        .unwrap();
        let (status, body) = post_registration(&receiver, Some(&receiver.token), &request);
        assert_eq!(status, 401, "timestamp {timestamp}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("timestamp"),
            "{body}"
        );
        assert_alive(&receiver);
    }

    let command = |extra: Value| {
        let mut body = json!({"client": host.client_id, "type": "fan_control",
                              "params": {"action": "get_status"}});
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        let response = client()
            .post(receiver.url("/api/dcmon/commands"))
            .bearer_auth(&receiver.token)
            .json(&body)
            .send()
            .ok()?;
        Some((
            response.status().as_u16(),
            response.text().unwrap_or_default(),
        ))
    };
    for extra in [
        json!({"expires_in": 1e20}),
        json!({"expires_in": 1.7976931348623157e308}),
        json!({"expires_in": u64::MAX}),
        json!({"expires_in": -1}),
        json!({"expires_in": "99999999y"}),
        json!({"type": "reboot", "params": {"delay_s": u32::MAX}}),
        json!({"type": "reboot", "params": {"delay_s": u64::MAX}}),
        json!({"type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 50, "revert_after_s": i64::MIN}}),
    ] {
        let answer = command(extra.clone());
        let (status, body) = answer.unwrap_or_else(|| panic!("{extra}: no answer"));
        assert_eq!(status, 400, "{extra}: {body}");
        assert_alive(&receiver);
    }
    let (status, body) = command(json!({"expires_in": 60})).unwrap();
    assert_eq!(status, 201, "{body}");
    let (_, listed) = receiver.get_json("/api/dcmon/commands");
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "only the valid command queued"
    );
}

#[test]
fn host_names_are_checked_and_never_ambiguous_with_client_ids() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let [key, other_key] = keys();
    let first = register(&receiver, key, "gpu-01");

    // A second host named like the first one's client id.
    let (status, body) = post_registration(
        &receiver,
        Some(&receiver.token),
        &registration(other_key, &first.client_id),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("client id"),
        "{body}"
    );
    for name in ["..", "-rf", "gpu_01", "a..b", "gpu-01.", &"a".repeat(64)] {
        let (status, body) = post_registration(
            &receiver,
            Some(&receiver.token),
            &registration(other_key, name),
        );
        assert_eq!(status, 400, "{name:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("host name"),
            "{body}"
        );
    }
    // The same name in other case would be one host under two names.
    let (status, body) = post_registration(
        &receiver,
        Some(&receiver.token),
        &registration(other_key, "GPU-01"),
    );
    assert_eq!(status, 409, "{body}");
    let (_, listed) = receiver.get_json("/api/dcmon/clients");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // Ids and names each address exactly their client.
    let second = register(&receiver, other_key, "gpu-02");
    for target in [first.client_id.as_str(), "gpu-01"] {
        let response = client()
            .post(receiver.url("/api/dcmon/commands"))
            .bearer_auth(&receiver.token)
            .json(&json!({"client": target, "type": "fan_control", "params": {"action": "get_status"}}))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let record: Value = response.json().unwrap();
        assert_eq!(record["client_id"], first.client_id.as_str(), "{target}");
    }
    let (status, body) =
        receiver.get_json(&format!("/api/dcmon/commands?client={}", first.client_id));
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let response = client()
        .post(receiver.url(&format!("/api/dcmon/clients/{}/revoke", first.client_id)))
        .bearer_auth(&receiver.token)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (ok, _, stderr) = receiver.admin_command(&["client", "revoke", &first.client_id]);
    assert!(!ok, "already revoked: {stderr}");
    let (_, listed) = receiver.get_json("/api/dcmon/clients");
    let status_of = |id: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status_of(&first.client_id), "revoked");
    assert_eq!(
        status_of(&second.client_id),
        "never",
        "one revoke, one client"
    );
}

#[test]
fn a_huge_forged_subject_cannot_inflate_the_log() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let sub = "A".repeat(45 * 1024);
    let forged = format!(
        "Bearer {}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD
            .encode(json!({"sub": sub, "aud": "x", "iat": 1, "exp": 2, "jti": "j"}).to_string()),
        URL_SAFE_NO_PAD.encode("signature"),
    );
    let before = receiver.log().len();
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let (status, body) = get_with(&receiver, "/health", &forged).unwrap();
        assert_eq!(status, 401);
        assert!(
            body.len() < 512,
            "the answer quotes the sub short: {}",
            body.len()
        );
        assert!(body.contains("AAAA…"), "{body}");
    }
    // One line per reason per 10 s: one, or more on a machine so loaded
    // that the 200 requests took longer than that.
    let intervals = (started.elapsed().as_secs() / 10 + 1) as usize;
    let log = receiver.log();
    let added = &log[before..];
    assert!(
        added.len() < 4096 * intervals,
        "200 refusals added {} bytes of log",
        added.len()
    );
    let lines: Vec<&str> = added
        .lines()
        .filter(|l| l.contains("client token refused"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() <= intervals,
        "one line per reason per 10 s ({intervals} intervals):\n{added}"
    );

    // After the interval, the next refusal is logged again, and its line
    // counts the ones left out since the last line (none when the last of
    // the 200 was itself logged, which a slow machine can make happen; the
    // sum below holds either way).
    let lines_before = lines.len();
    std::thread::sleep(std::time::Duration::from_millis(10_500));
    let (status, _) = get_with(&receiver, "/health", &forged).unwrap();
    assert_eq!(status, 401);
    let log = receiver.log();
    let lines: Vec<&str> = log[before..]
        .lines()
        .filter(|l| l.contains("client token refused"))
        .collect();
    let suppressed: usize = lines
        .iter()
        .map(|l| {
            let count = l.rsplit("suppressed=").next().unwrap_or("0");
            count.trim().parse::<usize>().unwrap_or(0)
        })
        .sum();
    assert_eq!(
        lines.len() + suppressed,
        201,
        "every refusal is logged or counted:\n{}",
        lines.join("\n")
    );
    assert_eq!(lines.len(), lines_before + 1, "{}", lines.join("\n"));
    let last = lines.last().unwrap();
    assert!(last.len() < 512, "{last}");
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let receiver = Receiver::start(&[]);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = get_with(
            &receiver,
            "/health",
            &format!("{scheme} {}", receiver.token),
        );
        assert_eq!(answer.map(|(s, _)| s), Some(200), "{scheme}");
    }
    let answer = get_with(&receiver, "/health", &format!("Basic {}", receiver.token));
    assert_eq!(answer.map(|(s, _)| s), Some(401));
}
