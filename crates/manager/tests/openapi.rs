#![allow(clippy::unwrap_used)]
//! `GET /v1/openapi.json`: public, OpenAPI 3.x, and listing every `/v1` route of
//! `api/mod.rs` with its methods and the bearer security scheme.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use switchyard_api::sync::{WORKER_ADDRESS_HEADER, WORKER_ID_HEADER};
use switchyard_manager::{Manager, ManagerOptions};
use switchyard_store::SqlStore;
use tower::ServiceExt;

/// Every route registered under `/v1` in `crates/manager/src/api/mod.rs`, with its methods.
/// Keep in step with the router.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/envs", &["get", "post"]),
    ("/v1/envs/{env}", &["get", "delete"]),
    ("/v1/envs/{env}/apply", &["post"]),
    ("/v1/envs/{env}/rollout", &["get", "post"]),
    ("/v1/envs/{env}/canary", &["get"]),
    ("/v1/envs/{env}/canary/promote", &["post"]),
    ("/v1/envs/{env}/canary/abort", &["post"]),
    ("/v1/envs/{env}/promote", &["post"]),
    ("/v1/envs/{env}/rollback", &["post"]),
    ("/v1/envs/{env}/entities", &["get"]),
    ("/v1/envs/{env}/credentials/{name}/value", &["put"]),
    ("/v1/envs/{env}/revisions", &["get"]),
    ("/v1/envs/{env}/revisions/{rev}", &["get"]),
    ("/v1/envs/{env}/revisions/{rev}/diff", &["get"]),
    ("/v1/envs/{env}/workers", &["get"]),
    ("/v1/envs/{env}/sync", &["get"]),
    ("/v1/envs/{env}/events", &["get"]),
    ("/v1/envs/{env}/reports", &["post"]),
    ("/v1/envs/{env}/stats", &["get", "post"]),
    ("/v1/audit", &["get"]),
    ("/v1/tokens", &["get", "post"]),
    ("/v1/tokens/{id}", &["delete"]),
    ("/v1/openapi.json", &["get"]),
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// GETs `/v1/openapi.json` without a token, in-process.
async fn fetch_document() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_in_memory().await.unwrap();
    let manager = Manager::with_store(Arc::new(store), &ManagerOptions::new(dir.path()))
        .await
        .unwrap();
    let response = manager
        .router()
        .oneshot(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).expect("the document is valid JSON")
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if HTTP_METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op));
            }
        }
    }
    out
}

fn param_names(op: &Value, location: &str) -> BTreeSet<String> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == location)
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The schema a `$ref` points to (`#/components/schemas/Name`), or the schema itself.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            let found = &doc["components"]["schemas"][name];
            assert!(found.is_object(), "dangling $ref {r}");
            found
        }
        None => schema,
    }
}

