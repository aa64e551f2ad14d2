//! The command queue over real HTTP: validation and authority at creation,
//! long-poll delivery, at-most-once hand-out, expiry, cancellation, and the
//! deadline for results.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::hosts::Host;
use crate::common::{Receiver, client};

fn send(
    method: reqwest::Method,
    receiver: &Receiver,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, receiver.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn post(receiver: &Receiver, path: &str, token: &str, body: Value) -> (u16, Value) {
    send(reqwest::Method::POST, receiver, path, token, Some(body))
}

fn get(receiver: &Receiver, path: &str, token: &str) -> (u16, Value) {
    send(reqwest::Method::GET, receiver, path, token, None)
}

fn duty(client: &str, zone: u64, duty: u64) -> Value {
    json!({"client": client, "type": "fan_control",
           "params": {"action": "set_zone_duty", "zone": zone, "duty": duty}})
}

/// A one-zone fan policy with `floor`, and optionally one extra source key.
fn policy(floor: u64, extra: Option<(&str, Value)>) -> Value {
    let mut source = json!({"type": "gpu", "curve": [[40, 30], [80, 100]]});
    if let Some((key, value)) = extra {
        source[key] = value;
    }
    json!({"version": "p1", "zone": [{"id": 1, "floor": floor, "source": [source]}]})
}

fn config_update(client: &str, config: Value) -> Value {
    json!({"client": client, "type": "config_update",
           "params": {"action": "apply", "config": config}})
}

fn create(receiver: &Receiver, body: Value) -> Value {
    let (status, record) = post(receiver, "/api/dcmon/commands", &receiver.token, body);
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["status"], "pending");
    record
}

fn poll(receiver: &Receiver, host: &Host, timeout: &str) -> (u16, Value) {
    get(
        receiver,
        &format!("/api/dcmon/commands/next?timeout={timeout}"),
        &host.token(),
    )
}

#[test]
fn invalid_commands_and_wrong_callers_queue_nothing() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let host = Host::enrol(&receiver, 0, "fan-01");
    let read = receiver.create_token("grafana", "read");
    let write = receiver.create_token("prom", "write");
    let invalid = [
        duty("fan-01", 0, 20),
        duty("fan-01", 0, 101),
        duty("fan-01", 7, 50),
        json!({"client": "fan-01", "type": "fan_control", "params": {"action": "set_mode", "mode": "turbo"}}),
        json!({"client": "fan-01", "type": "fan_control", "params": {"action": "set_mode", "mode": "pue"}}),
        json!({"client": "fan-01", "type": "shell", "params": {"cmd": "id"}}),
        json!({"client": "fan-01", "type": "fan_control", "params": {"action": "get_status", "x": 1}}),
        json!({"client": "fan-01", "type": "fan_control", "params": {"action": "get_status"}, "extra": 1}),
        json!({"type": "fan_control", "params": {"action": "get_status"}}),
        json!({"client": "nobody", "type": "fan_control", "params": {"action": "get_status"}}),
        json!({"client": "fan-01", "type": "fan_control", "params": {"action": "get_status"}, "expires_in": "forever"}),
        json!("not an object"),
        // config_update: an unknown key, a path, a duty below the floor, an
        // interval out of range, an unknown collector, a bad rollback time.
        config_update("fan-01", json!({"version": "v1", "exec": "id"})),
        config_update(
            "fan-01",
            json!({"version": "v1", "fan_policy": policy(30, Some(("path", json!("/etc/shadow"))))}),
        ),
        config_update(
            "fan-01",
            json!({"version": "v1", "fan_policy": policy(10, None)}),
        ),
        config_update("fan-01", json!({"version": "v1", "interval_s": 0})),
        config_update("fan-01", json!({"version": "v1", "interval_s": 86_400})),
        config_update(
            "fan-01",
            json!({"version": "v1", "collectors": ["cpu", "rm -rf"]}),
        ),
        config_update("fan-01", json!({"version": "/var/lib/x"})),
        json!({"client": "fan-01", "type": "config_update",
               "params": {"action": "apply", "config": {"version": "v1"}, "revert_after_s": 0}}),
    ];
    for body in invalid {
        let (status, answer) = post(
            &receiver,
            "/api/dcmon/commands",
            &receiver.token,
            body.clone(),
        );
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["errorType"], "bad_data");
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    let valid = duty("fan-01", 1, 60);
    for (who, token, expected) in [
        ("read token", read.as_str(), 403),
        ("write token", write.as_str(), 403),
        ("host", &host.token(), 403),
        ("nobody", "x", 401),
    ] {
        let (status, _) = post(&receiver, "/api/dcmon/commands", token, valid.clone());
        assert_eq!(status, expected, "{who}");
    }
    // Nor may a host list commands or an admin pose as a host.
    assert_eq!(get(&receiver, "/api/dcmon/commands", &host.token()).0, 403);
    assert_eq!(poll(&receiver, &host, "1s").0, 204);
    assert_eq!(
        get(&receiver, "/api/dcmon/commands/next", &receiver.token).0,
        403
    );
    let (status, listed) = get(&receiver, "/api/dcmon/commands", &receiver.token);
    assert_eq!(status, 200);
    assert_eq!(listed["data"], json!([]), "nothing was queued");
    // The error names the field at fault.
    let (_, answer) = post(
        &receiver,
        "/api/dcmon/commands",
        &receiver.token,
        config_update(
            "fan-01",
            json!({"version": "v1", "fan_policy": policy(10, None)}),
        ),
    );
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("config.fan_policy.zone[0].floor"), "{error}");
    // A valid one is queued and delivered as sent.
    let record = create(
        &receiver,
        config_update(
            "fan-01",
            json!({"version": "v1", "fan_policy": policy(30, None), "interval_s": 30}),
        ),
    );
    assert_eq!(record["type"], "config_update");
    let (status, delivered) = poll(&receiver, &host, "1s");
    assert_eq!(status, 200);
    assert_eq!(
        delivered["command"]["params"]["config"]["fan_policy"]["zone"][0]["floor"],
        30
    );
}

