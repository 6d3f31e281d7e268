//! The API and its OpenAPI document agree: the document the node serves is
//! docs/openapi.json byte for byte; every route the code declares is documented with the
//! same methods and every documented path is routed; and what real nodes answer (status,
//! peers, a put, a delete and each kind of error) matches the documented schema for that
//! status code, with no property the document does not name.

use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;
use veil_tests::{random_block, Testnet, Topology};

fn doc() -> Value {
    let text = include_str!("../../docs/openapi.json");
    serde_json::from_str(text).expect("docs/openapi.json is JSON")
}

/// `(path, method)` pairs the router in node/src/api.rs declares, read from its source:
/// each `.route("PATH", get(..).put(..))` call.
fn routes_in_code() -> BTreeSet<(String, String)> {
    let src = include_str!("../../node/src/api.rs");
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices(".route(") {
        // The call's text up to its closing parenthesis.
        let rest = &src[at + ".route(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("a closed .route( call");
        let call = &rest[..end];
        let path = call.split('"').nth(1).expect("a route path literal");
        for method in ["get", "put", "delete", "post", "patch", "any"] {
            let named = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && call.as_bytes()[i - 1] != b'_'
            });
            if named {
                out.insert((path.to_string(), method.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_path_routed() {
    let code: BTreeSet<(String, String)> = routes_in_code()
        .into_iter()
        // The status page and the JSON 404 for unknown API paths are not API calls.
        .filter(|(p, _)| p != "/" && p != "/api/{*rest}")
        .collect();
    assert!(
        code.len() >= 6,
        "the route reader found too little: {code:?}"
    );
    let doc = doc();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| ["get", "put", "delete", "post", "patch"].contains(&k.as_str()))
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    assert_eq!(
        code, documented,
        "routes in node/src/api.rs vs docs/openapi.json"
    );
}

/// Field names of `struct NAME` in node/src/api.rs (a query's parameters).
fn query_fields(name: &str) -> BTreeSet<String> {
    let src = include_str!("../../node/src/api.rs");
    let start = src
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} in node/src/api.rs"));
    let body = &src[start..start + src[start..].find('}').expect("end of struct")];
    body.lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.contains(':'))
        .map(|l| l.split(':').next().unwrap_or("").trim().to_string())
        .collect()
}

/// Query parameters the document gives `method path`.
fn documented_query(doc: &Value, path: &str, method: &str) -> BTreeSet<String> {
    let item = &doc["paths"][path];
    [&item["parameters"], &item[method]["parameters"]]
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().expect("a name").to_string())
        .collect()
}

/// The query parameters the code reads are the documented ones, and the node refuses
/// others (so a parameter the document names but the code lost fails the live check in
/// `answers_match_the_document`).
#[test]
fn query_parameters_match() {
    let doc = doc();
    let path = "/api/v1/blocks/{key}";
    assert_eq!(
        query_fields("HtlQuery"),
        documented_query(&doc, path, "get")
    );
    assert_eq!(
        query_fields("PutQuery"),
        documented_query(&doc, path, "put")
    );
    assert!(!query_fields("PutQuery").is_empty());
    let src = include_str!("../../node/src/api.rs");
    for q in ["struct HtlQuery", "struct PutQuery"] {
        let at = src.find(q).expect("query struct");
        assert!(
            src[..at]
                .trim_end()
                .ends_with("#[serde(deny_unknown_fields)]"),
            "{q} must refuse parameters it does not know"
        );
    }
}

/// Follows `$ref`s within the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(doc, doc.pointer(pointer).expect("$ref target exists"))
        }
        None => schema,
    }
}

