//! `portcullis admin …` against a real server: a tiny company imported into a temp data dir, a
//! bootstrap token from `portcullis token create`, then the CLI as an operator uses it.

use crate::support::{Server, path, run, run_json, run_ok};
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
    crate::support::write_users(&export, &users);
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
/// The company served from a store under `root`, and an admin token of alice's.
fn served_for_alice(root: &std::path::Path) -> (Server, String) {
    let data = company(root);
    let token = bootstrap_token(&data, "alice@example.com", "admin");
    (Server::start(&data), token)
}

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

    /// Stdout and stderr of a command that must succeed.
    fn ok_with_stderr(&self, args: &[&str]) -> (String, String) {
        let output = self.run(args);
        assert!(output.status.success(), "admin {args:?} failed: {output:?}");
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
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
    check_tool(server, user, "github", "create_issue")
}

fn check_tool(server: &Server, user: &str, connector: &str, tool: &str) -> String {
    run_ok(&[
        "check",
        "--addr",
        &server.addr,
        "--user",
        user,
        "--connector",
        connector,
        "--tool",
        tool,
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
    // For scripts: the token's fields and its secret in one document, as `admin tokens create
    // --json` prints them; and a SCIM connection's likewise.
    let made = run_json(&[
        "token",
        "create",
        "--data-dir",
        path(&data),
        "--user",
        "frank@example.com",
        "--name",
        "ci",
        "--expires",
        "90d",
        "--role",
        "read-only",
        "--json",
        "--quiet",
    ]);
    let made_token = &made["token"];
    assert_eq!(
        (
            &made_token["user_id"],
            &made_token["name"],
            &made_token["role"]
        ),
        (&"u6".into(), &"ci".into(), &"read-only".into()),
        "{made}"
    );
    assert_eq!(made_token["created_by"], "cli", "{made}");
    assert!(made_token["expires_at"].as_str().is_some(), "{made}");
    let ci_secret = made["secret"].as_str().unwrap().to_owned();
    assert!(
        ci_secret.starts_with(&format!("pcl_{}_", made_token["id"].as_str().unwrap())),
        "{made}"
    );
    let scim = run_json(&[
        "scim-token",
        "create",
        "--data-dir",
        path(&data),
        "--name",
        "okta",
        "--json",
    ]);
    assert_eq!(scim["connection"]["name"], "okta", "{scim}");
    assert!(scim["secret"].as_str().unwrap().len() > 32, "{scim}");
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
    // The tokens made with --json work, and are what the server lists.
    let ci = Admin {
        server: &server,
        token: ci_secret,
    };
    assert_eq!(ci.json(&["whoami"])["user_id"], "u6");
    let connections = admin.json(&["scim-connections", "list"]);
    assert_eq!(
        connections["connections"][0], scim["connection"],
        "{connections}"
    );
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
    assert_eq!(bob["decisions"][0]["decision"], "DENY", "{bob}");
    assert_eq!(bob["decisions"][0]["reason"], "USER_LOCKED");
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

fn column<'v>(list: &'v Value, key: &str, field: &str) -> Vec<&'v str> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` in {list}"))
        .iter()
        .map(|row| row[field].as_str().unwrap())
        .collect()
}

#[test]
fn admin_cli_creates_fills_empties_and_deletes_groups() {
    let root = tempfile::tempdir().unwrap();
    let (server, token) = served_for_alice(root.path());
    let admin = Admin {
        server: &server,
        token,
    };

    let table = admin.ok(&["groups", "list"]);
    assert_eq!(
        header(&table),
        ["NAME", "USERS", "ROLES", "MANAGED", "CREATED", "ID"]
    );
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.lines().nth(2).unwrap().starts_with("ops "), "{table}");
    let listed = admin.json(&["groups", "list"]);
    assert_eq!(column(&listed, "groups", "name"), ["engineering", "ops"]);
    assert_eq!(
        listed["groups"][1]["roles"],
        serde_json::json!(["read-only"])
    );
    assert_eq!(listed["groups"][1]["managed_by"], "external");

    // Create a local group with a role, then fill it.
    let created = admin.ok(&[
        "groups",
        "create",
        "oncall",
        "--description",
        "Carries the pager",
        "--role",
        "read-only",
    ]);
    assert!(created.starts_with("created group grp_"), "{created}");
    assert!(created.contains("(oncall) at revision "), "{created}");
    let id = created.split_whitespace().nth(2).unwrap().to_owned();
    let group = admin.json(&["groups", "get", &id]);
    assert_eq!(group["group"]["name"], "oncall", "{group}");
    assert_eq!(group["group"]["managed_by"], "local");
    assert_eq!(group["group"]["roles"], serde_json::json!(["read-only"]));
    assert_eq!(group["group"]["user_count"], 0);

    let (added, warning) =
        admin.ok_with_stderr(&["groups", "assign", &id, "dave@example.com", "u6"]);
    assert!(added.starts_with(&format!("added 2 of 2 users to group {id} at revision ")));
    assert!(!warning.contains("warning"), "{warning}");
    let again = admin.json(&["groups", "assign", &id, "u6"]);
    assert_eq!(again["added"], 0, "{again}");

    let members = admin.ok(&["groups", "members", &id]);
    assert_eq!(
        header(&members),
        ["EMAIL", "NAME", "STATUS", "SOURCE", "JOINED", "ID"]
    );
    assert_eq!(members.lines().count(), 3, "{members}");
    let members = admin.json(&["groups", "members", &id]);
    assert_eq!(column(&members, "members", "user_id"), ["u4", "u6"]);
    assert_eq!(members["members"][0]["source"], "local");
    let found = admin.json(&["groups", "members", &id, "--search", "FRANK"]);
    assert_eq!(column(&found, "members", "user_id"), ["u6"]);

    // The group's role reaches its members: frank may now read through the API.
    let bigger = admin.json(&["groups", "list", "--sort", "users", "--desc"]);
    assert_eq!(bigger["groups"][0]["user_count"], 2, "{bigger}");
    let frank = admin.json(&["users", "get", "frank@example.com"]);
    assert_eq!(frank["roles"][0]["role"], "read-only", "{frank}");
    assert_eq!(frank["roles"][0]["group_ids"], serde_json::json!([id]));

    // Changes to a group the identity provider manages come with its warning.
    let (_, warning) = admin.ok_with_stderr(&["groups", "assign", "g-eng", "u6"]);
    assert!(
        warning.contains("warning: group `g-eng` is managed by the identity provider"),
        "{warning}"
    );
    let removed = admin.json(&["groups", "remove", "g-eng", "frank@example.com"]);
    assert_eq!(removed["removed"], true, "{removed}");
    assert!(
        removed["warning"]
            .as_str()
            .unwrap()
            .contains("identity provider")
    );

    let removed = admin.ok(&["groups", "remove", &id, "u6"]);
    assert!(removed.starts_with(&format!("removed u6 from group {id} at revision ")));
    let not_member = admin.ok(&["groups", "remove", &id, "u6"]);
    assert!(not_member.contains("was not a member"), "{not_member}");
    let members = admin.json(&["groups", "members", &id]);
    assert_eq!(column(&members, "members", "user_id"), ["u4"]);

    let deleted = admin.ok(&["groups", "delete", &id]);
    assert!(deleted.starts_with(&format!("deleted group {id} at revision ")));
    let gone = admin.fails(&["groups", "get", &id]);
    assert!(gone.contains("error: not found: "), "{gone}");
    let listed = admin.json(&["groups", "list", "--search", "ENG"]);
    assert_eq!(column(&listed, "groups", "name"), ["engineering"]);

    // The audit log has it all, by alice.
    let audit = admin.json(&["audit", "--target", &id]);
    let actions = column(&audit, "events", "action");
    assert_eq!(actions.first(), Some(&"group.delete"), "{audit}");
    assert_eq!(actions.last(), Some(&"group.create"), "{audit}");
}

