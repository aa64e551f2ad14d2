//! Every query of the popular community dashboards and alert rules people
//! point at dcmon (`promql_side_by_side/data/dashboard-queries.tsv` and
//! `rule-queries.tsv`, from the peers collection) runs on the receiver
//! without error, over a small fleet's data. Queries that fail are listed,
//! each with its reason, in `peer_queries_exceptions.tsv`; the test fails
//! on an unlisted failure and on a listed query that now runs, so the list
//! stays exact. (Whether the answers equal Prometheus's is the side-by-side
//! test's job.)

use std::collections::BTreeMap;

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::fleet::{STEP_MS, fleet_series};
use crate::common::{Receiver, client, now_ms};

const DASHBOARDS: &str = include_str!("promql_side_by_side/data/dashboard-queries.tsv");
const RULES: &str = include_str!("promql_side_by_side/data/rule-queries.tsv");
const EXCEPTIONS: &str = include_str!("peer_queries_exceptions.tsv");

/// `(origin, query)` of every row, in file order, deduplicated by query.
fn peer_queries() -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (table, column) in [(DASHBOARDS, 3), (RULES, 3)] {
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let query = fields[column].trim().to_owned();
            if !query.is_empty() && seen.insert(query.clone()) {
                out.push((format!("{} {}", fields[0], fields[2]), query));
            }
        }
    }
    out
}

fn run(receiver: &Receiver, query: &str, end: i64) -> Result<(), String> {
    let response = client()
        .get(receiver.url("/api/v1/query_range"))
        .bearer_auth(&receiver.token)
        .query(&[
            ("query", query),
            ("start", &(end - 3600).to_string()),
            ("end", &end.to_string()),
            ("step", "60"),
        ])
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    if status == 200 && body["status"] == "success" {
        Ok(())
    } else {
        Err(body["error"].as_str().unwrap_or("no error text").to_owned())
    }
}

#[test]
fn community_dashboard_and_rule_queries_run_on_the_receiver() {
    let receiver = Receiver::start(&[]);
    let end_ms = now_ms() / STEP_MS * STEP_MS;
    for chunk in fleet_series(end_ms).chunks(200) {
        let response = receiver.write(Version::V1, chunk);
        assert!((200..300).contains(&response.status), "write: {response:?}");
    }
    let expected: BTreeMap<&str, &str> = EXCEPTIONS
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once('\t').expect("query<TAB>reason"))
        .collect();

    let queries = peer_queries();
    let mut unexpected = Vec::new();
    let mut failed = 0;
    for (origin, query) in &queries {
        match (
            run(&receiver, query, end_ms / 1000),
            expected.contains_key(query.as_str()),
        ) {
            (Ok(()), true) => {
                unexpected.push(format!("now runs, drop it from the exceptions: {query}"))
            }
            (Err(error), false) => unexpected.push(format!("{origin}: {query}\n    {error}")),
            (Err(_), true) => failed += 1,
            (Ok(()), false) => {}
        }
    }
    eprintln!(
        "peer queries: {} of {} run without error; {failed} listed exceptions",
        queries.len() - failed,
        queries.len()
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}
