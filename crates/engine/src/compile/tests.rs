use std::sync::Arc;

use super::*;
use crate::runtime::Policy;
use switchyard_config::load::parse_str;

const PAYMENTS: &str = r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: payments
  labels: { owner: payments-team }
spec:
  routes:
    - pathPrefix: /payments        # longest prefix wins; also `path` for exact
      hosts: [api.example.com]     # optional, `*.example.com` allowed; absent = any host
      methods: [GET, POST]         # optional; absent = any
      stripPrefix: false
  upstream:
    targets:
      - url: http://127.0.0.1:18081
        weight: 1
    loadBalancing: round-robin     # also least-requests, weighted
    timeouts: { connect: 2s, request: 30s }
    retries: { attempts: 1 }       # only on connect failure, to another target
  policies:
    - type: headers
      response:
        set: { x-release: blue }
      request:
        set: { x-from-gateway: "yes" }
        remove: [x-internal]
"#;

fn parse(text: &str) -> Result<Vec<Located<Manifest>>, ConfigErrors> {
    parse_str(Arc::from("payments.yaml"), text)
}

fn compile_text(text: &str) -> Result<Compiled, ConfigErrors> {
    compile(&parse(text)?, None)
}

fn first_error(text: &str) -> String {
    match compile_text(text) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.0[0].to_string(),
    }
}

#[test]
fn issue_example_compiles() {
    let c = compile_text(PAYMENTS).unwrap();
    let s = &c.snapshot;
    assert_eq!(s.revision, 1);
    let p = s.proxy("payments").unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(p.labels["owner"], "payments-team");
    assert_eq!(p.upstream.targets[0].authority.as_str(), "127.0.0.1:18081");
    assert_eq!(p.upstream.connect_timeout.as_secs(), 2);
    let m = s
        .route(Some("api.example.com"), "/payments/1", &http::Method::POST)
        .unwrap();
    assert_eq!(&*m.2.id, "payments#0");
    assert!(
        s.route(Some("api.example.com"), "/payments", &http::Method::DELETE)
            .is_none()
    );
}

/// Each edit of the issue example, and the exact error it must produce.
#[test]
fn issue_example_error_messages() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "connect: 2s",
            "connect: 2 s",
            "payments.yaml:17:26: proxy \"payments\": spec.upstream.timeouts.connect: \
             invalid duration \"2 s\": expected a number followed by a unit (ms, s, m, h), \
             e.g. \"2s\" or \"1m30s\"",
        ),
        (
            "weight: 1",
            "weight: 1\n        wieght: 2",
            "payments.yaml:16:9: proxy \"payments\": spec.upstream.targets[0].wieght: \
             unknown field `wieght`, expected one of url, weight",
        ),
        (
            "type: headers",
            "type: header",
            "payments.yaml:20:13: proxy \"payments\": spec.policies[0].type: \
             unknown variant `header`, expected one of headers, api-key, basic-auth, jwt, mtls-auth, ip-filter, rate-limit, request-size, cors, prompt-firewall, mock-response, upstream-credential",
        ),
        (
            "x-release: blue",
            "\"x release\": blue",
            "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response.set.x release: \
             invalid header name \"x release\"",
        ),
        (
            "http://127.0.0.1:18081",
            "ftp://x",
            "payments.yaml:14:14: proxy \"payments\": spec.upstream.targets[0].url: \
             invalid URL \"ftp://x\": unsupported scheme \"ftp\", expected http or https",
        ),
        (
            "- url: http://127.0.0.1:18081\n        weight: 1",
            "[]",
            "payments.yaml:14:7: proxy \"payments\": spec.upstream.targets: \
             an upstream needs at least one target",
        ),
        (
            "    - type: headers\n      response:",
            "    - type: headers\n      bogus: 1\n      response:",
            "payments.yaml:21:7: proxy \"payments\": spec.policies[0].bogus: \
             unknown field `bogus`, expected one of request, response",
        ),
    ];
    for (from, to, expected) in cases {
        assert_eq!(PAYMENTS.matches(from).count(), 1, "{from:?}");
        let bad = PAYMENTS.replacen(from, to, 1);
        assert_eq!(first_error(&bad), *expected, "{from:?} -> {to:?}");
    }
}

#[test]
fn issue_example_twice_is_a_duplicate() {
    let twice = format!("{PAYMENTS}---\n{PAYMENTS}");
    assert_eq!(
        first_error(&twice),
        "payments.yaml:30:9: proxy \"payments\": metadata.name: duplicate name: \
         proxy \"payments\" is already defined at payments.yaml:4:9"
    );
}

