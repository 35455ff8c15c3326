//! The security model end to end, through the real binary, its HTTP API and
//! the CLI: every endpoint called without a token, with a malformed and a
//! wrong token, with another tenant's token and with each role, asserting
//! the exact status; tenant scoping of reads, listings, cancels,
//! submissions and reservations; revocation; the audit log; `auth.mode =
//! "none"` refused off loopback; HTTPS with a certificate made here; JWTs;
//! and the per-tenant rate limit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::common::{binary, free_port, spawn_run};

/// Kills the child when dropped, so a failing test leaves no process.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking client that can present a bearer token.
struct Caller {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

/// An answer: status, `Retry-After`, body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: serde_json::Value,
}

impl Caller {
    fn new(base: &str, client: reqwest::Client) -> Self {
        Caller {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client,
            base: base.to_string(),
        }
    }

    fn plain(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Caller::new(base, client)
    }

    fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&str>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        self.runtime.block_on(async {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = response.text().await.unwrap_or_default();
            Answer {
                status,
                retry_after,
                body: serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            }
        })
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.runtime.block_on(async {
                self.client
                    .get(format!("{}/healthz", self.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "{} never came up", self.base);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tidewater(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("TIDEWATER_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run tidewater")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "tidewater failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn write_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let text = format!(
        r#"
workers = 1
[http]
listen = "127.0.0.1:{port}"
{extra}
[store]
kind = "embedded"
path = "{store}"
[[executors]]
id = "e1"
cpu_milli = 4000
memory_mib = 4096
"#,
        store = dir.join("store.redb").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Mints a token on the store of `config` with the CLI (before the
/// pipeline runs): how the first admin token is made.
fn mint_offline(dir: &Path, config: &Path, tenant: &str, role: &str) -> String {
    let out = tidewater(
        dir,
        &[
            "token",
            "create",
            "--config",
            config.to_str().expect("utf-8"),
            "--tenant",
            tenant,
            "--role",
            role,
            "--name",
            "bootstrap",
        ],
    );
    stdout_json(&out)["token"]
        .as_str()
        .expect("token printed")
        .to_string()
}

fn mint(api: &Caller, admin: &str, tenant: &str, role: &str) -> (String, String) {
    let answer = api.call(
        Method::POST,
        "/v1/tokens",
        Some(admin),
        Some(&serde_json::json!({"tenant": tenant, "role": role, "name": format!("{tenant}-{role}")}).to_string()),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    (
        answer.body["token"].as_str().expect("token").to_string(),
        answer.body["id"].as_str().expect("id").to_string(),
    )
}

fn sleep_task(id: &str, tenant: Option<&str>) -> String {
    let mut task = serde_json::json!({
        "id": id, "kind": "sleep", "payload": {"ms": 1},
        "resources": {"cpu_milli": 100, "memory_mib": 16}
    });
    if let Some(tenant) = tenant {
        task["tenant"] = tenant.into();
    }
    task.to_string()
}

fn wait_final(api: &Caller, token: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = api.call(Method::GET, &format!("/v1/tasks/{id}"), Some(token), None);
        if answer.status == 200 && answer.body["state"] == "succeeded" {
            return answer.body;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never succeeded: {}",
            answer.body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_endpoint_answers_each_caller_with_the_exact_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let audit = dir.path().join("audit.jsonl");
    let config = write_config(
        dir.path(),
        port,
        &format!(
            "[auth]\nmode = \"token\"\naudit_log = \"{}\"\nrevalidate_ms = 0",
            audit.display()
        ),
    );
    let admin = mint_offline(dir.path(), &config, "ops", "admin");
    let _run = Reaped(spawn_run(dir.path(), &config, &[], "run.log"));
    let base = format!("http://127.0.0.1:{port}");
    let api = Caller::plain(&base);
    api.wait_ready();

    let (sub_a, _) = mint(&api, &admin, "a", "submitter");
    let (sub_b, sub_b_id) = mint(&api, &admin, "b", "submitter");
    let (agent, _) = mint(&api, &admin, "fleet", "agent");
    // One token through the CLI, as an admin would.
    let out = tidewater(
        dir.path(),
        &[
            "token", "create", "--url", &base, "--token", &admin, "--tenant", "ops", "--role",
            "operator",
        ],
    );
    let operator = stdout_json(&out)["token"]
        .as_str()
        .expect("token")
        .to_string();

    // A task of tenant a, for the scoped calls.
    let answer = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&sub_a),
        Some(&sleep_task("a-1", None)),
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(wait_final(&api, &sub_a, "a-1")["tenant"], "a");

    // Every endpoint, with each caller's exact status.
    let wrong = format!("tw_{}_{}", "0123456789abcdef", "ab".repeat(32));
    let mut n = 0u32;
    let mut next_id = || {
        n += 1;
        format!("t{n}")
    };
    let join = r#"{"id":"x-exec","cpu_milli":1000,"memory_mib":512}"#;
    let reserve_a = r#"{"id":"r-a","tenant":"a","resources":{"cpu_milli":100,"memory_mib":16},"expires_in_ms":60000}"#;
    let mint_body = r#"{"tenant":"z","role":"submitter"}"#;
    // (method, path, body, [submitter a, agent, operator, admin])
    type Row<'a> = (Method, String, Option<String>, [u16; 4]);
    let rows: Vec<Row> = vec![
        (Method::GET, "/v1/tasks".into(), None, [200, 403, 200, 200]),
        (
            Method::GET,
            "/v1/tasks/a-1".into(),
            None,
            [200, 403, 200, 200],
        ),
        (
            Method::POST,
            "/v1/tasks".into(),
            Some(sleep_task(&next_id(), None)),
            [202, 403, 202, 202],
        ),
        (
            Method::DELETE,
            "/v1/tasks/a-1".into(),
            None,
            [409, 403, 409, 409],
        ),
        (Method::GET, "/v1/stats".into(), None, [403, 403, 200, 200]),
        (
            Method::GET,
            "/v1/executors".into(),
            None,
            [403, 403, 200, 200],
        ),
        (
            Method::POST,
            "/v1/executors".into(),
            Some(join.into()),
            [403, 202, 202, 202],
        ),
        (
            Method::POST,
            "/v1/executors/x-exec/heartbeat".into(),
            None,
            [403, 202, 202, 202],
        ),
        (
            Method::GET,
            "/v1/reservations".into(),
            None,
            [403, 403, 200, 200],
        ),
        (
            Method::POST,
            "/v1/reservations".into(),
            Some(reserve_a.into()),
            [202, 403, 202, 202],
        ),
        (Method::GET, "/v1/models".into(), None, [403, 403, 200, 200]),
        (Method::GET, "/metrics".into(), None, [403, 403, 200, 200]),
        (
            Method::GET,
            "/v1/queries".into(),
            None,
            [403, 403, 200, 200],
        ),
        (Method::GET, "/v1/alerts".into(), None, [403, 403, 200, 200]),
        (Method::GET, "/v1/tokens".into(), None, [403, 403, 403, 200]),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(mint_body.into()),
            [403, 403, 403, 201],
        ),
        (
            Method::DELETE,
            "/v1/executors/x-exec".into(),
            None,
            [403, 202, 202, 202],
        ),
    ];
    let callers = [
        ("submitter", &sub_a),
        ("agent", &agent),
        ("operator", &operator),
        ("admin", &admin),
    ];
    let mut refused = 0;
    let mut unauthorized_calls = 0;
    for (method, path, body, expected) in &rows {
        for credential in [None, Some("not-a-token"), Some(wrong.as_str())] {
            let answer = api.call(method.clone(), path, credential, body.as_deref());
            unauthorized_calls += 1;
            assert_eq!(
                answer.status, 401,
                "{method} {path} with {credential:?}: {}",
                answer.body
            );
            if answer.status == 401 {
                refused += 1;
            }
        }
        for ((role, token), want) in callers.iter().zip(expected) {
            // A submission needs a fresh id per caller.
            let body = match (method, path.as_str()) {
                (&Method::POST, "/v1/tasks") => Some(sleep_task(&next_id(), None)),
                _ => body.clone(),
            };
            let answer = api.call(method.clone(), path, Some(token), body.as_deref());
            if *want == 403 {
                unauthorized_calls += 1;
                if answer.status == 403 {
                    refused += 1;
                }
            }
            assert_eq!(
                answer.status, *want,
                "{method} {path} as {role}: {}",
                answer.body
            );
        }
    }
    assert_eq!(
        refused, unauthorized_calls,
        "every unauthorized call refused"
    );
    // Public: liveness and the dashboard's files need no token.
    assert_eq!(api.call(Method::GET, "/healthz", None, None).status, 200);
    assert_eq!(api.call(Method::GET, "/ui/", None, None).status, 200);

    // Tenant scoping: b sees, cancels and reuses nothing of a's.
    assert_eq!(
        api.call(Method::GET, "/v1/tasks/a-1", Some(&sub_b), None)
            .status,
        404
    );
    assert_eq!(
        api.call(Method::DELETE, "/v1/tasks/a-1", Some(&sub_b), None)
            .status,
        404
    );
    let reuse = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&sub_b),
        Some(&sleep_task("a-1", None)),
    );
    assert_eq!(reuse.status, 409, "{}", reuse.body);
    assert!(
        reuse.body.get("task").is_none(),
        "a's record leaked: {}",
        reuse.body
    );
    let other = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&sub_b),
        Some(&sleep_task("b-x", Some("a"))),
    );
    assert_eq!(other.status, 403, "{}", other.body);
    assert_eq!(
        api.call(Method::GET, "/v1/tasks?tenant=a", Some(&sub_b), None)
            .status,
        403
    );
    let own = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&sub_b),
        Some(&sleep_task("b-1", Some("b"))),
    );
    assert_eq!(own.status, 202, "{}", own.body);
    wait_final(&api, &sub_b, "b-1");
    let listed = api.call(Method::GET, "/v1/tasks?limit=1000", Some(&sub_b), None);
    let tenants: Vec<&str> = listed.body["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["tenant"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(tenants, vec!["b"], "b lists only its own: {}", listed.body);
    let all = api.call(Method::GET, "/v1/tasks?limit=1000", Some(&operator), None);
    assert!(all.body["tasks"].as_array().expect("tasks").len() >= 4);
    let reserve_b = r#"{"id":"r-b","tenant":"a","resources":{"cpu_milli":100,"memory_mib":16},"expires_in_ms":60000}"#;
    assert_eq!(
        api.call(
            Method::POST,
            "/v1/reservations",
            Some(&sub_b),
            Some(reserve_b)
        )
        .status,
        403
    );
    assert_eq!(
        api.call(Method::DELETE, "/v1/reservations/r-a", Some(&sub_b), None)
            .status,
        404
    );
    assert_eq!(
        api.call(Method::GET, "/v1/reservations/r-a", Some(&sub_b), None)
            .status,
        404
    );
    // A bad resubmission of a live id does not end the task holding it.
    let bad = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&sub_b),
        Some(r#"{"id":"a-1","kind":"nope"}"#),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(
        api.call(Method::GET, "/v1/tasks/a-1", Some(&sub_a), None)
            .body["state"],
        "succeeded"
    );
    // A submitter reads its own refused task back.
    let refused_own = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&sub_b),
        Some(r#"{"id":"b-bad","kind":"nope"}"#),
    );
    assert_eq!(refused_own.status, 400);
    let record = api.call(Method::GET, "/v1/tasks/b-bad", Some(&sub_b), None);
    assert_eq!(
        (record.status, record.body["state"].as_str()),
        (200, Some("rejected")),
        "{}",
        record.body
    );

    // Revocation, through the CLI: b's token stops working at once.
    let out = tidewater(
        dir.path(),
        &[
            "token", "revoke", &sub_b_id, "--url", &base, "--token", &admin,
        ],
    );
    assert!(stdout_json(&out)["revoked_at_us"].is_u64());
    assert_eq!(
        api.call(Method::GET, "/v1/tasks", Some(&sub_b), None)
            .status,
        401
    );
    let out = tidewater(
        dir.path(),
        &["token", "list", "--url", &base, "--token", &admin],
    );
    let listed = stdout_json(&out);
    assert!(
        !listed.to_string().contains("argon2"),
        "hashes are not listed"
    );

    // The audit log: who did what, never a token or a payload.
    let text = std::fs::read_to_string(&audit).expect("audit log");
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let submitted = entries
        .iter()
        .find(|e| e["action"] == "submit" && e["tasks"] == serde_json::json!(["a-1"]))
        .expect("a-1's submission audited");
    assert_eq!(submitted["tenant"], "a");
    assert_eq!(submitted["role"], "submitter");
    assert_eq!(submitted["status"], 202);
    assert!(entries
        .iter()
        .any(|e| e["action"] == "manage_tokens" && e["target"] == sub_b_id.as_str()));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "cancel" && e["status"] == 404 && e["tenant"] == "b"));
    for secret in [&admin, &sub_a, &sub_b, &operator, &agent] {
        let tail = secret.rsplit('_').next().expect("secret");
        assert!(!text.contains(tail), "a token secret is in the audit log");
    }
    assert!(!text.contains("\"ms\""), "a payload is in the audit log");
}