/// Checks `value` against `schema` strictly: types, required properties, enums, and no
/// property the schema does not name. Returns what disagrees.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    // One type name, or a list of them (OpenAPI 3.1: `["number", "null"]`).
    let types: Vec<&str> = match schema.get("type") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        Some(other) => panic!("{at}: a type must be a name or a list of names, not {other}"),
    };
    let is = |ty: &str| match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "null" => value.is_null(),
        other => panic!("{at}: the checker does not know type {other}"),
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        errors.push(format!(
            "{at}: {value} is not of type {}",
            types.join(" or ")
        ));
        return;
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if n < min {
            errors.push(format!("{at}: {n} is below the minimum {min}"));
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().expect("required names");
            if !obj.contains_key(req) {
                errors.push(format!("{at}: required property {req} missing"));
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, v, &format!("{at}.{k}"), errors),
                None if props.is_some() => {
                    errors.push(format!("{at}: property {k} is not in the document"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The documented JSON schema of `method path`'s answer with `status`.
fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{method} {path} answered {status}, which the document does not list"
    );
    &resp["content"]["application/json"]["schema"]
}

/// A call: method, URL path, the documented path it falls under, body, expected status.
type Case = (Method, String, &'static str, Option<Vec<u8>>, u16);

async fn answer(
    api: &veil_tests::Api,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Option<Value>) {
    let mut req = api.request(method, path);
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("the node answers");
    let status = resp.status().as_u16();
    let json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let bytes = resp.bytes().await.expect("a body");
    (
        status,
        json.then(|| serde_json::from_slice(&bytes).expect("JSON body")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_document() {
    let net = Testnet::start(2, Topology::Line).await.expect("testnet");
    let api = net.api(0);
    let doc = doc();

    // The served document is the checked-in one.
    let served = api
        .request(Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.text().await.unwrap(),
        include_str!("../../docs/openapi.json")
    );

    let (key, block) = random_block(41, 1000);
    let block_path = format!("/api/v1/blocks/{key}");
    let unknown = format!("/api/v1/blocks/{}", random_block(42, 10).0);
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/api/v1/status".into(),
            "/api/v1/status",
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/peers".into(),
            "/api/v1/peers",
            None,
            200,
        ),
        (
            Method::PUT,
            block_path.clone(),
            "/api/v1/blocks/{key}",
            Some(block.as_bytes().to_vec()),
            200,
        ),
        (
            Method::PUT,
            format!("{block_path}?replicas=99"),
            "/api/v1/blocks/{key}",
            Some(block.as_bytes().to_vec()),
            400,
        ),
        (
            Method::PUT,
            format!("{unknown}?htl=0"),
            "/api/v1/blocks/{key}",
            Some(block.as_bytes().to_vec()),
            400,
        ),
        (
            Method::GET,
            format!("{unknown}?htl=0"),
            "/api/v1/blocks/{key}",
            None,
            404,
        ),
        (
            Method::GET,
            "/api/v1/blocks/not-a-key".into(),
            "/api/v1/blocks/{key}",
            None,
            400,
        ),
        // Every documented parameter is accepted; an undocumented one is refused.
        (
            Method::PUT,
            format!("{block_path}?htl=1&role=index&replicas=2"),
            "/api/v1/blocks/{key}",
            Some(block.as_bytes().to_vec()),
            200,
        ),
        (
            Method::GET,
            format!("{block_path}?htl=0"),
            "/api/v1/blocks/{key}",
            None,
            200,
        ),
        (
            Method::GET,
            format!("{block_path}?bogus=1"),
            "/api/v1/blocks/{key}",
            None,
            400,
        ),
        (
            Method::PUT,
            format!("{block_path}?bogus=1"),
            "/api/v1/blocks/{key}",
            Some(block.as_bytes().to_vec()),
            400,
        ),
        (
            Method::DELETE,
            block_path.clone(),
            "/api/v1/blocks/{key}",
            None,
            200,
        ),
    ];
    let mut errors = Vec::new();
    for (method, url, path, body, want) in cases {
        let m = method.as_str().to_lowercase();
        let (status, json) = answer(api, method, &url, body).await;
        assert_eq!(status, want, "{m} {url}");
        let Some(json) = json else {
            // Not JSON: the document must name this answer's raw type (a block).
            let content =
                &doc["paths"][path][m.as_str()]["responses"][status.to_string()]["content"];
            assert!(
                content.get("application/octet-stream").is_some(),
                "{m} {url} answered {status} without JSON, which the document does not say"
            );
            continue;
        };
        let schema = response_schema(&doc, path, &m, status);
        check(
            &doc,
            schema,
            &json,
            &format!("{m} {url} ({status})"),
            &mut errors,
        );
        if status >= 400 {
            assert_eq!(
                json["code"], json["error"],
                "{m} {url}: code and error agree"
            );
        }
    }
    // No token: 401 with the error schema.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/status", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let json: Value = resp.json().await.unwrap();
    check(
        &doc,
        response_schema(&doc, "/api/v1/status", "get", 401),
        &json,
        "get /api/v1/status without a token",
        &mut errors,
    );
    assert_eq!(json["code"], "unauthorized");
    assert!(
        errors.is_empty(),
        "answers disagree with the document:\n{}",
        errors.join("\n")
    );
    net.shutdown().await;
}

/// The checker itself catches what it must: a missing field, an extra one, a wrong type.
#[test]
fn the_checker_sees_disagreement() {
    let doc = doc();
    let schema = &doc["components"]["schemas"]["InsertOutcome"];
    let good = serde_json::json!({
        "routing_key": "k", "routed": true, "route_exhausted": false, "local_only": false
    });
    let mut errors = Vec::new();
    check(&doc, schema, &good, "good", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [
        serde_json::json!({"routing_key": "k", "routed": true, "route_exhausted": false}),
        serde_json::json!({"routing_key": "k", "routed": true, "route_exhausted": false, "local_only": false, "extra": 1}),
        serde_json::json!({"routing_key": "k", "routed": "yes", "route_exhausted": false, "local_only": false}),
    ] {
        let mut errors = Vec::new();
        check(&doc, schema, &bad, "bad", &mut errors);
        assert!(!errors.is_empty(), "{bad} passed");
    }
    // A nullable number: a number or null, nothing else.
    let nullable = serde_json::json!({"type": ["number", "null"]});
    for (value, fine) in [
        (serde_json::json!(1.5), true),
        (Value::Null, true),
        (serde_json::json!("1.5"), false),
    ] {
        let mut errors = Vec::new();
        check(&doc, &nullable, &value, "rtt", &mut errors);
        assert_eq!(errors.is_empty(), fine, "{value}: {errors:?}");
    }
}
