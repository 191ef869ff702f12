//! `portcullis admin …` against a real server: a tiny company imported into a temp data dir, a
//! bootstrap token from `portcullis token create`, then the CLI as an operator uses it.

use crate::support::{Server, path, run, run_ok};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Six users (erin inactive), two groups (ops holds Read Only), one policy allowing github to all.
fn company(root: &Path) -> PathBuf {
    let export = root.join("export");
    fs::create_dir_all(&export).unwrap();
    let users = [
        ("u1", "alice@example.com", "Alice Admin", true),
        ("u2", "bob@example.com", "Bob Builder", true),
        ("u3", "carol@example.com", "Carol Chen", true),
        ("u4", "dave@example.com", "Dave Doe", true),
        ("u5", "erin@example.com", "Erin Early", false),
        ("u6", "frank@example.com", "Frank Fox", true),
    ];
    let lines: Vec<String> = users
        .iter()
        .map(|(id, email, name, active)| {
            serde_json::json!({
                "id": id, "email": email, "name": name, "created": "2026-01-05T12:34:56Z",
                "active": active, "locked": false, "mfa": true,
            })
            .to_string()
        })
        .collect();
    fs::write(export.join("users.jsonl"), lines.join("\n") + "\n").unwrap();
    fs::write(
        export.join("groups.jsonl"),
        concat!(
            r#"{"id":"g-eng","name":"engineering","roles":[],"members":["u2","u3"]}"#,
            "\n",
            r#"{"id":"g-ops","name":"ops","roles":["read_only"],"members":["u4"]}"#,
            "\n"
        ),
    )
    .unwrap();
    fs::write(
        export.join("policies.jsonl"),
        concat!(
            r#"{"id":"pol-1","name":"github for everyone","connector":"github","tools":["*"],"#,
            r#""scope":{"all_users":true,"users":[],"groups":[]},"action":"ALLOW","enabled":true}"#,
            "\n"
        ),
    )
    .unwrap();
    let data = root.join("data");
    run_ok(&["import", "--data-dir", path(&data), path(&export)]);
    data
}

/// `portcullis token create` on the store; returns the secret (the last line of stdout).
fn bootstrap_token(data: &Path, user: &str, role: &str) -> String {
    let out = run_ok(&[
        "token",
        "create",
        "--data-dir",
        path(data),
        "--user",
        user,
        "--role",
        role,
    ]);
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("pcl_"), "{out}");
    secret
}

/// The admin CLI pointed at one server with one token.
struct Admin<'a> {
    server: &'a Server,
    token: String,
}

impl Admin<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "admin",
            "--server",
            &self.server.addr,
            "--token",
            &self.token,
        ];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "admin {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            !stdout.contains(&self.token),
            "the token was printed: {stdout}"
        );
        stdout
    }

    /// The JSON document a `--json` command prints.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Stderr of a command that must fail.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "admin {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            !stderr.contains(&self.token),
            "the token was printed: {stderr}"
        );
        stderr
    }
}

/// `portcullis check` for one user and github tool: `DENY  reason USER_LOCKED …` and the like.
fn check(server: &Server, user: &str) -> String {
    run_ok(&[
        "check",
        "--addr",
        &server.addr,
        "--user",
        user,
        "--connector",
        "github",
        "--tool",
        "create_issue",
    ])
}

fn header(text: &str) -> Vec<&str> {
    text.lines().next().unwrap().split_whitespace().collect()
}

