//! Commands for many hosts at once: one command per host under a batch id,
//! with three real exporter processes enrolled and polling; per-host
//! answers (an unknown host is reported for itself alone), listing a batch,
//! and cancelling what of it is still pending.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::exporter::{Exporter, register};
use crate::common::hosts::Host;
use crate::common::{Receiver, client, wait_until};

fn post(receiver: &Receiver, path: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(receiver.url(path))
        .bearer_auth(&receiver.token)
        .json(&body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn get(receiver: &Receiver, path: &str) -> (u16, Value) {
    let response = client()
        .get(receiver.url(path))
        .bearer_auth(&receiver.token)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn batch(receiver: &Receiver, id: &Value) -> Value {
    let (status, answer) = get(receiver, &format!("/api/dcmon/commands/batches/{id}"));
    assert_eq!(status, 200, "{answer}");
    answer["data"].clone()
}

/// An enrolled exporter process called `name`: fast, no hardware collectors.
fn enrolled_exporter(receiver: &Receiver, name: &str) -> Exporter {
    let tmp = tempfile::tempdir().unwrap();
    let output = register(
        &format!("http://{}", receiver.addr),
        &receiver.token_file(),
        name,
        &tmp.path().join("state"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Exporter::start_in(
        tmp,
        &[
            "--remote-write.interval",
            "1s",
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.config",
        ],
    )
}

#[test]
fn a_batch_reaches_three_enrolled_exporters_and_names_an_unknown_host_alone() {
    let receiver = Receiver::start(&[]);
    let exporters: Vec<Exporter> = (1..=3)
        .map(|i| enrolled_exporter(&receiver, &format!("rack-{i}")))
        .collect();
    let (status, created) = post(
        &receiver,
        "/api/dcmon/commands",
        json!({"clients": ["rack-1", "rack-2", "ghost-9", "rack-3"],
               "type": "config_update",
               "params": {"action": "apply", "config": {"version": "fleet-1"}}}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["queued"].as_u64(), created["refused"].as_u64()),
        (Some(3), Some(1))
    );
    let hosts = created["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4);
    assert_eq!(hosts[2]["target"], "ghost-9");
    assert!(
        hosts[2]["error"].as_str().unwrap().contains("ghost-9"),
        "{}",
        hosts[2]
    );
    assert!(hosts[2].get("command").is_none());
    for i in [0, 1, 3] {
        assert_eq!(hosts[i]["command"]["status"], "pending", "{}", hosts[i]);
        assert_eq!(hosts[i]["command"]["batch_id"], created["batch_id"]);
    }
    let id = created["batch_id"].clone();
    wait_until("every host answered", Duration::from_secs(120), || {
        batch(&receiver, &id)["counts"]["succeeded"] == 3
    });
    for command in batch(&receiver, &id)["commands"].as_array().unwrap() {
        let output: Value = serde_json::from_str(command["output"].as_str().unwrap()).unwrap();
        assert_eq!(output["version"], "fleet-1", "{command}");
    }
    for exporter in &exporters {
        let metrics = exporter.metrics();
        assert!(
            metrics.contains("dcmon_config_info{version=\"fleet-1\""),
            "{metrics}"
        );
    }
    // Kept in the state directory: a restarted exporter still runs it.
    let mut exporters = exporters;
    exporters[1].restart();
    let metrics = exporters[1].metrics();
    assert!(
        metrics.contains("dcmon_config_info{version=\"fleet-1\""),
        "{metrics}"
    );
    // "all": every active host, one command each.
    let (status, all) = post(
        &receiver,
        "/api/dcmon/commands",
        json!({"clients": "all", "type": "fan_control", "params": {"action": "get_status"}}),
    );
    assert_eq!(status, 201, "{all}");
    assert_eq!(
        (all["queued"].as_u64(), all["refused"].as_u64()),
        (Some(3), Some(0))
    );
    let (status, listed) = get(
        &receiver,
        &format!("/api/dcmon/commands?batch={}", all["batch_id"]),
    );
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
}

#[test]
fn cancelling_a_batch_cancels_what_is_still_pending() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let hosts: Vec<Host> = ["cb-1", "cb-2", "cb-3"]
        .iter()
        .enumerate()
        .map(|(i, name)| Host::enrol(&receiver, i % 2, name))
        .collect();
    let (status, created) = post(
        &receiver,
        "/api/dcmon/commands",
        json!({"clients": ["cb-1", "cb-2", "cb-3"], "type": "fan_control",
               "params": {"action": "set_zone_duty", "zone": 1, "duty": 60}}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["batch_id"].clone();
    // cb-2 takes its command before the cancel.
    let delivered = client()
        .get(receiver.url("/api/dcmon/commands/next?timeout=1s"))
        .bearer_auth(hosts[1].token())
        .send()
        .unwrap();
    assert_eq!(delivered.status().as_u16(), 200);
    let (status, cancelled) = post(
        &receiver,
        &format!("/api/dcmon/commands/batches/{id}/cancel"),
        json!({}),
    );
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        cancelled["data"]["counts"],
        json!({"cancelled": 2, "delivered": 1})
    );
    for command in cancelled["data"]["commands"].as_array().unwrap() {
        let expected = if command["hostname"] == "cb-2" {
            "delivered"
        } else {
            "cancelled"
        };
        assert_eq!(command["status"], expected, "{command}");
    }
    // Nothing is left for cb-1 or cb-3 to take.
    let next = client()
        .get(receiver.url("/api/dcmon/commands/next?timeout=1s"))
        .bearer_auth(hosts[0].token())
        .send()
        .unwrap();
    assert_eq!(next.status().as_u16(), 204);
    assert_eq!(get(&receiver, "/api/dcmon/commands/batches/999999").0, 404);
    assert_eq!(
        post(
            &receiver,
            "/api/dcmon/commands/batches/999999/cancel",
            json!({})
        )
        .0,
        404
    );
}

#[test]
fn a_batch_that_no_host_can_take_or_that_is_malformed_queues_nothing() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let _host = Host::enrol(&receiver, 0, "only-1");
    for body in [
        json!({"clients": ["ghost-1", "ghost-2"], "type": "fan_control", "params": {"action": "get_status"}}),
        json!({"clients": [], "type": "fan_control", "params": {"action": "get_status"}}),
        json!({"clients": "some", "type": "fan_control", "params": {"action": "get_status"}}),
        json!({"clients": [7], "type": "fan_control", "params": {"action": "get_status"}}),
        json!({"client": "only-1", "clients": ["only-1"], "type": "fan_control", "params": {"action": "get_status"}}),
        json!({"clients": ["only-1"], "type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 5}}),
        json!({"clients": "all", "type": "config_update", "params": {"action": "apply", "config": {"version": "v", "interval_s": 0}}}),
    ] {
        let (status, answer) = post(&receiver, "/api/dcmon/commands", body.clone());
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["errorType"], "bad_data");
    }
    let (_, answer) = post(
        &receiver,
        "/api/dcmon/commands",
        json!({"clients": ["ghost-1", "ghost-2"], "type": "fan_control", "params": {"action": "get_status"}}),
    );
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("ghost-1") && error.contains("ghost-2"),
        "{error}"
    );
    let (_, listed) = get(&receiver, "/api/dcmon/commands");
    assert_eq!(listed["data"], json!([]), "nothing was queued");
    // A host listed twice gets one command.
    let (status, twice) = post(
        &receiver,
        "/api/dcmon/commands",
        json!({"clients": ["only-1", "only-1"], "type": "fan_control", "params": {"action": "get_status"}}),
    );
    assert_eq!(status, 201);
    assert_eq!(
        (twice["queued"].as_u64(), twice["refused"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        twice["hosts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("already")
    );
}