#[tokio::test]
async fn openapi_document_is_public_and_lists_every_route() {
    let doc = fetch_document().await;

    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Switchyard Manager API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // Exactly the router's /v1 routes, each with exactly its methods.
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method, _) in operations(&doc) {
        documented.entry(path).or_default().insert(method);
    }
    let expected: BTreeMap<String, BTreeSet<String>> = ROUTES
        .iter()
        .map(|(path, methods)| {
            (
                path.to_string(),
                methods.iter().map(|m| m.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(documented, expected);

    // The bearer scheme is declared and required by default.
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));

    let mut operation_ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let what = format!("{method} {path}");
        // A unique id and a one-line summary.
        let id = op["operationId"].as_str().unwrap();
        assert!(
            operation_ids.insert(id.to_string()),
            "{what}: duplicate id {id}"
        );
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(
            !summary.is_empty() && !summary.contains('\n'),
            "{what}: summary {summary:?}"
        );

        // Every `{param}` of the path is a documented, required path parameter.
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        assert_eq!(param_names(op, "path"), in_path, "{what}");

        // Only the document itself is public; every other operation documents the JSON
        // error body for a missing token.
        if path == "/v1/openapi.json" {
            assert_eq!(op["security"], serde_json::json!([]), "{what}");
            continue;
        }
        assert!(op.get("security").is_none(), "{what}: overrides security");
        let unauthorized = &op["responses"]["401"]["content"]["application/json"]["schema"];
        let error = resolve(&doc, unauthorized);
        for field in ["code", "message", "details"] {
            assert!(error["properties"][field].is_object(), "{what}: {error}");
        }
        // Every 2xx response but 204 has a body; every error is the JSON error body, and
        // nothing else (the server turns axum's plain-text rejections into it).
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('2') && status != "204" {
                assert!(response["content"].is_object(), "{what} {status}: no body");
            }
            if status.starts_with('4') || status.starts_with('5') {
                let content = response["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/json"],
                    "{what} {status}"
                );
                let schema = resolve(&doc, &content["application/json"]["schema"]);
                assert!(schema["properties"]["code"].is_object(), "{what} {status}");
            }
        }
        let responses = &op["responses"];
        assert!(
            responses["401"]["headers"]["WWW-Authenticate"].is_object(),
            "{what}: 401 without WWW-Authenticate"
        );
        assert!(
            responses["429"]["headers"]["Retry-After"].is_object(),
            "{what}: the auth-failure throttle's 429"
        );
        // Requests with a JSON body name its schema, and list what axum refuses them with.
        if method == "post" || method == "put" {
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(resolve(&doc, body).is_object(), "{what}: no request body");
            for status in ["400", "413", "415", "422"] {
                assert!(responses[status].is_object(), "{what}: no {status}");
            }
        }
        // Every environment in a path has the pattern the server accepts names by.
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "path" && p["name"] == "env" {
                assert_eq!(
                    p["schema"]["pattern"], "^[a-z0-9][a-z0-9-]{0,62}$",
                    "{what}"
                );
            }
        }
    }

    // Limits as the server enforces them.
    for path in ["/v1/envs/{env}/revisions", "/v1/audit"] {
        let limit = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&serde_json::json!(1), &serde_json::json!(1000)),
            "{path}: {limit}"
        );
        assert!(doc["paths"][path]["get"]["responses"]["400"].is_object());
    }
    assert_eq!(
        switchyard_api::admin::MAX_LIMIT,
        1000,
        "update the documented maximum"
    );

    // Query parameters.
    let get = |path: &str| &doc["paths"][path]["get"];
    assert_eq!(
        param_names(get("/v1/envs/{env}/revisions"), "query"),
        BTreeSet::from(["limit".to_string()])
    );
    assert_eq!(
        param_names(get("/v1/envs/{env}/sync"), "query"),
        BTreeSet::from(["since".to_string(), "at".to_string()])
    );
    assert_eq!(
        param_names(get("/v1/audit"), "query"),
        [
            "env", "entity", "actor", "since", "until", "before", "limit"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );

    // The event stream, and the Worker headers it and the reports read.
    let events = get("/v1/envs/{env}/events");
    assert!(
        events["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{events}"
    );
    let headers = param_names(events, "header");
    assert!(headers.contains(WORKER_ID_HEADER), "{headers:?}");
    assert!(headers.contains(WORKER_ADDRESS_HEADER), "{headers:?}");
    let report = &doc["paths"]["/v1/envs/{env}/reports"]["post"];
    assert!(param_names(report, "header").contains(WORKER_ID_HEADER));
    assert!(report["responses"]["204"].is_object(), "{report}");

    // Components are named after Rust types: a primitive here means a type alias (such as
    // `Millis`) lacks `#[schema(value_type = ...)]`.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(name.starts_with(char::is_uppercase), "schema {name}");
    }

    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let r = &r[..r.find('"').unwrap()];
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }
}

#[tokio::test]
async fn the_documented_patterns_are_the_ones_the_server_checks() {
    let doc = fetch_document().await;
    let param = |path: &str, name: &str| -> String {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]["pattern"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let expires_in =
        doc["components"]["schemas"]["CreateToken"]["properties"]["expires_in"]["pattern"]
            .as_str()
            .unwrap()
            .to_string();
    // A stand-in for the regexes: every sample is accepted by the server exactly when it
    // matches the shape the pattern spells out.
    assert_eq!(
        param("/v1/audit", "since"),
        "^(-?[0-9]{1,18}|[0-9]{1,9}(ms|s|m|h|d|w))$"
    );
    assert_eq!(expires_in, "^[1-9][0-9]{0,8}(ms|s|m|h|d|w)$");
    for (text, duration) in [
        ("30d", true),
        ("0s", true),
        ("999999999w", true),
        ("1000000000s", false),
        ("1h30m", false),
        ("1 h", false),
        ("1y", false),
        ("", false),
    ] {
        assert_eq!(
            switchyard_api::admin::parse_duration(text).is_some(),
            duration,
            "{text}"
        );
    }
    let role = &doc["components"]["schemas"]["CreateToken"]["properties"]["role"];
    let role = resolve(&doc, role);
    assert_eq!(
        role["enum"],
        serde_json::json!(["admin", "deployer", "viewer", "worker"]),
        "{role}"
    );
}

#[tokio::test]
async fn other_v1_routes_still_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_in_memory().await.unwrap();
    let manager = Manager::with_store(Arc::new(store), &ManagerOptions::new(dir.path()))
        .await
        .unwrap();
    let response = manager
        .router()
        .oneshot(Request::get("/v1/envs").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