#[test]
fn admin_cli_lists_locks_unlocks_and_audits_users() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    let secret = bootstrap_token(&data, "alice@example.com", "admin");
    let read_only = bootstrap_token(&data, "frank@example.com", "read-only");
    let server = Server::start(&data);

    // The bootstrap command refuses a store a running server holds.
    let output = run(&[
        "token",
        "create",
        "--data-dir",
        path(&data),
        "--user",
        "alice@example.com",
        "--role",
        "admin",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("held by a running server"), "{stderr}");

    let admin = Admin {
        server: &server,
        token: secret,
    };
    let me = admin.json(&["whoami"]);
    assert_eq!(me["user_id"], "u1");
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    assert!(admin.ok(&["whoami"]).contains("alice@example.com"));

    // A table with a header and one row per user, by email.
    let table = admin.ok(&["users", "list"]);
    assert_eq!(
        header(&table),
        ["EMAIL", "NAME", "STATUS", "MFA", "CREATED", "ID"]
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "{table}");
    assert!(
        rows[0].starts_with("alice@example.com  Alice Admin"),
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("erin@example.com") && r.contains("inactive")),
        "{table}"
    );

    let listed = admin.json(&["users", "list"]);
    assert_eq!(listed["users"].as_array().unwrap().len(), 6, "{listed}");
    assert_eq!(listed["more"], false);
    assert_eq!(listed["users"][0]["created_at"], "2026-01-05T12:34:56Z");
    // Filters, sorting and a cut at --limit.
    let inactive = admin.json(&["users", "list", "--status", "inactive"]);
    assert_eq!(
        inactive["users"][0]["email"], "erin@example.com",
        "{inactive}"
    );
    assert_eq!(inactive["users"].as_array().unwrap().len(), 1);
    let found = admin.json(&["users", "list", "--search", "CAROL"]);
    assert_eq!(found["users"][0]["id"], "u3", "{found}");
    let cut = admin.json(&["users", "list", "--limit", "2", "--desc"]);
    let emails: Vec<&str> = cut["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["frank@example.com", "erin@example.com"]);
    assert_eq!(cut["more"], true);
    // --all follows page tokens, here two rows at a time.
    let all = admin.json(&["users", "list", "--all", "--page-size", "2"]);
    assert_eq!(all["users"].as_array().unwrap().len(), 6, "{all}");
    let paged = admin.json(&["users", "list", "--limit", "5", "--page-size", "2"]);
    assert_eq!(paged["users"].as_array().unwrap().len(), 5, "{paged}");
    assert_eq!(paged["users"][4]["email"], "erin@example.com");

    // Lock bob: decisions for him are Deny at once; unlock: allowed again.
    assert!(check(&server, "bob@example.com").starts_with("ALLOW"));
    let locked = admin.ok(&[
        "users",
        "lock",
        "bob@example.com",
        "--reason",
        "laptop stolen",
    ]);
    assert!(
        locked.starts_with("locked user u2 (bob@example.com) at revision "),
        "{locked}"
    );
    assert!(
        check(&server, "bob@example.com").starts_with("DENY  reason USER_LOCKED"),
        "{}",
        check(&server, "bob@example.com")
    );
    let bob = admin.json(&["users", "get", "u2"]);
    assert_eq!(bob["user"]["status"], "locked", "{bob}");
    assert_eq!(bob["user"]["lock"]["reason"], "laptop stolen");
    assert_eq!(bob["groups"][0]["group_id"], "g-eng");
    assert_eq!(bob["decisions"][0]["decision"], "deny", "{bob}");
    assert_eq!(bob["decisions"][0]["reason"], "user-locked");
    let text = admin.ok(&["users", "get", "bob@example.com"]);
    assert!(text.contains("locked (by u1 at "), "{text}");
    assert!(text.contains("laptop stolen"), "{text}");
    let locked_only = admin.json(&["users", "list", "--status", "locked"]);
    assert_eq!(locked_only["users"][0]["id"], "u2");

    let unlocked = admin.json(&["users", "unlock", "bob@example.com"]);
    assert_eq!(unlocked["user"]["status"], "active");
    assert!(unlocked["revision"].as_u64().unwrap() > 1);
    assert!(check(&server, "u2").starts_with("ALLOW"));

    // The audit log shows the lock, by alice, newest first.
    let audit = admin.ok(&["audit", "--target", "u2"]);
    assert_eq!(
        header(&audit),
        [
            "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REVISION", "DETAIL"
        ]
    );
    let events: Vec<&str> = audit.lines().skip(1).collect();
    assert_eq!(events.len(), 2, "{audit}");
    assert!(events[0].contains("user.unlock"), "{audit}");
    assert!(
        events[1].contains("u1")
            && events[1].contains("user.lock")
            && events[1].contains("laptop stolen"),
        "{audit}"
    );
    let audit = admin.json(&["audit", "--actor", "u1", "--limit", "1"]);
    assert_eq!(audit["events"][0]["action"], "user.unlock", "{audit}");
    assert_eq!(audit["events"][0]["before"]["id"], "u2", "{audit}");
    assert_eq!(audit["more"], true);

    // A Read Only token may read but not write.
    let reader = Admin {
        server: &server,
        token: read_only,
    };
    assert_eq!(
        reader.json(&["users", "list"])["users"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let refused = reader.fails(&["users", "lock", "carol@example.com", "--reason", "x"]);
    assert!(
        refused.starts_with(
            "error: permission denied: LockUser changes data and needs the Admin role"
        ),
        "{refused}"
    );
    assert!(check(&server, "carol@example.com").starts_with("ALLOW"));

    // Errors name the gRPC status.
    let missing = admin.fails(&["users", "get", "nobody@example.com"]);
    assert!(missing.contains("error: not found: "), "{missing}");
    let wrong = Admin {
        server: &server,
        token: "pcl_not_a_real_token".into(),
    };
    let stderr = wrong.fails(&["users", "list"]);
    assert!(stderr.contains("error: unauthenticated: "), "{stderr}");
    let output = run(&["admin", "--server", &server.addr, "users", "list"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no admin API token"));
}