#[test]
fn admin_cli_manages_policies_and_api_tokens() {
    let root = tempfile::tempdir().unwrap();
    let (server, token) = served_for_alice(root.path());
    let admin = Admin {
        server: &server,
        token,
    };

    let table = admin.ok(&["policies", "list"]);
    assert_eq!(
        header(&table),
        [
            "NAME",
            "CONNECTOR",
            "TOOLS",
            "SCOPE",
            "ACTION",
            "ENABLED",
            "ID"
        ]
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("github for everyone  github     all    all users  ALLOW"),
        "{table}"
    );

    // A Deny on one slack tool for engineering and frank (named by email).
    assert!(
        check_tool(&server, "carol@example.com", "slack", "delete_message")
            .starts_with("DENY  reason NO_MATCHING_POLICY")
    );
    let created = admin.json(&[
        "policies",
        "create",
        "--name",
        "no slack deletes",
        "--connector",
        "slack",
        "--tool",
        "delete_message",
        "--group",
        "g-eng",
        "--user",
        "frank@example.com",
        "--action",
        "deny",
        "--description",
        "Messages stay",
    ]);
    let policy = &created["policy"];
    let id = policy["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pol_"), "{created}");
    assert_eq!(policy["action"], "DENY");
    assert_eq!(policy["enabled"], true);
    assert_eq!(policy["scope"]["user_ids"], serde_json::json!(["u6"]));
    assert_eq!(policy["scope"]["group_ids"], serde_json::json!(["g-eng"]));
    assert_eq!(policy["tools"], serde_json::json!(["delete_message"]));
    let answer = check_tool(&server, "carol@example.com", "slack", "delete_message");
    assert!(
        answer.starts_with(&format!("DENY  reason POLICY  policy {id}")),
        "{answer}"
    );

    let step_up = admin.ok(&[
        "policies",
        "create",
        "--name",
        "drive step up",
        "--connector",
        "drive",
        "--all-tools",
        "--all-users",
        "--action",
        "step-up",
        "--disabled",
    ]);
    assert!(step_up.starts_with("created policy pol_"), "{step_up}");
    assert!(
        step_up.contains("(drive step up) at revision "),
        "{step_up}"
    );
    let drive = step_up.split_whitespace().nth(2).unwrap().to_owned();
    assert!(check_tool(&server, "u2", "drive", "share").starts_with("DENY  reason NO_MATCHING"));

    let all = admin.json(&["policies", "list"]);
    assert_eq!(
        column(&all, "policies", "name"),
        ["drive step up", "github for everyone", "no slack deletes"]
    );
    let denies = admin.json(&["policies", "list", "--action", "deny"]);
    assert_eq!(column(&denies, "policies", "id"), [id.as_str()]);
    assert_eq!(denies["policies"][0]["group_count"], 1);
    let github = admin.json(&["policies", "list", "--connector", "github"]);
    assert_eq!(column(&github, "policies", "id"), ["pol-1"]);
    let found = admin.json(&["policies", "list", "--search", "SLACK"]);
    assert_eq!(column(&found, "policies", "id"), [id.as_str()]);
    let details = admin.ok(&["policies", "get", &id]);
    assert!(details.contains("groups g-eng"), "{details}");
    assert!(details.contains("Messages stay"), "{details}");

    // Disable and enable take effect in decisions at once.
    let disabled = admin.ok(&["policies", "disable", &id]);
    assert!(disabled.starts_with(&format!(
        "disabled policy {id} (no slack deletes) at revision "
    )));
    assert!(
        check_tool(&server, "carol@example.com", "slack", "delete_message")
            .starts_with("DENY  reason NO_MATCHING_POLICY")
    );
    let enabled = admin.json(&["policies", "enable", &drive]);
    assert_eq!(enabled["policy"]["enabled"], true, "{enabled}");
    assert!(check_tool(&server, "u2", "drive", "share").starts_with("STEP_UP  reason POLICY"));
    admin.ok(&["policies", "enable", &id]);

    // Deleting a group takes it out of the policies naming it.
    let deleted = admin.json(&["groups", "delete", "g-eng"]);
    assert_eq!(
        deleted["updated_policies"][0]["id"],
        id.as_str(),
        "{deleted}"
    );
    assert_eq!(
        deleted["updated_policies"][0]["scope"]["group_ids"],
        serde_json::json!([])
    );
    assert!(
        check_tool(&server, "carol@example.com", "slack", "delete_message")
            .starts_with("DENY  reason NO_MATCHING_POLICY")
    );

    let deleted = admin.ok(&["policies", "delete", &id]);
    assert!(
        deleted.starts_with(&format!("deleted policy {id} at revision ")),
        "{deleted}"
    );
    let gone = admin.fails(&["policies", "get", &id]);
    assert!(gone.contains("error: not found: "), "{gone}");
    assert_eq!(
        admin.json(&["policies", "list"])["policies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A Read Only token made through the API: it reads, and is refused writes.
    let out = admin.ok(&[
        "tokens",
        "create",
        "--user",
        "frank@example.com",
        "--role",
        "read-only",
        "--name",
        "ci",
        "--expires",
        "90d",
    ]);
    let reader_secret = out.lines().last().unwrap().to_owned();
    assert!(reader_secret.starts_with("pcl_"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("role ") && l.ends_with(" read-only")),
        "{out}"
    );
    let reader = Admin {
        server: &server,
        token: reader_secret,
    };
    let me = reader.json(&["whoami"]);
    assert_eq!(me["user_id"], "u6");
    assert_eq!(me["roles"], serde_json::json!(["read-only"]));
    let users = reader.ok(&["users", "list"]);
    assert_eq!(users.lines().count(), 7, "{users}");
    let refused = reader.fails(&["users", "lock", "u3", "--reason", "no"]);
    assert!(refused.contains("error: permission denied: "), "{refused}");
    let refused = reader.fails(&["policies", "delete", "pol-1"]);
    assert!(refused.contains("error: permission denied: "), "{refused}");

    let minted = admin.json(&["tokens", "create", "--user", "u3"]);
    let secret = minted["secret"].as_str().unwrap();
    assert!(secret.starts_with("pcl_"), "{minted}");
    assert_eq!(minted["token"]["role"], Value::Null);
    assert_eq!(minted["token"]["expires_at"], Value::Null);
    assert_eq!(minted["token"]["name"], "cli");

    let tokens = admin.ok(&["tokens", "list"]);
    assert_eq!(
        header(&tokens),
        [
            "ID", "NAME", "USER", "ROLE", "CREATED", "CREATOR", "EXPIRES", "REVOKED"
        ]
    );
    assert_eq!(tokens.lines().count(), 4, "{tokens}");
    let franks = admin.json(&["tokens", "list", "--user", "frank@example.com"]);
    assert_eq!(column(&franks, "tokens", "name"), ["ci"]);
    let ci = franks["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(franks["tokens"][0]["role"], "read-only");
    assert_eq!(franks["tokens"][0]["created_by"], "u1");
    assert!(franks["tokens"][0]["expires_at"].is_string(), "{franks}");

    let revoked = admin.ok(&["tokens", "revoke", &ci]);
    assert!(
        revoked.starts_with(&format!("revoked token {ci} at revision ")),
        "{revoked}"
    );
    let stderr = reader.fails(&["users", "list"]);
    assert!(stderr.contains("error: unauthenticated: "), "{stderr}");
    assert!(stderr.contains("revoked"), "{stderr}");
    let listed = admin.json(&["tokens", "list", "--user", "u6"]);
    assert!(listed["tokens"][0]["revoked_at"].is_string(), "{listed}");
}

#[test]
fn admin_cli_manages_agents_settings_and_agent_scoped_policies() {
    let root = tempfile::tempdir().unwrap();
    let (server, token) = served_for_alice(root.path());
    let admin = Admin {
        server: &server,
        token,
    };

    let out = admin.ok(&[
        "agents",
        "create",
        "claude",
        "--name",
        "Claude",
        "--vendor",
        "Anthropic",
        "--alias",
        "claude-oauth",
        "--all-users",
    ]);
    assert!(
        out.starts_with("created agent claude at revision "),
        "{out}"
    );
    admin.ok(&[
        "agents", "create", "chatgpt", "--name", "ChatGPT", "--group", "g-eng",
    ]);
    let table = admin.ok(&["agents", "list"]);
    assert_eq!(
        header(&table),
        ["ID", "NAME", "VENDOR", "ALIASES", "SCOPE", "ENABLED"]
    );
    assert!(table.contains("claude-oauth"), "{table}");
    assert!(table.contains("groups g-eng"), "{table}");
    // Looked up by alias.
    let got = admin.json(&["agents", "get", "claude-oauth"]);
    assert_eq!(got["agent"]["id"], "claude");
    assert_eq!(got["agent"]["enabled"], true);

    // A duplicate alias is refused, naming the field.
    let err = admin.fails(&[
        "agents",
        "create",
        "copilot",
        "--name",
        "Copilot",
        "--alias",
        "claude-oauth",
        "--all-users",
    ]);
    assert!(
        err.contains("failed precondition: agent.aliases[0]"),
        "{err}"
    );

    let updated = admin.json(&["agents", "update", "chatgpt", "--vendor", "OpenAI"]);
    assert_eq!(updated["agent"]["vendor"], "OpenAI");

    // The kill switch needs a reason; it is audited with it.
    let err = admin.fails(&["agents", "disable", "claude"]);
    assert!(err.contains("--reason"), "{err}");
    admin.ok(&["agents", "disable", "claude", "--reason", "vendor incident"]);
    assert_eq!(
        admin.json(&["agents", "get", "claude"])["agent"]["enabled"],
        false
    );
    let audit = admin.ok(&["audit"]);
    assert!(audit.contains("agent.disable"), "{audit}");
    admin.ok(&["agents", "enable", "claude"]);

    // Settings.
    let settings = admin.json(&["settings", "get"]);
    assert_eq!(settings["settings"]["unregistered_agents"], "ALLOW");
    let out = admin.ok(&["settings", "set", "--unregistered-agents", "deny"]);
    assert!(out.contains("unregistered agents  DENY"), "{out}");

    // A policy for one agent with a step-up requirement.
    let created = admin.json(&[
        "policies",
        "create",
        "--name",
        "Claude steps up",
        "--connector",
        "github",
        "--all-tools",
        "--all-users",
        "--action",
        "step-up",
        "--agent",
        "claude",
        "--acr",
        "phr",
        "--max-age",
        "300",
    ]);
    let policy = &created["policy"];
    assert_eq!(policy["agents"], serde_json::json!(["claude"]));
    assert_eq!(policy["step_up"]["acr_values"], serde_json::json!(["phr"]));
    assert_eq!(policy["step_up"]["max_age"], 300);
    let id = policy["id"].as_str().unwrap().to_owned();
    let shown = admin.ok(&["policies", "get", &id]);
    assert!(shown.contains("acr one of phr; max age 300s"), "{shown}");
    let err = admin.fails(&[
        "policies",
        "create",
        "--name",
        "x",
        "--connector",
        "github",
        "--all-tools",
        "--all-users",
        "--action",
        "allow",
        "--agent",
        "copilot",
    ]);
    assert!(err.contains("not found: agent `copilot`"), "{err}");

    // Updating: another agent, no requirement, then back.
    let updated = admin.json(&[
        "policies",
        "update",
        &id,
        "--agent",
        "chatgpt",
        "--no-step-up",
    ]);
    assert_eq!(updated["policy"]["agents"], serde_json::json!(["chatgpt"]));
    assert!(updated["policy"]["step_up"].is_null());
    let updated = admin.json(&[
        "policies", "update", &id, "--agent", "claude", "--amr", "mfa",
    ]);
    assert_eq!(updated["policy"]["agents"], serde_json::json!(["claude"]));
    assert_eq!(
        updated["policy"]["step_up"]["amr_values"],
        serde_json::json!(["mfa"])
    );
    let err = admin.fails(&["policies", "update", &id]);
    assert!(err.contains("nothing to change"), "{err}");

    // Deleting the agent takes it out of the policy, which then covers no agent.
    let out = admin.ok(&["agents", "delete", "claude"]);
    assert!(
        out.contains(&format!("removed from policies {id}")),
        "{out}"
    );
    let after = admin.json(&["policies", "get", &id]);
    assert_eq!(after["policy"]["agents"], serde_json::json!([]));
    let listed = admin.json(&["agents", "list"]);
    assert_eq!(listed["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn quiet_prints_only_what_a_command_exists_to_show() {
    let root = tempfile::tempdir().unwrap();
    let data = company(root.path());
    // Offline: the secret alone.
    let out = run_ok(&[
        "--quiet",
        "token",
        "create",
        "--data-dir",
        path(&data),
        "--user",
        "u1",
        "--role",
        "admin",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let token = out.trim().to_owned();
    assert!(token.starts_with("pcl_"), "{out}");
    let server = Server::start(&data);
    let admin = Admin {
        server: &server,
        token: token.clone(),
    };
    // A change: nothing at all, and it happened.
    let (out, err) = admin.ok_with_stderr(&["-q", "groups", "create", "quiet-ones"]);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let (out, _) = admin.ok_with_stderr(&["-q", "users", "lock", "u2", "--reason", "incident"]);
    assert_eq!(out, "");
    assert!(check(&server, "bob@example.com").starts_with("DENY"));
    // A listing still lists; a new secret is printed alone; --json wins over --quiet.
    let listed = admin.ok(&["-q", "groups", "list"]);
    assert!(listed.contains("quiet-ones"), "{listed}");
    let out = admin.ok(&["--quiet", "tokens", "create", "--user", "u3"]);
    assert!(
        out.trim().starts_with("pcl_") && out.lines().count() == 1,
        "{out}"
    );
    let json = admin.json(&["-q", "users", "unlock", "u2"]);
    assert!(json["revision"].as_u64().is_some(), "{json}");
    // Errors are still said.
    let refused = admin.fails(&["-q", "groups", "get", "no-such-group"]);
    assert!(refused.contains("not found"), "{refused}");
}
