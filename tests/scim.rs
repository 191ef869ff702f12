//! SCIM end to end through the binary: `scim-token create`, then an IdP's calls over real HTTP
//! to `serve`, reaching decisions at once.

use crate::support::{Server, path, run, run_ok};
use std::io::{Read, Write};

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
fn http(base: &str, method: &str, target: &str, token: &str, body: Option<&str>) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn decision(server: &Server, user: &str) -> String {
    run_ok(&[
        "check",
        "--server",
        &server.addr,
        "--user",
        user,
        "--connector",
        "github",
        "--tool",
        "create_issue",
    ])
}

#[test]
fn an_idp_provisions_and_deactivates_a_user_over_scim() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = run_ok(&[
        "scim-token",
        "create",
        "--data-dir",
        path(&data),
        "--name",
        "okta",
    ]);
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("scim_"), "{out}");

    let server = Server::start(&data);
    assert!(
        server.http.starts_with("http://127.0.0.1:"),
        "{}",
        server.http
    );
    // Refused while the server holds the store.
    let held = run(&[
        "scim-token",
        "create",
        "--data-dir",
        path(&data),
        "--name",
        "entra",
    ]);
    assert!(!held.status.success());
    assert!(String::from_utf8_lossy(&held.stderr).contains("running server"));

    // Entra's test-connection probe.
    let (status, body) = http(
        &server.http,
        "GET",
        "/scim/v2/Users?filter=userName%20eq%20%22c0ffee-probe%22",
        &secret,
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"totalResults\":0"), "{body}");
    // A wrong token gets the SCIM error body.
    let (status, body) = http(&server.http, "GET", "/scim/v2/Users", "nope", None);
    assert_eq!(status, 401);
    assert!(
        body.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{body}"
    );

    let (status, body) = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &secret,
        Some(
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName":"ada@example.com","externalId":"00u1",
                "name":{"givenName":"Ada","familyName":"Lovelace"},
                "emails":[{"value":"ada@example.com","type":"work","primary":true}],
                "active":true}"#,
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = body
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    // Known at once (no policy grants anything, so the default deny).
    assert!(decision(&server, "ada@example.com").contains("NO_MATCHING_POLICY"));

    let (status, body) = http(
        &server.http,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        &secret,
        Some(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations":[{"op":"replace","value":{"active":false}}]}"#,
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(decision(&server, "00u1").contains("USER_INACTIVE"));

    let (status, _) = http(
        &server.http,
        "DELETE",
        &format!("/scim/v2/Users/{id}"),
        &secret,
        None,
    );
    assert_eq!(status, 204);
    assert!(decision(&server, "ada@example.com").contains("UNKNOWN_USER"));
}
