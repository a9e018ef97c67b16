//! The admin side of the CLI, through the real binary against a real Manager process: exit
//! codes a CI script can rely on, an unknown environment refused by every command, tokens
//! listed and revoked, environments deleted, secrets taken from files rather than command
//! lines, a write whose answer never came, several Manager URLs (the first that can be
//! reached takes the command; a write that reached one is never replayed to another),
//! unquoted `${NAME}` in plain values, and failed authentications in the Manager's log
//! (without the secret).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::{Manager, Proc, run_code, wait_until};

fn proxy(name: &str, url: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {name} }}\nspec:\n  routes: [{{ pathPrefix: /{name} }}]\n  upstream:\n    targets: [{{ url: {url} }}]\n"
    )
}

fn write(m: &Manager, rel: &str, text: &str) -> PathBuf {
    let path = m.dir().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn exit_codes_tell_pending_changes_from_errors() {
    let m = Manager::with_env("dev");
    let file = write(&m, "a/a.yaml", &proxy("a", "\"http://127.0.0.1:9\""));
    let code = |args: &[&str]| m.code(args, &[]).0;

    // Usage errors are errors (1), not "changes pending" (2); help is a success.
    for args in [
        &["plan", "--nope"][..],
        &["plan", "--env", "dev"],
        &["apply"],
        &[],
        &["token", "revoke"],
        &["env", "delete"],
    ] {
        let (c, _, err) = m.code(args, &[]);
        assert_eq!(c, 1, "switchyard {args:?}: {err}");
        assert!(!err.is_empty());
    }
    assert_eq!(code(&["--help"]), 0);
    assert_eq!(code(&["plan", "--help"]), 0);

    // Pending changes: 2, from plan and from apply --dry-run, in text and in JSON.
    assert_eq!(code(&["plan", "--env", "dev", s(&file)]), 2);
    assert_eq!(code(&["apply", "--dry-run", "--env", "dev", s(&file)]), 2);
    assert_eq!(
        code(&[
            "apply",
            "--dry-run",
            "--env",
            "dev",
            s(&file),
            "--output",
            "json"
        ]),
        2
    );
    assert_eq!(code(&["apply", "--env", "dev", s(&file)]), 0);
    assert_eq!(code(&["plan", "--env", "dev", s(&file)]), 0);
    assert_eq!(code(&["apply", "--dry-run", "--env", "dev", s(&file)]), 0);
    let rollback = [
        "rollback",
        "--env",
        "dev",
        "--to-revision",
        "1",
        "--dry-run",
    ];
    assert_eq!(code(&rollback), 0, "already revision 1's content");
    let other = write(&m, "c/c.yaml", &proxy("c", "\"http://127.0.0.1:9\""));
    assert_eq!(code(&["apply", "--env", "dev", s(&other)]), 0);
    assert_eq!(code(&rollback), 2);
    assert_eq!(m.revision("dev"), 2, "a dry run changes nothing");

    // A refused token, no token, an unknown environment, a broken file: 1.
    let (c, _, err) = run_code(
        &[
            "plan",
            "--env",
            "dev",
            s(&file),
            "--token",
            "sy_wrong",
            "--manager",
            &m.url,
        ],
        &[("SWITCHYARD_CA", m.ca.as_str())],
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("refused the token"), "{err}");
    let (c, _, err) = run_code(
        &["plan", "--env", "dev", s(&file), "--manager", &m.url],
        &[("SWITCHYARD_CA", m.ca.as_str())],
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("--token-file"), "{err}");
    assert_eq!(code(&["plan", "--env", "nope", s(&file)]), 1);
    let broken = write(&m, "b/b.yaml", "kind: Proxy\nspec: [\n");
    assert_eq!(code(&["plan", "--env", "dev", s(&broken)]), 1);
}

#[test]
fn an_unknown_environment_is_an_error_everywhere() {
    let m = Manager::with_env("dev");
    let file = write(&m, "a/a.yaml", &proxy("a", "\"http://127.0.0.1:9\""));
    let key = write(&m, "key", "s3cret");
    let data = m.data();
    for args in [
        &["status", "--env", "nope"][..],
        &["audit", "--env", "nope"],
        &["dump", "--env", "nope"],
        &["plan", "--env", "nope", s(&file)],
        &["apply", "--env", "nope", s(&file)],
        &["rollback", "--env", "nope", "--to-revision", "1"],
        &[
            "credential",
            "set",
            "--env",
            "nope",
            "k",
            "--from-file",
            s(&key),
        ],
        &["promote", "--from", "nope", "--to", "dev"],
        &["promote", "--from", "dev", "--to", "nope"],
        &["env", "delete", "nope"],
    ] {
        let (code, out, err) = m.code(args, &[]);
        assert_eq!(code, 1, "switchyard {args:?}: {out}{err}");
        assert!(
            err.contains("environment nope does not exist on the Manager")
                && err.contains("switchyard env create nope"),
            "switchyard {args:?}: {err}"
        );
    }
    // A token for it cannot be made either, with the API or straight in the store.
    let (code, _, err) = run_code(
        &[
            "manager",
            "token",
            "create",
            "--data",
            s(&data),
            "--role",
            "worker",
            "--env",
            "nope",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("unknown environment \"nope\""), "{err}");
}

#[test]
fn tokens_are_listed_and_revoked_from_a_token_file() {
    let m = Manager::with_env("dev");
    let admin_file = write(&m, "admin.token", &format!("{}\n", m.admin));
    let ci = m.token(&["--role", "deployer", "--env", "dev", "--name", "ci"]);
    let env = [
        ("SWITCHYARD_MANAGER", m.url.as_str()),
        ("SWITCHYARD_CA", m.ca.as_str()),
        ("SWITCHYARD_TOKEN_FILE", s(&admin_file)),
    ];

    let (code, out, err) = run_code(&["token", "list"], &env);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{out}"
    );
    let ci_line = lines.iter().find(|l| l.contains(" ci ")).unwrap();
    assert!(
        ci_line.contains("deployer") && ci_line.contains("dev") && ci_line.ends_with("active"),
        "{out}"
    );
    let (code, json, _) = run_code(&["token", "list", "--output", "json"], &env);
    assert_eq!(code, 0);
    assert!(
        !json.contains(&ci) && !json.contains(&m.admin) && !json.contains("hash"),
        "{json}"
    );
    let tokens: serde_json::Value = serde_json::from_str(&json).unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The deployer works, then is revoked, then is refused at once.
    assert_eq!(m.code_as(&ci, &["status", "--env", "dev"], &[]).0, 0);
    let (code, out, err) = run_code(&["token", "revoke", &id], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("token {id} (\"ci\", deployer) revoked at 20")),
        "{out}"
    );
    let (code, _, err) = m.code_as(&ci, &["status", "--env", "dev"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refused the token (unknown or revoked token)"),
        "{err}"
    );
    let (_, out, _) = run_code(&["token", "list"], &env);
    assert!(
        out.lines()
            .any(|l| l.contains(" ci ") && l.contains("revoked 20")),
        "{out}"
    );
    // Again: nothing changes; an unknown id and the token in use are refused.
    assert_eq!(run_code(&["token", "revoke", &id], &env).0, 0);
    let (code, _, err) = run_code(&["token", "revoke", "tok_nope"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("no token has id \"tok_nope\""), "{err}");
    let own = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "bootstrap-admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, err) = run_code(&["token", "revoke", &own], &env);
    assert_eq!(code, 1);
    assert!(err.contains("the one making this request"), "{err}");
}

#[test]
fn secrets_come_from_files_and_stay_off_command_lines() {
    let m = Manager::with_env("dev");
    let worker_token = m.token(&["--role", "worker", "--env", "dev", "--name", "w"]);
    let token_file = write(&m, "worker.token", &format!("  {worker_token}\n"));
    let cache = m.dir().join("cache");
    let worker = Proc::spawn(&[
        "worker",
        "--manager",
        &m.url,
        "--manager-ca",
        &m.ca,
        "--env",
        "dev",
        "--token-file",
        s(&token_file),
        "--worker-id",
        "w-file",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--cache-dir",
        s(&cache),
        "--access-log",
        "off",
    ]);
    worker.wait_log("worker listening");
    wait_until("the worker is connected", || m.connected("dev", "w-file"));
    // Nothing in `ps` shows it.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", worker.child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("--token-file") && !cmdline.contains(&worker_token),
        "{cmdline}"
    );

    // Careless input: both ways at once, an empty file, a missing one; each names the file
    // or the flags, never the secret.
    let env = [
        ("SWITCHYARD_MANAGER", m.url.as_str()),
        ("SWITCHYARD_CA", m.ca.as_str()),
    ];
    let admin_file = write(&m, "admin.token", &m.admin);
    let (code, _, err) = run_code(
        &[
            "status",
            "--env",
            "dev",
            "--token",
            &m.admin,
            "--token-file",
            s(&admin_file),
        ],
        &env,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("give --token (SWITCHYARD_TOKEN) or --token-file"),
        "{err}"
    );
    let empty = write(&m, "empty.token", "\n");
    let (code, _, err) = run_code(&["status", "--env", "dev", "--token-file", s(&empty)], &env);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("--token-file {}: the file is empty", s(&empty))),
        "{err}"
    );
    let (code, _, err) = run_code(
        &[
            "status",
            "--env",
            "dev",
            "--token-file",
            s(&m.dir().join("missing")),
        ],
        &env,
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot read it"), "{err}");
    let (code, _, err) = run_code(
        &["status", "--env", "dev", "--token-file", s(&admin_file)],
        &env,
    );
    assert_eq!(code, 0, "{err}");

    // The Manager's sealing key too.
    let key_file = write(&m, "secret.key", &"ab".repeat(32));
    let (code, _, err) = run_code(
        &[
            "manager",
            "--data",
            s(&m.dir().join("d2")),
            "--listen",
            "127.0.0.1:0",
            "--secret-key",
            &"cd".repeat(32),
            "--secret-key-file",
            s(&key_file),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("give --secret-key (SWITCHYARD_SECRET_KEY) or --secret-key-file"),
        "{err}"
    );
}

#[test]
fn an_environment_with_workers_is_deleted_only_when_forced() {
    let m = Manager::with_env("qa");
    let file = write(&m, "a/a.yaml", &proxy("a", "\"http://127.0.0.1:9\""));
    m.ok(&["apply", "--env", "qa", s(&file)], &[]);
    let _worker = m.worker("qa", "qa-1");
    wait_until("the worker is connected", || m.connected("qa", "qa-1"));

    let (code, _, err) = m.code(&["env", "delete", "qa"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("1 Worker(s) are connected")
            && err.contains("--force")
            && err.contains("qa-1"),
        "{err}"
    );
    assert_eq!(m.revision("qa"), 1);

    let out = m.ok(&["env", "delete", "qa", "--force"], &[]);
    assert!(
        out.contains("environment qa deleted (it was at revision 1: 1 entities, 1 revisions)"),
        "{out}"
    );
    assert!(
        out.contains("keep serving") && out.contains("qa-1"),
        "{out}"
    );
    let trail = m.json(&["audit", "--env", "qa"]);
    assert_eq!(trail[0]["operation"], "delete-env", "{trail}");
    let (code, _, err) = m.code(&["status", "--env", "qa"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("environment qa does not exist"), "{err}");
}

/// Accepts one connection, reads one request whole (head and `content-length` body), and
/// hangs up without answering: what a client sees when the Manager dies after committing.
fn hang_up_after_one_request() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reader = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        head
    });
    (url, reader)
}

