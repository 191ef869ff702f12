//! Running the binary: commands that must succeed, and a server that reports its address.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <token>` to every call.
pub type Bearer =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
/// Sends `authorization: Bearer <token>` on every call; with no token, nothing (a gateway
/// where decisions are open).
pub fn bearer(token: Option<&str>) -> Bearer {
    let value: Option<tonic::metadata::MetadataValue<_>> =
        token.map(|t| format!("Bearer {t}").parse().unwrap());
    Box::new(move |mut request: tonic::Request<()>| {
        if let Some(value) = &value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    })
}

/// An admin API client sending a token.
pub type Admin = portcullis_proto::v1::admin_service_client::AdminServiceClient<
    InterceptedService<Channel, Bearer>,
>;

/// `portcullis token create` on the stopped store in `data`: an admin token for `user`; the
/// secret.
pub fn admin_token(data: &Path, user: &str) -> String {
    let out = run_ok(&[
        "token",
        "create",
        "--data-dir",
        path(data),
        "--user",
        user,
        "--role",
        "admin",
    ]);
    out.lines().last().unwrap().trim().to_owned()
}

/// `portcullis scim-token create` on the stopped store in `data`, for the IdP `name`; the secret.
pub fn scim_token(data: &Path, name: &str) -> String {
    let out = run_ok(&[
        "scim-token",
        "create",
        "--data-dir",
        path(data),
        "--name",
        name,
    ]);
    out.lines().last().unwrap().trim().to_owned()
}

/// The binary, away from the profiles of whoever runs the tests.
pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.env(
        "PORTCULLIS_PROFILES_FILE",
        "/nonexistent/portcullis-profiles.toml",
    );
    command
}

/// Runs the binary with `args`, asserting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "portcullis {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).env("RUST_LOG", "info").output().unwrap()
}

/// The command's stdout as the one JSON document `--json` prints (its output shown if not).
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs the binary with `args` (ending in `--json`), asserting success; its JSON document.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let output = run(args);
    assert!(
        output.status.success(),
        "portcullis {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    json(&output)
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Generates a workload with the binary and imports it into a fresh data dir.
pub fn generated_and_imported(
    root: &Path,
    preset_args: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let workload = root.join("workload");
    let data = root.join("data");
    let mut args = vec!["workload", "generate", "--out", path(&workload)];
    args.extend_from_slice(preset_args);
    run_ok(&args);
    run_ok(&["import", "--data-dir", path(&data), path(&workload)]);
    (workload, data)
}

/// Writes `users.jsonl` of a directory export: `(id, email, name, active)` each, created at one
/// fixed time, unlocked, with MFA.
pub fn write_users(export: &Path, users: &[(&str, &str, &str, bool)]) {
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
    std::fs::write(export.join("users.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// `portcullis serve` on an ephemeral port; killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
    /// The HTTP (SCIM) address, `http://host:port`.
    pub http: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// `serve` with extra flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// `serve` with gRPC on `grpc_addr` (to restart on the port sidecars follow).
    pub fn start_on(data_dir: &Path, grpc_addr: &str, extra: &[&str]) -> Server {
        let mut args = vec![
            "serve",
            "--grpc-addr",
            grpc_addr,
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(data_dir),
        ];
        args.extend_from_slice(extra);
        Server::spawn(&args)
    }

    /// Runs a subcommand that serves gRPC and logs `grpc_addr=` once it does (after any
    /// `http_addr=`): `serve` or `sidecar`.
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_with_env(args, &[])
    }

    /// [`Server::spawn`] with `env` set for it.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = bin();
        command.args(args).envs(env.iter().copied());
        Server::spawn_command(command)
    }

    /// The binary with `args`, through `sh -c` that first runs `setup` (`ulimit -n 256`, say:
    /// limits a test cannot set on a child without unsafe code).
    pub fn spawn_in_shell(setup: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{setup}; exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .envs(env.iter().copied());
        Server::spawn_command(command)
    }

    /// Runs `command` (the binary, or a shell that execs it), logging at `info` unless its
    /// environment says otherwise.
    fn spawn_command(mut command: Command) -> Server {
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = BufReader::new(child.stderr.take().unwrap());
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("grpc_addr=").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {}", stderr.lock().unwrap());
            }
        };
        // Logged before the gRPC line, so it is in the log by now.
        let mut server = Server {
            child,
            addr: format!("http://{addr}"),
            http: String::new(),
            stderr,
        };
        server.http = server
            .logged("http_addr")
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        server
    }

    /// A connection to this server's gRPC port.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// An admin API client of this server, sending `token`.
    pub async fn admin(&self, token: &str) -> Admin {
        portcullis_proto::v1::admin_service_client::AdminServiceClient::with_interceptor(
            self.channel().await,
            bearer(Some(token)),
        )
    }

    /// An `ApprovalFlowService` client of this server, sending `token`.
    pub async fn flows(
        &self,
        token: &str,
    ) -> portcullis_proto::v1::approval_flow_service_client::ApprovalFlowServiceClient<
        InterceptedService<Channel, Bearer>,
    > {
        portcullis_proto::v1::approval_flow_service_client::ApprovalFlowServiceClient::with_interceptor(
            self.channel().await,
            bearer(Some(token)),
        )
    }

    /// The first page (500) of the audit events whose action starts with `action`, newest
    /// first, read with `token`.
    pub async fn audit(&self, token: &str, action: &str) -> Vec<portcullis_proto::v1::AuditEvent> {
        self.admin(token)
            .await
            .list_audit_events(portcullis_proto::v1::ListAuditEventsRequest {
                action: action.into(),
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events
    }

    pub async fn client(
        &self,
    ) -> portcullis_proto::v1::decision_service_client::DecisionServiceClient<
        tonic::transport::Channel,
    > {
        portcullis_proto::v1::decision_service_client::DecisionServiceClient::connect(
            self.addr.clone(),
        )
        .await
        .unwrap()
    }

    /// The address a log line gave for `key` (`health_addr`, say).
    pub fn logged(&self, key: &str) -> Option<String> {
        self.stderr
            .lock()
            .unwrap()
            .split(&format!("{key}="))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    }

    /// Sends `signal` (`HUP`, say) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// The gRPC port.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Server {
    /// Sends SIGTERM and waits for the exit, for at most `deadline`: `None` if it is still
    /// running then (it is killed on drop).
    pub fn terminate_within(mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = std::time::Instant::now();
        while started.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The waits every suite shares.
pub use test_support::{Deadline, PATIENCE, holds_for, wait_for, wait_for_async};
