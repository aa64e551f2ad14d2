//! `docs/api.md`'s route reference, generated from the OpenAPI document
//! (generated from the handlers' annotations, which `openapi.rs` checks
//! against the router): every operation with its credentials and summary, then one
//! `curl` example per route. The examples' arguments are the one thing kept
//! by hand, in [`example_arguments`]; a route without an entry there gets a
//! plain request, so a new route still appears.

use dcmon_receiver::api::openapi::document_json;
use serde_json::Value;

const COMMAND: &str = "cargo test -p dcmon-receiver --test integration api_doc";

/// The credential each security scheme stands for, and the shell variable
/// the examples use for it.
fn credential(scheme: &str) -> (&'static str, &'static str) {
    match scheme {
        "adminToken" => ("admin", "$ADMIN_TOKEN"),
        "readToken" => ("read", "$READ_TOKEN"),
        "writeToken" => ("write", "$WRITE_TOKEN"),
        "hostJwt" => ("host JWT", "$HOST_JWT"),
        other => {
            panic!("the OpenAPI document names a security scheme the docs do not know: {other}")
        }
    }
}

/// `curl` arguments after the URL for `method path`, if the route takes any.
fn example_arguments(method: &str, path: &str) -> &'static str {
    match (method, path) {
        ("GET", "/api/v1/query") => "-G --data-urlencode 'query=up'",
        ("POST", "/api/v1/query") => "--data-urlencode 'query=up'",
        ("GET", "/api/v1/query_range") => {
            "-G --data-urlencode 'query=up' -d start=2026-11-27T08:00:00Z -d end=2026-11-27T09:00:00Z -d step=60s"
        }
        ("POST", "/api/v1/query_range") => {
            "--data-urlencode 'query=up' -d start=2026-11-27T08:00:00Z -d end=2026-11-27T09:00:00Z -d step=60s"
        }
        ("GET", "/api/v1/series") => "-G --data-urlencode 'match[]=up'",
        ("POST", "/api/v1/series") => "--data-urlencode 'match[]=up'",
        ("GET", "/api/v1/query_exemplars") => "-G --data-urlencode 'query=up'",
        ("POST", "/api/v1/query_exemplars") => "--data-urlencode 'query=up'",
        ("GET", "/api/v1/format_query") => "-G --data-urlencode 'query=sum(up)by(job)'",
        ("POST", "/api/v1/format_query") => "--data-urlencode 'query=sum(up)by(job)'",
        ("GET", "/api/v1/metadata") => "-G -d metric=up",
        ("POST", "/api/v1/metadata") => "-d metric=up",
        ("POST", "/api/v1/labels" | "/api/v1/label/{name}/values" | "/api/v1/status/buildinfo") => {
            "-d ''"
        }
        ("GET", "/api/dcmon/commands") => "-G -d client=gpu01 -d status=pending -d limit=20",
        ("POST", "/api/dcmon/commands") => {
            "-H 'Content-Type: application/json' -d @command.json   # a CreateCommandRequest"
        }
        ("GET", "/api/dcmon/commands/next") => "-G -d timeout=30",
        ("POST", "/api/dcmon/commands/{id}/result") => {
            "-H 'Content-Type: application/json' -d @result.json   # a CommandResult"
        }
        ("POST", "/api/dcmon/register") => {
            "-H 'Content-Type: application/json' -d @register.json   # a RegisterRequest"
        }
        ("POST", "/api/v1/write") => {
            "-H 'Content-Encoding: snappy' -H 'Content-Type: application/x-protobuf' \\\n    -H 'X-Prometheus-Remote-Write-Version: 0.1.0' --data-binary @request.snappy"
        }
        (
            "POST",
            "/api/dcmon/clients/{id}/revoke"
            | "/api/dcmon/commands/{id}/cancel"
            | "/api/dcmon/commands/batches/{id}/cancel",
        ) => "-X POST",
        _ => "",
    }
}

/// Example values for path parameters.
fn example_path(path: &str) -> String {
    path.replace("/clients/{id}", "/clients/gpu01")
        .replace("/batches/{id}", "/batches/1")
        .replace("/commands/{id}", "/commands/42")
        .replace("{name}", "instance")
}

struct Operation {
    method: String,
    path: String,
    schemes: Vec<String>,
    summary: String,
    description: String,
}

fn operations(document: &Value) -> Vec<Operation> {
    let default_security = &document["security"];
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch") {
                continue;
            }
            let security = op.get("security").unwrap_or(default_security);
            let schemes = security
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_object())
                .flat_map(|s| s.keys().cloned())
                .collect();
            let text = |key: &str| op[key].as_str().unwrap_or("").replace('\n', " ");
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                schemes,
                summary: text("summary"),
                description: text("description"),
            });
        }
    }
    out
}

fn render(document: &Value) -> String {
    let ops = operations(document);
    let mut page =
        String::from("\n## Routes\n\n| method | path | credentials | what |\n|---|---|---|---|\n");
    for op in &ops {
        let who: Vec<&str> = op.schemes.iter().map(|s| credential(s).0).collect();
        page.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            op.method,
            op.path,
            who.join(", "),
            op.summary.replace('|', "\\|")
        ));
    }
    page.push_str("\n## Examples\n");
    for op in &ops {
        // The narrowest credential: a scoped token where one is accepted.
        let token = op
            .schemes
            .iter()
            .find(|s| *s != "adminToken")
            .or(op.schemes.first())
            .map_or("$ADMIN_TOKEN", |s| credential(s).1);
        let args = example_arguments(&op.method, &op.path);
        let url = format!("http://receiver:8000{}", example_path(&op.path));
        page.push_str(&format!("\n### {} `{}`\n\n", op.method, op.path));
        if !op.description.is_empty() {
            page.push_str(&format!("{}\n\n", op.description));
        }
        let mut line = format!("curl -s -H \"Authorization: Bearer {token}\" {url}");
        if !args.is_empty() {
            line.push_str(" \\\n    ");
            line.push_str(args);
        }
        page.push_str(&format!("```sh\n{line}\n```\n"));
    }
    page.push('\n');
    page
}

#[test]
fn the_api_reference_matches_the_openapi_document() {
    let document: Value =
        serde_json::from_str(document_json()).expect("the OpenAPI document is JSON");
    let page = render(&document);
    // Every operation of the document is on the page, with its example.
    for op in operations(&document) {
        assert!(page.contains(&format!("### {} `{}`", op.method, op.path)));
    }
    dcmon_testkit::docs::check_generated("docs/api.md", "routes", &page, COMMAND);
}