#[test]
fn a_write_whose_answer_never_came_says_the_outcome_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    std::fs::write(&file, proxy("a", "\"http://127.0.0.1:9\"")).unwrap();

    let (url, request) = hang_up_after_one_request();
    let (code, _, err) = run_code(
        &[
            "apply",
            "--env",
            "prod",
            s(&file),
            "--manager",
            &url,
            "--token",
            "sy_t",
        ],
        &[],
    );
    assert!(
        request
            .join()
            .unwrap()
            .starts_with("POST /v1/envs/prod/apply")
    );
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: the outcome is unknown: the request reached the Manager"),
        "{err}"
    );
    assert!(
        err.contains("`switchyard apply` is idempotent, so re-running it is safe"),
        "{err}"
    );
    assert!(
        err.contains("check with `switchyard status --env prod`"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");

    let (url, request) = hang_up_after_one_request();
    let (code, _, err) = run_code(
        &["env", "create", "qa", "--manager", &url, "--token", "sy_t"],
        &[],
    );
    request.join().unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("the outcome is unknown") && err.contains("env create` is safe"),
        "{err}"
    );

    // A connection refused is not ambiguous: nothing was sent.
    let nowhere = format!("http://{}", closed_port());
    let (code, _, err) = run_code(
        &[
            "apply",
            "--env",
            "prod",
            s(&file),
            "--manager",
            &nowhere,
            "--token",
            "sy_t",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach the Manager") && err.contains("nothing was sent"),
        "{err}"
    );
    assert!(!err.contains("outcome"), "{err}");
}

/// A URL nothing listens on: a port the system gave, closed again.
fn closed_port() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn several_managers_the_first_that_can_be_reached_takes_the_command() {
    let m = Manager::with_env("dev");
    let nowhere = format!("http://{}", closed_port());
    let nowhere_tls = format!("https://{}", closed_port());
    let list = format!("{nowhere},{}", m.url);

    // Comma-separated: the dead one is skipped (nothing was sent to it).
    let out = m.ok(&["status", "--env", "dev", "--manager", &list], &[]);
    assert!(out.contains("dev"), "{out}");
    // The flag repeated, for a write.
    let a = write(&m, "a/a.yaml", &proxy("a", "\"http://127.0.0.1:9\""));
    let args = [
        "apply",
        "--env",
        "dev",
        s(&a),
        "--manager",
        &nowhere_tls,
        "--manager",
        &m.url,
    ];
    m.ok(&args, &[]);
    assert_eq!(m.revision("dev"), 1);
    // SWITCHYARD_MANAGER holds a list as well.
    let out = m.ok(
        &["status", "--env", "dev"],
        &[("SWITCHYARD_MANAGER", &list)],
    );
    assert!(out.contains("dev"), "{out}");

    // A write that reached a Manager whose answer never came is not sent to the next one:
    // the outcome is unknown, and said so, as with one Manager.
    let b = write(&m, "b/b.yaml", &proxy("b", "\"http://127.0.0.1:9\""));
    let (lost, request) = hang_up_after_one_request();
    let both = format!("{lost},{}", m.url);
    let (code, _, err) = m.code(&["apply", "--env", "dev", s(&b), "--manager", &both], &[]);
    assert!(
        request
            .join()
            .unwrap()
            .starts_with("POST /v1/envs/dev/apply")
    );
    assert_eq!(code, 1);
    assert!(err.contains("the outcome is unknown"), "{err}");
    assert_eq!(m.revision("dev"), 1, "not replayed to the other Manager");

    // None can be reached: one line naming every URL tried and why.
    let dead = format!("{nowhere},{nowhere_tls}");
    let err = m.fails(&["status", "--env", "dev", "--manager", &dead], &[]);
    assert!(
        err.contains("none of the 2 Managers could be reached, nothing was sent"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{nowhere}: cannot reach it"))
            && err.contains(&format!("{nowhere_tls}: cannot reach it")),
        "{err}"
    );
    // A list with nothing in it is refused, naming the flag.
    let err = m.fails(&["status", "--env", "dev", "--manager", ","], &[]);
    assert!(err.contains("--manager: give at least one URL"), "{err}");
}

#[test]
fn unquoted_variables_fill_plain_values_that_read_back_the_same() {
    let m = Manager::with_env("dev");
    let env_doc = |upstream: &str| {
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: {{ name: dev }}\nspec:\n  variables: {{ UPSTREAM: \"{upstream}\" }}\n"
        )
    };
    // As Helm and envsubst users write them: unquoted, a URL with a port.
    let files = m.dir().join("files");
    write(&m, "files/env.yaml", &env_doc("http://10.0.0.1:8080"));
    write(&m, "files/a.yaml", &proxy("a", "${UPSTREAM}"));
    write(
        &m,
        "files/b.yaml",
        &proxy("b", "${env:SWITCHYARD_B_UPSTREAM}"),
    );
    let with_b = [("SWITCHYARD_B_UPSTREAM", "http://10.0.0.2:9090")];
    m.ok(&["apply", "--env", "dev", s(&files)], &with_b);
    let listed: Vec<switchyard_api::admin::EntityView> = m.get_200("/v1/envs/dev/entities");
    let url_of = |name: &str| {
        listed.iter().find(|e| e.name == name).unwrap().manifest["spec"]["upstream"]["targets"][0]["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(url_of("a"), "http://10.0.0.1:8080");
    assert_eq!(url_of("b"), "http://10.0.0.2:9090");

    // A value that would read differently unquoted is refused, naming the fix as written.
    write(&m, "files/env.yaml", &env_doc("http://x/#top: a"));
    let (code, _, err) = m.code(&["plan", "--env", "dev", s(&files)], &with_b);
    assert_eq!(code, 1);
    assert!(err.contains("a.yaml:"), "names the file: {err}");
    assert!(
        err.contains("`${UPSTREAM}`: the value contains `: `"),
        "{err}"
    );
    assert!(
        err.contains("quote the reference (\"${UPSTREAM}\")"),
        "{err}"
    );
    assert!(!err.contains("#top"), "the value is not shown: {err}");
    write(&m, "files/env.yaml", &env_doc("http://10.0.0.1:8080"));
    let (code, _, err) = m.code(
        &["plan", "--env", "dev", s(&files)],
        &[("SWITCHYARD_B_UPSTREAM", "*not-a-url")],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("quote the reference (\"${env:SWITCHYARD_B_UPSTREAM}\")"),
        "{err}"
    );
}

/// The Manager's log lines up to and including the admin request line of `GET path`.
fn log_through_request(m: &Manager, path: &str) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    loop {
        lines.extend(m.proc.log_until("admin request"));
        let last = &lines[lines.len() - 1]["fields"];
        if last["path"] == path && last["method"] == "GET" {
            return lines;
        }
    }
}

#[test]
fn failed_authentications_are_logged_once_with_the_token_id_never_the_secret() {
    // An unknown token: no id to name; a fingerprint of it tells attempts apart.
    let m = Manager::with_env("dev");
    let wrong = "sy_0123456789abcdef_wrong";
    for _ in 0..3 {
        let (code, _, _) = m.code_as(wrong, &["status", "--env", "dev"], &[]);
        assert_eq!(code, 1);
    }
    // A request that passes, after them: its line ends what the refusals logged.
    let _: serde_json::Value = m.get_200("/v1/envs");
    let lines = log_through_request(&m, "/v1/envs");
    let all = serde_json::to_string(&lines).unwrap();
    assert!(!all.contains(wrong) && !all.contains(&m.admin), "{all}");
    let refused: Vec<_> = lines
        .iter()
        .map(|l| &l["fields"])
        .filter(|f| f["message"] == "authentication failed")
        .collect();
    // Three refused commands, one line: the others are counted in the next one.
    assert_eq!(refused.len(), 1, "{all}");
    let line = refused[0];
    assert_eq!(
        (line["reason"].as_str(), line["token"].as_str()),
        (Some("unknown"), Some("-")),
        "{line}"
    );
    let fingerprint = line["fingerprint"].as_str().unwrap();
    assert!(
        fingerprint.len() == 12 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    assert_eq!(line["peer"], "127.0.0.1", "{line}");
    // Refused requests get no request line of their own (that would bypass the rate limit).
    assert!(
        !lines
            .iter()
            .any(|l| l["fields"]["message"] == "admin request" && l["fields"]["status"] == 401),
        "{all}"
    );
    let ok = &lines[lines.len() - 1];
    assert_eq!(ok["target"], "switchyard::admin", "{ok}");
    let ok = &ok["fields"];
    assert_eq!(ok["status"], 200, "{ok}");
    assert!(ok["actor"].as_str().unwrap().contains("tok_"), "{ok}");
    assert!(ok["duration_ms"].as_f64().is_some(), "{ok}");
    assert!(
        ok["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ok}"
    );

    // A revoked token is named by its public id. (Another Manager: lines are rate-limited
    // per peer, and this test has one address.)
    let m = Manager::with_env("dev");
    let ci = m.token(&["--role", "viewer", "--name", "ci"]);
    let tokens: Vec<switchyard_api::records::TokenRecord> = m.get_200("/v1/tokens");
    let id = tokens.iter().find(|t| t.name == "ci").unwrap().id.clone();
    m.ok(&["token", "revoke", &id], &[]);
    let (code, _, _) = m.code_as(&ci, &["status", "--env", "dev"], &[]);
    assert_eq!(code, 1);
    let line = m.proc.wait_log("authentication failed");
    assert_eq!(
        (line["reason"].as_str(), line["token"].as_str()),
        (Some("revoked"), Some(id.as_str())),
        "{line}"
    );
    assert!(!line.to_string().contains(&ci), "{line}");
}

/// A reader that goes away (`switchyard status | head -1`) ends the command quietly: no
/// panic, exit 0.
#[test]
fn output_into_a_closed_pipe_is_not_a_panic() {
    let m = Manager::with_env("dev");
    let mut child = m.cli_child(&["status", "--env", "dev"]);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
