use super::*;

const ENVS: &str = "\
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: dev }
spec:
  variables:
    UPSTREAM: http://dev.internal:8080
    LIMIT: '10'
---
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: prod }
spec:
  variables:
    UPSTREAM: http://prod.internal:8080
";

const PROXY: &str = "\
# payments, the same file for every environment
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: payments }
spec:
  routes: [{ pathPrefix: /payments }]
  upstream:
    targets:
      - url: \"${UPSTREAM}\"
  policies:
    - type: headers
      response: { set: { x-note: \"$${not-a-variable}\" } }
";

fn texts() -> Vec<(Arc<str>, String)> {
    vec![
        ("envs.yaml".into(), ENVS.to_string()),
        ("payments.yaml".into(), PROXY.to_string()),
    ]
}

fn url(m: &Located<Manifest>) -> String {
    let Manifest::Proxy(p) = &m.value else {
        panic!("not a proxy")
    };
    p.spec.upstream.targets.value[0].url.0.clone()
}

#[test]
fn the_same_files_resolve_per_environment() {
    let dev = resolve_texts(&texts(), "dev", None, &EnvSource::Process).unwrap();
    assert_eq!(
        dev.manifests.len(),
        2,
        "dev's Environment document and the proxy"
    );
    assert_eq!(dev.skipped_environments, ["prod"]);
    assert_eq!(dev.environment().unwrap().metadata.name.value, "dev");
    assert_eq!(url(&dev.manifests[1]), "http://dev.internal:8080");
    // The template is the document as written, escapes and all.
    assert!(dev.templates[1].contains("\"${UPSTREAM}\""));
    assert!(dev.templates[1].contains("$${not-a-variable}"));
    let Manifest::Proxy(p) = &dev.manifests[1].value else {
        panic!()
    };
    assert!(format!("{:?}", p.spec.policies).contains("${not-a-variable}"));

    let prod = resolve_texts(&texts(), "prod", None, &EnvSource::Process).unwrap();
    assert_eq!(url(&prod.manifests[1]), "http://prod.internal:8080");
    assert_ne!(dev.manifests[1].digest, prod.manifests[1].digest);

    // A template resolves again with another environment's variables.
    let vars = prod.variables.clone().unwrap();
    let again = resolve_template(&"t".into(), &dev.templates[1], "prod", &vars, "no").unwrap();
    assert_eq!(again.digest, prod.manifests[1].digest);
}

#[test]
fn an_undefined_variable_names_file_line_and_field() {
    let e = resolve_texts(&texts(), "stage", None, &EnvSource::Process).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("payments.yaml:9:"),
        "file and line of the reference: {text}"
    );
    assert!(text.contains(": url: "), "the field: {text}");
    assert!(
        text.contains("no kind: Environment document named \"stage\""),
        "{text}"
    );

    let mut vars = BTreeMap::new();
    vars.insert("OTHER".to_string(), "x".to_string());
    let e = resolve_texts(&texts()[1..], "stage", Some(&vars), &EnvSource::Process).unwrap_err();
    assert!(
        e.to_string().contains("its variables on the Manager"),
        "{e}"
    );

    let e = resolve_template(&"t".into(), PROXY, "prod", &vars, "no").unwrap_err();
    assert!(
        e.to_string()
            .contains("`${UPSTREAM}`: UPSTREAM is not defined in \"prod\""),
        "{e}"
    );
}

#[test]
fn the_manager_refuses_process_environment_references() {
    let texts = vec![(
        Arc::<str>::from("manifests[0]"),
        PROXY.replace("${UPSTREAM}", "${env:SWITCHYARD_URL}"),
    )];
    let e = resolve_texts(
        &texts,
        "dev",
        None,
        &EnvSource::Refuse("filled in by the CLI"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("filled in by the CLI"), "{e}");
}

#[test]
fn environment_documents_are_checked() {
    let two = vec![
        ("a.yaml".into(), ENVS.to_string()),
        ("b.yaml".into(), ENVS.to_string()),
    ];
    let e = resolve_texts(&two, "dev", None, &EnvSource::Process).unwrap_err();
    assert!(
        e.to_string()
            .contains("a second kind: Environment document"),
        "{e}"
    );

    let bad = ENVS.replace("LIMIT:", "9LIMIT:");
    let e = resolve_texts(&[("e.yaml".into(), bad)], "dev", None, &EnvSource::Process).unwrap_err();
    assert!(
        e.to_string().contains("invalid variable name \"9LIMIT\""),
        "{e}"
    );

    let uses = ENVS.replace("'10'", "\"${UPSTREAM}\"");
    let e =
        resolve_texts(&[("e.yaml".into(), uses)], "dev", None, &EnvSource::Process).unwrap_err();
    assert!(e.to_string().contains("cannot use them"), "{e}");
}

#[test]
fn variables_in_lists_references_outside_comments() {
    assert_eq!(
        crate::env_refs::variables_in(
            "a: ${A}\nb: \"${B}-${A}\" # ${C}\nc: $${D}\nd: ${env:SWITCHYARD_E}\n"
        ),
        ["A", "B"]
    );
}

#[test]
fn arbitrary_text_never_panics_the_resolver() {
    // A small deterministic generator over the characters that matter to the scanner.
    let alphabet: Vec<char> = "${}:#'\"\\ \nABC_env-é字\t".chars().collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let vars: BTreeMap<String, String> = [("A", "x: y"), ("B", "é'\"\n"), ("env", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for _ in 0..3000 {
        let len = (next() % 60) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let named: Arc<str> = "fuzz.yaml".into();
        let _ = resolve_texts(
            &[(named.clone(), text.clone())],
            "dev",
            Some(&vars),
            &EnvSource::Refuse("no"),
        );
        let _ = resolve_template(&named, &text, "dev", &vars, "no");
        let _ = crate::env_refs::variables_in(&text);
    }
}