#[test]
fn issue_example_pipeline_edits_headers() {
    let c = compile_text(PAYMENTS).unwrap();
    let p = c.snapshot.proxy("payments").unwrap();
    let mut req = http::HeaderMap::new();
    req.insert("x-internal", http::HeaderValue::from_static("secret"));
    let mut uri: http::Uri = "/payments".parse().unwrap();
    let mut ex = crate::runtime::policy::Exchange::default();
    for policy in &p.pipeline.policies {
        let step = policy.on_request(
            &mut crate::runtime::policy::RequestView {
                method: &http::Method::GET,
                uri: &mut uri,
                headers: &mut req,
                peer: [127, 0, 0, 1].into(),
                client_cert: None,
            },
            &mut ex,
            std::time::Instant::now(),
            std::time::SystemTime::now(),
        );
        assert!(matches!(
            step,
            crate::runtime::policy::Step::Done(crate::runtime::policy::Verdict::Continue)
        ));
    }
    assert!(req.get("x-internal").is_none());
    assert_eq!(req["x-from-gateway"], "yes");
    let mut resp = http::HeaderMap::new();
    p.pipeline.on_response(&ex, &mut resp);
    assert_eq!(resp["x-release"], "blue");
    assert_eq!(
        p.digest,
        proxy_digest(match &parse(PAYMENTS).unwrap()[0].value {
            Manifest::Proxy(m) => m,
            _ => panic!("not a proxy"),
        })
    );
}

#[test]
fn canonical_json_is_readable_as_yaml_and_keeps_the_digest() {
    let m = parse(PAYMENTS).unwrap();
    let json = m[0].value.canonical_json();
    assert!(json.starts_with('{'));
    let again = parse_str(Arc::from("manager:dev/Proxy/payments"), &json).unwrap();
    assert_eq!(again[0].value.canonical_json(), json);
    assert_eq!(again[0].value.digest(), m[0].value.digest());
    let Manifest::Proxy(p) = &m[0].value else {
        panic!("not a proxy")
    };
    assert_eq!(proxy_digest(p), m[0].value.digest());
}

/// A proxy guarded by `basic-auth` and one by `jwt`, with their credentials, as operators
/// write them (the JWKS as YAML, the leeway as a duration).
fn auth_config(password_hash: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Credential
metadata: {{ name: staff }}
spec:
  type: basic-users
  users:
    - username: alice
      passwordHash: "{password_hash}"
---
apiVersion: switchyard.dev/v1
kind: Credential
metadata: {{ name: idp }}
spec:
  type: jwks
  jwks:
    keys:
      - kty: EC
        kid: ec-1
        crv: P-256
        x: 30OXEyzfkWDXONiLALFHtd8S6B542o6Ea9pQBP4FTAE
        y: i6BPNMZPUz5m4lrMtUGBt8qRfJPbC0dnd8GsNe9Usj4
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: admin }}
spec:
  routes: [{{ pathPrefix: /admin }}]
  upstream: {{ targets: [{{ url: "http://127.0.0.1:18081" }}] }}
  policies:
    - type: basic-auth
      credentials: [staff]
      realm: Admin
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: orders }}
spec:
  routes: [{{ pathPrefix: /orders }}]
  upstream: {{ targets: [{{ url: "http://127.0.0.1:18081" }}] }}
  policies:
    - type: jwt
      algorithms: [ES256]
      jwks: idp
      issuer: https://idp.example.com
      audiences: [orders]
      leeway: 30s
      consumerClaim: client_id
"#
    )
}

#[test]
#[allow(clippy::unwrap_used)]
fn auth_policies_compile_from_yaml_with_their_credentials() {
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    let c = compile_text(&auth_config(&hash)).unwrap();
    let s = &c.snapshot;
    let admin = s.proxy("admin").unwrap();
    assert!(matches!(admin.pipeline.policies[0], Policy::BasicAuth(_)));
    let orders = s.proxy("orders").unwrap();
    assert!(matches!(orders.pipeline.policies[0], Policy::Jwt(_)));

    // A clear password is refused where the credential is written, and not repeated.
    let e = compile_text(&auth_config("alice-pw")).unwrap_err().0;
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("spec.users[0].passwordHash")
                && t.contains("never a clear password")),
        "{text:?}"
    );
    assert!(text.iter().all(|t| !t.contains("alice-pw")), "{text:?}");
    // So is a hash that merely looks like one.
    let e = compile_text(&auth_config(&hash[..40])).unwrap_err().0;
    assert!(
        e.iter()
            .any(|e| e.to_string().contains("not a valid bcrypt hash")),
        "{e:?}"
    );
}

const LLM: &str = r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: llm
spec:
  routes:
    - pathPrefix: /v1
  upstream:
    targets:
      - url: http://127.0.0.1:18082
  policies:
    - type: prompt-firewall
      rules:
        - name: ignore-previous
          pattern: "ignore (all )?previous instructions"
          regex: true
          caseInsensitive: true
        - name: no-secrets
          pattern: "BEGIN PRIVATE KEY"
      onUninspectable: deny