#[test]
fn no_authentication_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, auth: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("[http]\nlisten = \"0.0.0.0:8080\"\n{auth}\n"),
        )
        .expect("config");
        path
    };
    let none = write("none.toml", "[auth]\nmode = \"none\"");
    let out = tidewater(
        dir.path(),
        &["config", "validate", none.to_str().expect("utf-8")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.mode") && stderr.contains("loopback"),
        "{stderr}"
    );
    let out = tidewater(
        dir.path(),
        &["run", "--config", none.to_str().expect("utf-8")],
    );
    assert!(!out.status.success(), "run refuses to start");
    // Unset, off loopback: tokens are required.
    let unset = write("unset.toml", "");
    let out = tidewater(
        dir.path(),
        &["config", "validate", unset.to_str().expect("utf-8")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = write("jwt.toml", "[auth]\nmode = \"jwt\"");
    let out = tidewater(
        dir.path(),
        &["config", "validate", jwt.to_str().expect("utf-8")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.jwt"));
}

#[test]
fn the_api_serves_https_with_a_certificate_made_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.pem()).expect("cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("key");
    let config = write_config(
        dir.path(),
        port,
        &format!(
            "[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
            cert_file.display(),
            key_file.display()
        ),
    );
    let _run = Reaped(spawn_run(dir.path(), &config, &[], "run.log"));
    let base = format!("https://localhost:{port}");
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("pem"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let api = Caller::new(&base, trusted);
    api.wait_ready();
    let answer = api.call(
        Method::POST,
        "/v1/tasks",
        None,
        Some(&sleep_task("tls-1", None)),
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    // The CLI, trusting the same certificate.
    let out = tidewater(
        dir.path(),
        &[
            "submit",
            "--url",
            &base,
            "--ca-cert",
            cert_file.to_str().expect("utf-8"),
            "--wait",
            "--json",
            &sleep_task("tls-2", None),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("succeeded"));
    // Without trusting it, and in plain HTTP, nothing is served.
    let untrusted = Caller::plain(&base);
    let refused = untrusted
        .runtime
        .block_on(async { untrusted.client.get(format!("{base}/healthz")).send().await });
    assert!(refused.is_err(), "an unknown certificate is refused");
    let plain = Caller::plain(&format!("http://127.0.0.1:{port}"));
    let answer = plain.runtime.block_on(async {
        plain
            .client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
    });
    assert!(
        answer.map_or(true, |r| !r.status().is_success()),
        "plain HTTP is not served"
    );
}

#[test]
fn jwts_signed_with_the_configured_key_authenticate_and_scope() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let secret = b"an-hmac-secret-of-at-least-32-bytes!!";
    let key_file = dir.path().join("jwt.key");
    std::fs::write(&key_file, secret).expect("key");
    let config = write_config(
        dir.path(),
        port,
        &format!(
            "[auth]\nmode = \"jwt\"\n[auth.jwt]\nalgorithm = \"HS256\"\nkey_file = \"{}\"\nissuer = \"test-idp\"",
            key_file.display()
        ),
    );
    let _run = Reaped(spawn_run(dir.path(), &config, &[], "run.log"));
    let api = Caller::plain(&format!("http://127.0.0.1:{port}"));
    api.wait_ready();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sign = |tenant: &str, role: &str, exp: u64, key: &[u8]| {
        encode(
            &Header::default(),
            &serde_json::json!({"sub": "u", "tenant": tenant, "role": role, "iss": "test-idp", "exp": exp}),
            &EncodingKey::from_secret(key),
        )
        .expect("sign")
    };
    let alice = sign("a", "submitter", now + 600, secret);
    let answer = api.call(
        Method::POST,
        "/v1/tasks",
        Some(&alice),
        Some(&sleep_task("j-1", None)),
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(wait_final(&api, &alice, "j-1")["tenant"], "a");
    let bob = sign("b", "submitter", now + 600, secret);
    assert_eq!(
        api.call(Method::GET, "/v1/tasks/j-1", Some(&bob), None)
            .status,
        404
    );
    assert_eq!(
        api.call(Method::GET, "/v1/stats", Some(&alice), None)
            .status,
        403
    );
    let ops = sign("ops", "operator", now + 600, secret);
    assert_eq!(
        api.call(Method::GET, "/v1/stats", Some(&ops), None).status,
        200
    );
    let expired = sign("a", "submitter", now - 600, secret);
    assert_eq!(
        api.call(Method::GET, "/v1/tasks", Some(&expired), None)
            .status,
        401
    );
    let forged = sign(
        "a",
        "admin",
        now + 600,
        b"not-the-key-not-the-key-not-the-k",
    );
    assert_eq!(
        api.call(Method::GET, "/v1/tasks", Some(&forged), None)
            .status,
        401
    );
    // There are no API tokens to manage in this mode.
    let admin = sign("ops", "admin", now + 600, secret);
    assert_eq!(
        api.call(Method::GET, "/v1/tokens", Some(&admin), None)
            .status,
        409
    );
}

#[test]
fn a_tenant_over_its_rate_is_answered_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        "[limits]\nsubmit_rate_per_s = 2\nsubmit_burst = 5",
    );
    let _run = Reaped(spawn_run(dir.path(), &config, &[], "run.log"));
    let api = Caller::plain(&format!("http://127.0.0.1:{port}"));
    api.wait_ready();
    let submit = |id: &str, tenant: &str| {
        api.call(
            Method::POST,
            "/v1/tasks",
            None,
            Some(&sleep_task(id, Some(tenant))),
        )
    };
    for i in 0..5 {
        assert_eq!(
            submit(&format!("r{i}"), "a").status,
            202,
            "within the burst"
        );
    }
    let over = submit("r5", "a");
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.body["code"], "rate_limited");
    let wait: u64 = over
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=3).contains(&wait), "Retry-After {wait}");
    // Another tenant has its own bucket.
    assert_eq!(submit("other-0", "b").status, 202);
    // A batch larger than the bucket can never pass: said so.
    let batch: Vec<serde_json::Value> = (0..6)
        .map(|i| serde_json::from_str(&sleep_task(&format!("c{i}"), Some("c"))).expect("json"))
        .collect();
    let answer = api.call(
        Method::POST,
        "/v1/tasks",
        None,
        Some(&serde_json::to_string(&batch).expect("json")),
    );
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (429, Some("batch_too_large"))
    );
    // After the wait, a's bucket has room again.
    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(submit("r6", "a").status, 202);
}
