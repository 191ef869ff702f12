//! Issue 15, the network and file findings, against the real binary: a connection flood on the
//! HTTP port with a lowered descriptor limit leaves gRPC serving and the log small; a slowloris
//! header is cut; the data directory, the decision-log file and backups are private under umask
//! 022; a request that does not decode is INVALID_ARGUMENT on every service; `--metrics-addr`
//! moves `/metrics` off the SCIM port.

use crate::support::{Server, path, scim_token};
use portcullis_proto::v1 as pb;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// `host:port` of an `http://host:port` address.
fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(host(addr)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn check_request(user: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        user: user.into(),
        agent: "claude".into(),
        connector: "github".into(),
        tool: "create_issue".into(),
        ..Default::default()
    }
}

/// A Check and a health check on fresh connections, each within `deadline`.
async fn grpc_answers(server: &Server, deadline: Duration) {
    let check = async {
        let mut client = server.client().await;
        client.check(check_request("nobody@example.com")).await
    };
    let answer = tokio::time::timeout(deadline, check)
        .await
        .expect("gRPC Check did not answer in time");
    answer.unwrap();
    let health = async {
        let channel = tonic::transport::Channel::from_shared(server.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
    };
    let status = tokio::time::timeout(deadline, health)
        .await
        .expect("gRPC health did not answer in time")
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// The value of `key=` on the server's `connection caps` log line.
fn cap(server: &Server, key: &str) -> usize {
    let log = server.stderr.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("connection caps"))
        .unwrap_or_else(|| panic!("no `connection caps` line in {log}"));
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}=` in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_flood_past_the_descriptor_limit_leaves_grpc_serving() {
    const FLOOD: usize = 300;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Debug logging: a spinning accept loop would write megabytes a second.
    let server = Server::spawn_in_shell(
        "ulimit -n 256",
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
            "--http-header-timeout",
            "1s",
            "--http-idle-timeout",
            "2s",
        ],
        &[("RUST_LOG", "debug")],
    );
    // 256 descriptors less the reserve of 64, a quarter to HTTP, half to gRPC.
    assert_eq!(cap(&server, "http"), 48);
    assert_eq!(cap(&server, "grpc"), 96);
    grpc_answers(&server, Duration::from_secs(5)).await;

    // More idle connections than the server has descriptors; each task reports when the
    // server closed it.
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut stream = tokio::net::TcpStream::connect(host(&server.http))
            .await
            .unwrap();
        flood.push(tokio::spawn(async move {
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(8), stream.read(&mut buf)).await {
                // EOF or a reset: the server closed it.
                Ok(Ok(0) | Err(_)) => Some(Instant::now()),
                Ok(Ok(n)) => panic!("the server sent {n} bytes to an idle connection"),
                Err(_) => None,
            }
        }));
    }
    // gRPC still answers while the flood holds the HTTP port at its cap.
    grpc_answers(&server, Duration::from_secs(3)).await;

    let mut closed = Vec::new();
    for task in flood {
        if let Some(at) = task.await.unwrap() {
            closed.push(at.duration_since(started));
        }
    }
    closed.sort();
    // The header timeout (1s) closes them, one cap's worth at a time: none early, the first
    // wave within a second or so of the timeout, and waves keep coming.
    assert!(
        closed
            .first()
            .is_some_and(|&first| first >= Duration::from_millis(800)),
        "closed before the header timeout: {closed:?}"
    );
    let first_wave = closed
        .iter()
        .filter(|&&at| at <= Duration::from_millis(2500))
        .count();
    assert!(
        first_wave >= 48,
        "{first_wave} connections closed within 2.5s: {closed:?}"
    );
    assert!(
        closed.len() >= 3 * 48,
        "only {} of {FLOOD} closed within 8s",
        closed.len()
    );
    grpc_answers(&server, Duration::from_secs(3)).await;
    let logged = server.stderr.lock().unwrap().len();
    assert!(logged < 4 << 20, "the server logged {logged} bytes");
}

#[tokio::test]
async fn a_slowloris_header_is_cut_at_the_header_timeout() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &root.path().join("data"),
        &["--http-header-timeout", "1s", "--http-idle-timeout", "30s"],
    );
    let mut stream = tokio::net::TcpStream::connect(host(&server.http))
        .await
        .unwrap();
    let started = Instant::now();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"GET /scim/v2/Users HTTP/1.1\r\nhost: test\r\n")
        .await
        .unwrap();
    // A header line every 200 ms, never the blank line that ends them.
    let cut = loop {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open after 5s"
        );
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {} // an error response (408) before the close is fine
            Err(_) => {
                if stream.write_all(b"x-slow: yes\r\n").await.is_err() {
                    break started.elapsed();
                }
            }
        }
    };
    assert!(
        cut >= Duration::from_millis(800) && cut < Duration::from_millis(2500),
        "cut after {cut:?}"
    );
}

/// Runs the binary with `args` in a shell with umask 022, asserting success.
fn run_under_umask_022(args: &[&str]) -> String {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "portcullis {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every directory under `dir` (itself included) is 0700 and every file 0600; sockets 0600.
fn assert_private(dir: &Path) {
    let mut pending = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
            files += 1;
        }
    }
    assert!(files > 0, "no files under {}", dir.display());
}

#[tokio::test]
async fn the_data_dir_decision_log_and_backups_are_private_under_umask_022() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let scim = scim_token(&data, "okta");
    // As an older version left it: readable by everyone.
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let mode = if entry.file_type().unwrap().is_dir() {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log_file = root.path().join("decisions.jsonl");

    let server = Server::spawn_in_shell(
        "umask 022",
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
            "--decision-log-file",
            path(&log_file),
        ],
        &[],
    );
    assert!(
        server.stderr.lock().unwrap().contains("tightened"),
        "the tightening is not logged"
    );
    assert_private(&data);

    // Writes: a user over SCIM, decisions into the store and the file.
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "externalId": "00u1",
        "active": true,
        "emails": [{"value": "alice@example.com", "primary": true}],
    })
    .to_string();
    let (status, body) = http(
        &server.http,
        "POST",
        "/scim/v2/Users",
        &[
            ("authorization", &format!("Bearer {scim}")),
            ("content-type", "application/scim+json"),
        ],
        &user,
    );
    assert_eq!(status, 201, "{body}");
    let mut client = server.client().await;
    for _ in 0..20 {
        client
            .check(check_request("alice@example.com"))
            .await
            .unwrap();
    }
    // The decision log is written in batches: wait (bounded) for the file's lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log_file)
        .unwrap_or_default()
        .lines()
        .count()
        < 20
    {
        assert!(
            Instant::now() < deadline,
            "the decision log file has no lines"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backups = root.path().join("backups");
    run_under_umask_022(&[
        "backup",
        "--data-dir",
        path(&data),
        path(&backups.join("one")),
    ]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log_file), 0o600);
    assert_private(&data);
    assert_private(&backups.join("one"));
    drop(server);

    // Offline (no server), the command itself makes the backup.
    run_under_umask_022(&[
        "backup",
        "--data-dir",
        path(&data),
        path(&backups.join("two")),
    ]);
    assert_private(&backups.join("two"));
}

/// Sends raw bytes as a gRPC request body and reads whatever answers.
#[derive(Debug, Clone, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = ();
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_string_field_is_invalid_argument_on_every_service() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let sidecar_token = root.path().join("sidecar-token");
    std::fs::write(&sidecar_token, "fleet-secret\n").unwrap();
    let server = Server::start_with(&data, &["--sidecar-token-file", path(&sidecar_token)]);
    let channel = tonic::transport::Channel::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Field 1 (CheckRequest.user, GetUserRequest.user), then WatchRequest.store_id (field 2):
    // length 2, bytes 0xff 0xfe, which are not UTF-8.
    for (method, body) in [
        (
            "/portcullis.v1.DecisionService/Check",
            vec![0x0a, 0x02, 0xff, 0xfe],
        ),
        (
            "/portcullis.v1.AdminService/GetUser",
            vec![0x0a, 0x02, 0xff, 0xfe],
        ),
        (
            "/portcullis.v1.SnapshotService/Watch",
            vec![0x08, 0x01, 0x12, 0x02, 0xff, 0xfe],
        ),
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(body);
        request
            .metadata_mut()
            .insert("authorization", "Bearer fleet-secret".parse().unwrap());
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
        let status = if method.ends_with("Watch") {
            match grpc.server_streaming(request, path, Raw).await {
                Ok(mut stream) => stream.get_mut().message().await.unwrap_err(),
                Err(status) => status,
            }
        } else {
            grpc.unary(request, path, Raw).await.unwrap_err()
        };
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{method}: {status:?}"
        );
        assert!(
            status.message().contains("UTF-8"),
            "{method}: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn metrics_addr_serves_metrics_there_and_not_on_the_scim_port() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start_with(&data, &["--metrics-addr", "127.0.0.1:0"]);
    let metrics = format!(
        "http://{}",
        server
            .logged("metrics_addr")
            .expect("no metrics_addr logged")
    );
    let (status, body) = http(&metrics, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_"), "{body}");
    let (status, _) = http(&server.http, "GET", "/metrics", &[], "");
    assert_eq!(status, 404);
    // SCIM stays where it was: an unauthenticated request is refused, not missing.
    let (status, _) = http(&server.http, "GET", "/scim/v2/Users", &[], "");
    assert_eq!(status, 401);

    // Without the setting, the HTTP port serves metrics as before.
    drop(server);
    let server = Server::start(&data);
    let (status, body) = http(&server.http, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_"), "{body}");
}

/// How long until the server closes `stream` (EOF or reset), reading whatever it sends; `None`
/// if still open after `within`.
async fn closed_after(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let root = tempfile::tempdir().unwrap();
    // A header timeout longer than the idle one, so the idle timeout is what closes.
    let server = Server::start_with(
        &root.path().join("data"),
        &["--http-header-timeout", "30s", "--http-idle-timeout", "1s"],
    );
    // Connected, never a byte.
    let mut silent = tokio::net::TcpStream::connect(host(&server.http))
        .await
        .unwrap();
    let cut = closed_after(&mut silent, Duration::from_secs(5)).await;
    assert!(
        cut.is_some_and(|cut| cut >= Duration::from_millis(800)),
        "a silent connection closed after {cut:?}"
    );
    // A kept-alive connection after its answer.
    let mut kept = tokio::net::TcpStream::connect(host(&server.http))
        .await
        .unwrap();
    kept.write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let cut = closed_after(&mut kept, Duration::from_secs(5)).await;
    assert!(
        cut.is_some_and(|cut| cut >= Duration::from_millis(800)),
        "a kept-alive connection closed after {cut:?}"
    );
}

#[tokio::test]
async fn at_its_cap_the_grpc_port_waits_for_a_connection_to_close() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_with(&root.path().join("data"), &["--grpc-max-connections", "2"]);
    assert_eq!(cap(&server, "grpc"), 2);
    let grpc = host(&server.addr).to_owned();
    // Two connections that never speak hold both slots.
    let first = tokio::net::TcpStream::connect(&grpc).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&grpc).await.unwrap();
    let addr = server.addr.clone();
    let mut check = tokio::spawn(async move {
        let mut client = pb::decision_service_client::DecisionServiceClient::connect(addr)
            .await
            .unwrap();
        client.check(check_request("nobody@example.com")).await
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut check)
            .await
            .is_err(),
        "a third connection was served past the cap of 2"
    );
    // One closes: the waiting client gets its slot.
    drop(first);
    let answered = tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .expect("the waiting client was not served once a slot freed")
        .unwrap();
    answered.unwrap();
}