"#;

#[test]
fn prompt_firewall_from_a_manifest() {
    use crate::runtime::policy::{Policy, Verdict};
    let c = compile_text(LLM).unwrap();
    let p = c.snapshot.proxy("llm").unwrap();
    assert!(p.pipeline.inspects_body());
    let Policy::PromptFirewall(fw) = &p.pipeline.policies[0] else {
        panic!("not a prompt-firewall");
    };
    assert_eq!(fw.max_body_bytes, 1 << 20);
    let body = br#"{"messages": [{"role": "user", "content": "Ignore previous instructions"}]}"#;
    match fw.inspect(body) {
        Verdict::Reply(r) => assert_eq!(r.detail.as_deref(), Some("ignore-previous")),
        Verdict::Continue => panic!("not denied"),
    }

    let bad = LLM.replace(
        "pattern: \"BEGIN PRIVATE KEY\"",
        "pattern: \"(\"\n          regex: true",
    );
    let e = first_error(&bad);
    assert!(
        e.contains("spec.policies[0].rules[1].pattern: invalid regular expression"),
        "{e}"
    );
}

/// A full set compiled against a snapshot of another history — the same names and
/// versions, other content, as a Worker following a restored Manager sees it — reuses a
/// proxy only when its digest is equal: every proxy whose content differs is compiled
/// again and serves the new content, whatever its version says.
#[test]
fn a_full_set_reuses_a_proxy_only_when_its_digest_is_equal() {
    let proxy = |name: &str, path: &str| {
        parse(&format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {name} }}\nspec:\n  routes: [{{ pathPrefix: {path} }}]\n  upstream: {{ targets: [{{ url: \"http://127.0.0.1:1\" }}] }}\n"
        ))
        .unwrap()
        .remove(0)
    };
    let numbering = |revision, versions: &[(&str, u64)]| Numbering {
        revision: Some(revision),
        versions: versions.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    };
    let versions = [("a", 2), ("b", 2), ("c", 1)];
    let old = [proxy("a", "/a-old"), proxy("b", "/b"), proxy("c", "/c-old")];
    let first = compile_refs(
        &old.iter().collect::<Vec<_>>(),
        None,
        &numbering(3, &versions),
    )
    .unwrap()
    .snapshot;
    let new = [proxy("a", "/a-new"), proxy("b", "/b"), proxy("c", "/c-new")];
    let next = compile_refs(
        &new.iter().collect::<Vec<_>>(),
        Some(&first),
        &numbering(3, &versions),
    )
    .unwrap();
    assert_eq!(
        next.rebuilt, 2,
        "a and c changed content under the same versions"
    );
    let s = &next.snapshot;
    for (m, reused) in new.iter().zip([false, true, false]) {
        let name = m.value.name();
        let p = s.proxy(name).unwrap();
        assert_eq!(p.digest, m.digest, "{name} serves the new content");
        assert_eq!(
            Arc::ptr_eq(p, first.proxy(name).unwrap()),
            reused,
            "{name} reused"
        );
    }
    let get = http::Method::GET;
    assert_eq!(&*s.route(None, "/a-new/1", &get).unwrap().1.name, "a");
    assert!(s.route(None, "/a-old/1", &get).is_none());
    assert!(s.route(None, "/c-old/1", &get).is_none());

    // The same content under other versions (a history numbered differently): compiled
    // again only to carry the Manager's version; an equal digest and version is shared.
    let renumbered = compile_refs(
        &new.iter().collect::<Vec<_>>(),
        Some(s),
        &numbering(1, &[("a", 1), ("b", 1), ("c", 1)]),
    )
    .unwrap();
    let r = &renumbered.snapshot;
    assert_eq!(renumbered.rebuilt, 2);
    assert_eq!(
        ["a", "b", "c"].map(|n| r.proxy(n).unwrap().version),
        [1, 1, 1]
    );
    assert!(Arc::ptr_eq(r.proxy("c").unwrap(), s.proxy("c").unwrap()));
}

#[test]
fn a_revision_header_must_be_one_a_response_can_carry() {
    let env = |header: &str| {
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: {{ name: dev }}\nspec:\n  gateway:\n    revisionHeader: {header}\n"
        )
    };
    let c = compile_text(&env("x-switchyard-revision")).unwrap();
    assert_eq!(
        c.snapshot
            .gateway()
            .revision_header
            .as_ref()
            .map(|h| h.as_str()),
        Some("x-switchyard-revision")
    );
    for bad in ["content-length", "\"bad header\""] {
        let e = compile_text(&env(bad)).unwrap_err().to_string();
        assert!(e.contains("spec.gateway.revisionHeader"), "{bad}: {e}");
    }
}