#[test]
fn a_command_travels_from_admin_to_host_and_back() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let host = Host::enrol(&receiver, 0, "fan-02");
    let other = Host::enrol(&receiver, 1, "fan-03");

    // The host is already waiting when the command is created.
    let poller = {
        let url = receiver.url("/api/dcmon/commands/next?timeout=20s");
        let token = host.token();
        std::thread::spawn(move || {
            let started = Instant::now();
            let response = client().get(url).bearer_auth(token).send().unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().unwrap(),
                started,
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let created_at = Instant::now();
    let record = create(&receiver, duty("fan-02", 0, 60));
    let (status, delivered, _) = poller.join().unwrap();
    assert_eq!(status, 200, "{delivered}");
    // Not answered at once, the poll would have waited out its 20 s.
    assert!(
        created_at.elapsed() < Duration::from_secs(10),
        "long poll answered at once"
    );
    assert_eq!(delivered["id"], record["id"]);
    assert_eq!(
        delivered["command"],
        json!({"type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 60}})
    );
    let id = record["id"].as_i64().unwrap();

    // Another host can neither see nor answer it.
    assert_eq!(poll(&receiver, &other, "1s").0, 204);
    let result = json!({"status": "succeeded", "exit_code": 0, "output": "zone 0: 60%"});
    let path = format!("/api/dcmon/commands/{id}/result");
    assert_eq!(
        post(&receiver, &path, &other.token(), result.clone()).0,
        404
    );
    assert_eq!(
        post(
            &receiver,
            &path,
            &host.token(),
            json!({"status": "pending"})
        )
        .0,
        400
    );

    let (status, finished) = post(&receiver, &path, &host.token(), result.clone());
    assert_eq!(status, 200, "{finished}");
    let (_, shown) = get(
        &receiver,
        &format!("/api/dcmon/commands/{id}"),
        &receiver.token,
    );
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["output"], "zone 0: 60%");
    assert_eq!(shown["exit_code"], 0);
    assert_eq!(shown["hostname"], "fan-02");
    assert_eq!(shown["created_by"], "admin");
    let times: Vec<f64> = ["created_at", "delivered_at", "finished_at"]
        .iter()
        .map(|k| shown[k].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // A second result is refused: the command is finished.
    assert_eq!(post(&receiver, &path, &host.token(), result).0, 409);
    let (_, listed) = get(
        &receiver,
        "/api/dcmon/commands?client=fan-02&status=succeeded",
        &receiver.token,
    );
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}

#[test]
fn commands_are_delivered_at_most_once_and_never_when_expired_or_cancelled() {
    let receiver = Receiver::start(&[
        "--clients.push-interval",
        "1h",
        "--commands.result-timeout",
        "1s",
    ]);
    let host = Host::enrol(&receiver, 0, "fan-04");

    // Two pollers of the same host, one command: exactly one gets it.
    let record = create(&receiver, duty("fan-04", 1, 40));
    let pollers: Vec<_> = (0..2)
        .map(|_| {
            let url = receiver.url("/api/dcmon/commands/next?timeout=2s");
            let token = host.token();
            std::thread::spawn(move || {
                let response = client().get(url).bearer_auth(token).send().unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = pollers.into_iter().map(|p| p.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 204]);

    // No result within the deadline: failed, "no result".
    std::thread::sleep(Duration::from_millis(1500));
    let id = record["id"].as_i64().unwrap();
    let (_, shown) = get(
        &receiver,
        &format!("/api/dcmon/commands/{id}"),
        &receiver.token,
    );
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["error"], "no result");

    let mut expiring = duty("fan-04", 0, 50);
    expiring["expires_in"] = json!("1s");
    let expiring = create(&receiver, expiring);
    let cancelled = create(&receiver, duty("fan-04", 0, 70));
    let path = format!("/api/dcmon/commands/{}/cancel", cancelled["id"]);
    let (status, answer) = post(&receiver, &path, &receiver.token, json!({}));
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("cancelled"))
    );
    assert_eq!(post(&receiver, &path, &receiver.token, json!({})).0, 409);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(poll(&receiver, &host, "1s").0, 204, "neither is delivered");
    let (_, shown) = get(
        &receiver,
        &format!("/api/dcmon/commands/{}", expiring["id"]),
        &receiver.token,
    );
    assert_eq!(shown["status"], "expired");
    assert!(shown["delivered_at"].is_null());
}
