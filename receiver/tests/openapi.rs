//! The OpenAPI document (generated from the handlers' annotations, served
//! at `/api/dcmon/openapi.json`) describes exactly the routes the router
//! serves, and each operation answers the credentials it names: a method
//! served without documentation, or documentation of a route that is gone,
//! fails here.

use std::collections::BTreeSet;

use dcmon_receiver::api::openapi::document_json;
use dcmon_receiver::app;
use serde_json::Value;

use crate::common::hosts::Host;
use crate::common::{Receiver, client};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn document() -> Value {
    serde_json::from_str(document_json()).expect("the OpenAPI document is JSON")
}

/// `(path, method)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((path.clone(), method.to_owned()));
            }
        }
    }
    found
}

/// Every `$ref` value in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// What a local `$ref` points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

#[test]
fn the_document_is_openapi_3_1_and_every_ref_resolves() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "openapi: {}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50, "only {} $refs found", found.len());
    for reference in &found {
        assert!(
            resolve(&doc, reference).is_some(),
            "$ref {reference} does not resolve"
        );
    }
    assert!(resolve(&doc, "#/components/schemas/NoSuchSchema").is_none());

    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for (path, method) in documented(&doc) {
        let operation = &doc["paths"][&path][&method];
        let security = operation["security"].as_array().expect("security");
        assert!(!security.is_empty(), "{method} {path}: no security");
        for requirement in security {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(scheme), "{method} {path}: {scheme}");
            }
        }
        // Nothing is public: every operation can answer 401.
        assert!(
            operation["responses"].get("401").is_some(),
            "{method} {path}: 401 undocumented"
        );
    }
}

#[test]
fn every_route_is_documented_and_every_operation_is_routed() {
    // The router's own table: utoipa-axum registers each route with its
    // operation, so this is what `app::router` serves.
    let routed = documented(&serde_json::to_value(app::operations()).unwrap());
    assert!(routed.contains(&("/api/v1/query".to_owned(), "post".to_owned())));
    assert!(routed.contains(&("/api/dcmon/openapi.json".to_owned(), "get".to_owned())));
    assert!(routed.len() >= 40, "only {} routes", routed.len());
    let documented = documented(&document());
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from the document: {undocumented:?}\n\
         operations in the document that the router does not serve: {unrouted:?}"
    );
}

/// Whether a response says the endpoint itself does not exist (as opposed
/// to a handler's "no such command").
fn no_such_endpoint(status: u16, body: &Value) -> bool {
    status == 405 || (status == 404 && body["error"] == "no such endpoint")
}

fn request(receiver: &Receiver, method: &str, path: &str, token: &str) -> (u16, Value) {
    // Path parameters get a plausible value; a host's poll must not wait.
    let mut url = receiver.url(&path.replace("{id}", "1").replace("{name}", "job"));
    if path.ends_with("/commands/next") {
        url.push_str("?timeout=1ms");
    }
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let response = client()
        .request(method, url)
        .bearer_auth(token)
        .body("{}")
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_slice(&response.bytes().unwrap()).unwrap_or_default();
    (status, body)
}

#[test]
fn every_operation_exists_and_admits_exactly_the_credentials_it_names() {
    let receiver = Receiver::start(&[]);
    let read = receiver.create_token("grafana", "read");
    let write = receiver.create_token("prometheus", "write");
    let host = Host::enrol(&receiver, 0, "gpu-01");
    let credentials = [
        ("adminToken", receiver.token.clone()),
        ("readToken", read),
        ("writeToken", write),
        ("hostJwt", String::new()),
    ];
    let (status, body) = request(&receiver, "get", "/api/dcmon/nope", &receiver.token);
    assert!(
        no_such_endpoint(status, &body),
        "the check must see a missing route"
    );

    let doc = document();
    let operations = documented(&doc);
    // On a documented path, a method the document does not name is not
    // served either.
    for (path, _) in &operations {
        for method in ["get", "put", "post", "delete", "patch"] {
            if operations.contains(&(path.clone(), method.to_owned())) {
                continue;
            }
            let (status, body) = request(&receiver, method, path, &receiver.token);
            assert_eq!(status, 405, "{method} {path}: {status} {body}");
        }
    }
    for (path, method) in operations {
        let security = doc["paths"][&path][&method]["security"].as_array().unwrap();
        for (scheme, token) in &credentials {
            // A host token is accepted once: a fresh one per request.
            let token = match *scheme {
                "hostJwt" => host.token(),
                _ => token.clone(),
            };
            let (status, body) = request(&receiver, &method, &path, &token);
            assert!(
                !no_such_endpoint(status, &body),
                "{method} {path}: {status} {body}"
            );
            let named = security.iter().any(|r| r.get(scheme).is_some());
            assert_eq!(
                status != 403,
                named,
                "{method} {path} with {scheme}: {status} {body}, documented: {security:?}"
            );
        }
    }
}

#[test]
fn the_document_is_served_to_readers_only() {
    let receiver = Receiver::start(&[]);
    let url = receiver.url("/api/dcmon/openapi.json");
    let read = receiver.create_token("grafana", "read");
    for token in [&receiver.token, &read] {
        let response = client().get(&url).bearer_auth(token).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.text().unwrap(), document_json());
    }
    let status = client().get(&url).send().unwrap().status().as_u16();
    assert_eq!(status, 401, "without a token");
    let write = receiver.create_token("prometheus", "write");
    let response = client().get(&url).bearer_auth(&write).send().unwrap();
    assert_eq!(response.status().as_u16(), 403, "a write-only token");
}
