//! Host identity over real HTTP: registration with proof of possession, and
//! per-request RS256 JWTs. Every forged or broken credential is a 401 and
//! stores nothing; a valid host can write only under its own `instance`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dcmon_protocol::identity::{Claims, RegisterRequest};
use dcmon_protocol::remote_write::{Version, compress, encode_v1};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePublicKey, LineEnding};

use crate::common::hosts::{
    claims, keys, now_secs, post_registration, random_nonce, register, registration, rs256,
};
use crate::common::{Receiver, client, now_ms, series, write_headers};

/// Remote-writes one sample of `metric` claiming `instance="someone-else"`.
fn write_as(receiver: &Receiver, token: &str, metric: &str) -> (u16, String) {
    let body = encode_v1(&[series(
        &[
            ("__name__", metric),
            ("instance", "someone-else"),
            ("job", "dcmon"),
        ],
        &[(now_ms(), 1.0)],
    )]);
    let response = receiver.write_raw(Some(token), &write_headers(Version::V1), compress(&body));
    (response.status, response.body)
}

fn ingested_samples(receiver: &Receiver) -> u64 {
    let (status, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(status, 200);
    stats["ingest"]["samples"].as_u64().unwrap()
}

#[test]
fn forged_and_broken_client_tokens_are_refused_without_storing() {
    // A long push interval: no presence series are written during the test.
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let [key, other_key] = keys();
    let host = register(&receiver, key, "gpu-01");
    let other = register(&receiver, other_key, "gpu-02");
    let good = claims(&host);
    let public_pem = rsa::RsaPublicKey::from(key)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();

    let encode_unsigned = |header: &str, claims: &Claims| {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        )
    };
    let with = |change: &dyn Fn(&mut Claims)| {
        let mut c = good.clone();
        change(&mut c);
        c
    };
    let forged: Vec<(&str, String)> = vec![
        (
            "alg none",
            encode_unsigned(r#"{"alg":"none","typ":"JWT"}"#, &good),
        ),
        (
            "HS256 keyed with the client's public key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(public_pem.as_bytes()),
            )
            .unwrap(),
        ),
        ("signed by another host's key", rs256(other_key, &good)),
        (
            "another host's token presented with this host's id",
            rs256(other_key, &with(&|c| c.sub = host.client_id.clone())),
        ),
        (
            "expired",
            rs256(
                key,
                &with(&|c| {
                    c.iat = now_secs() - 600;
                    c.exp = now_secs() - 480;
                }),
            ),
        ),
        (
            "issued in the future",
            rs256(
                key,
                &with(&|c| {
                    c.iat = now_secs() + 600;
                    c.exp = now_secs() + 700;
                }),
            ),
        ),
        (
            "lifetime over 5 minutes",
            rs256(key, &with(&|c| c.exp = now_secs() + 3600)),
        ),
        (
            "wrong audience",
            rs256(key, &with(&|c| c.aud = "dcmon-receiver/elsewhere".into())),
        ),
        (
            "unknown subject",
            rs256(key, &with(&|c| c.sub = "0000".into())),
        ),
        ("garbage with a JWT's shape", "abc.def.ghi".into()),
        ("garbage", "not-a-token".into()),
        ("tampered payload", {
            let token = rs256(key, &good);
            let parts: Vec<&str> = token.split('.').collect();
            let payload = URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&with(&|c| c.sub = other.client_id.clone())).unwrap());
            format!("{}.{payload}.{}", parts[0], parts[2])
        }),
    ];
    for (what, token) in &forged {
        let (status, body) = write_as(&receiver, token, "forged_metric");
        assert_eq!(status, 401, "{what}: {body}");
    }
    assert_eq!(ingested_samples(&receiver), 0, "nothing stored");
    let log = receiver.log();
    for reason in [
        "algorithm none is not accepted",
        "algorithm HS256 is not accepted",
        "bad signature",
        "expired",
        "issued in the future",
        "lives longer than 5 minutes",
        "wrong audience",
        "unknown or revoked",
        "malformed",
    ] {
        assert!(log.contains(reason), "{reason:?} not logged:\n{log}");
    }

    // The genuine token works, and the instance is the host's own.
    let (status, body) = write_as(&receiver, &rs256(key, &good), "genuine_metric");
    assert_eq!(status, 204, "{body}");
    assert_eq!(ingested_samples(&receiver), 1);

    // Hosts write; they neither read nor administer. (A fresh token per
    // request: each is accepted once.)
    for (path, expected) in [
        ("/metrics", 403),
        ("/api/v1/query?query=up", 403),
        ("/api/dcmon/clients", 403),
        ("/health", 200),
    ] {
        let status = client()
            .get(receiver.url(path))
            .bearer_auth(rs256(key, &claims(&host)))
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, expected, "{path}");
    }

    // Revocation (by host name, with the CLI, while running) is immediate.
    let (ok, _, stderr) = receiver.admin_command(&["client", "revoke", "gpu-01"]);
    assert!(ok, "{stderr}");
    let (status, body) = write_as(&receiver, &rs256(key, &claims(&host)), "after_revoke");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown or revoked"), "{body}");
    assert_eq!(ingested_samples(&receiver), 1);

    let mut receiver = receiver;
    receiver.kill();
    let storage = crate::common::open_storage(&receiver.db_path());
    let stored = storage
        .select(
            &[crate::common::name_matcher("genuine_metric")],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(stored.len(), 1);
    let instance = stored[0].labels.iter().find(|(n, _)| n == "instance");
    assert_eq!(instance.map(|(_, v)| v.as_str()), Some("gpu-01"));
    for forged in ["forged_metric", "after_revoke"] {
        assert!(
            storage
                .select(&[crate::common::name_matcher(forged)], 0, i64::MAX)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn registration_needs_the_admin_token_a_valid_proof_and_a_fresh_nonce() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let [key, other_key] = keys();
    let read_token = receiver.create_token("grafana", "read");
    let write_token = receiver.create_token("prometheus", "write");

    let request = registration(key, "gpu-03");
    assert_eq!(post_registration(&receiver, None, &request).0, 401);
    assert_eq!(
        post_registration(&receiver, Some(&"0".repeat(64)), &request).0,
        401
    );
    assert_eq!(
        post_registration(&receiver, Some(&read_token), &request).0,
        403
    );
    assert_eq!(
        post_registration(&receiver, Some(&write_token), &request).0,
        403
    );

    // The proof must be made with the presented key, over these fields.
    let mut bad_proof = registration(key, "gpu-03");
    bad_proof.signature = registration(other_key, "gpu-03").signature;
    let (status, body) = post_registration(&receiver, Some(&receiver.token), &bad_proof);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errorType"], "unauthorized");
    let mut renamed = registration(key, "gpu-03");
    renamed.hostname = "gpu-04".into();
    assert_eq!(
        post_registration(&receiver, Some(&receiver.token), &renamed).0,
        401
    );

    let stale = RegisterRequest::signed(
        key,
        "gpu-03",
        "0123abcd",
        now_secs() - 3600,
        &random_nonce(),
        "0.1.0",
    )
    .unwrap();
    let (status, body) = post_registration(&receiver, Some(&receiver.token), &stale);
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("timestamp"),
        "{body}"
    );

    let (status, body) = post_registration(&receiver, Some(&receiver.token), &request);
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_registration(&receiver, Some(&receiver.token), &request);
    assert_eq!(status, 401, "replayed: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("replayed"),
        "{body}"
    );

    let mut malformed = registration(key, "bad host name");
    malformed.signature.clear();
    assert_eq!(
        post_registration(&receiver, Some(&receiver.token), &malformed).0,
        400
    );
    let status = client()
        .post(receiver.url("/api/dcmon/register"))
        .bearer_auth(&receiver.token)
        .body("{not json")
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 400);

    let (_, clients) = receiver.get_json("/api/dcmon/clients");
    let hosts: Vec<&str> = clients["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["gpu-03"], "only the valid registration stored");
}

#[test]
fn reregistering_replaces_the_key_and_presence_is_written() {
    let receiver = Receiver::start(&["--clients.push-interval", "1s"]);
    let [first_key, second_key] = keys();
    let first = register(&receiver, first_key, "gpu-05");
    let (status, _) = write_as(&receiver, &rs256(first_key, &claims(&first)), "m");
    assert_eq!(status, 204);

    let second = register(&receiver, second_key, "gpu-05");
    assert!(second.replaced);
    assert_eq!(second.client_id, first.client_id, "same host, same id");
    let (status, body) = write_as(&receiver, &rs256(first_key, &claims(&first)), "m");
    assert_eq!(status, 401, "the old key is gone: {body}");
    let response = client()
        .post(receiver.url("/api/v1/write"))
        .bearer_auth(rs256(second_key, &claims(&second)))
        .header("user-agent", "dcmon-exporter/9.8.7")
        .headers(
            write_headers(Version::V1)
                .into_iter()
                .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .body(compress(&encode_v1(&[series(
            &[("__name__", "m")],
            &[(now_ms(), 2.0)],
        )])))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    let (status, clients) = receiver.get_json("/api/dcmon/clients");
    assert_eq!(status, 200);
    let entry = &clients["data"][0];
    assert_eq!(entry["hostname"], "gpu-05");
    assert_eq!(entry["status"], "online");
    assert_eq!(entry["exporter_version"], "9.8.7");
    assert!(
        entry["last_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        entry["key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let (ok, listed, _) = receiver.admin_command(&["client", "list"]);
    assert!(ok && listed.contains("gpu-05"), "{listed}");

    // Presence series land every push interval.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut receiver = receiver;
    receiver.terminate();
    let storage = crate::common::open_storage(&receiver.db_path());
    let up = storage
        .select(&[crate::common::name_matcher("up")], 0, i64::MAX)
        .unwrap();
    assert_eq!(up.len(), 1);
    assert!(up[0].labels.contains(&("instance".into(), "gpu-05".into())));
    assert!(up[0].labels.contains(&("job".into(), "dcmon".into())));
    assert!(up[0].samples.iter().any(|(_, v)| *v == 1.0));
    let seen = storage
        .select(
            &[crate::common::name_matcher(
                "dcmon_client_last_seen_timestamp_seconds",
            )],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(seen.len(), 1);
    let (ts, value) = *seen[0].samples.last().unwrap();
    assert!(
        value * 1000.0 <= ts as f64 && value > 1.7e9,
        "{value} at {ts}"
    );
}
