//! TLS on `serve`'s listeners: the clients' `--ca-file` and `--client-cert`, HTTPS with
//! `--http-tls`, client certificates with `--client-ca-file`, and SIGHUP reloading the
//! certificate for new connections while open ones carry on.

use crate::support::{bin, path, run, run_ok};
use portcullis_proto::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::codegen::{Service, http};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A CA in a temp dir that signs server (`localhost`) and client certificates.
struct Ca {
    dir: PathBuf,
    name: &'static str,
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(dir: &Path, name: &'static str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("portcullis test CA {name}"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = Ca {
            dir: dir.to_owned(),
            name,
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        };
        std::fs::write(ca.file("ca.pem"), &ca.pem).unwrap();
        ca
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}-{name}", self.name))
    }

    /// Signs a certificate for `localhost` (a server's, or a client's with `client`): (cert
    /// PEM, key PEM).
    fn leaf(&self, serial: u64, client: bool) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(serial.into());
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf's files: (cert path, key path).
    fn write_leaf(&self, stem: &str, serial: u64, client: bool) -> (String, String) {
        let (cert, key) = self.leaf(serial, client);
        let (cert_file, key_file) = (
            self.file(&format!("{stem}.crt")),
            self.file(&format!("{stem}.key")),
        );
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        (path(&cert_file).to_owned(), path(&key_file).to_owned())
    }

    fn ca_file(&self) -> String {
        path(&self.file("ca.pem")).to_owned()
    }
}

/// `portcullis serve` we can signal; killed on drop.
struct Serving {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    log: Arc<Mutex<String>>,
}

impl Serving {
    fn start(data: &Path, extra: &[&str]) -> Serving {
        let mut child = bin()
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--data-dir",
                path(data),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let reader = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let started = line.contains("grpc_addr=");
                lines.lock().unwrap().push_str(&format!("{line}\n"));
                if started {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("serve did not start: {}", log.lock().unwrap());
        }
        let port = |key: &str| -> u16 {
            let log = log.lock().unwrap();
            let addr = log
                .split(&format!("{key}="))
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap()
                .to_owned();
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        let (grpc_port, http_port) = (port("grpc_addr"), port("http_addr"));
        Serving {
            child,
            grpc_port,
            http_port,
            log,
        }
    }

    fn grpc(&self) -> String {
        format!("https://localhost:{}", self.grpc_port)
    }

    fn https(&self) -> String {
        format!("https://localhost:{}", self.http_port)
    }

    /// Sends SIGHUP and waits until `listeners` listeners logged a reload.
    fn reload(&self, listeners: usize) {
        let before = self.reloads();
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.reloads() < before + listeners {
            assert!(
                Instant::now() < deadline,
                "no reload logged: {}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn reloads(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .matches("reloaded the TLS certificate")
            .count()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis check` against `server` with extra flags (`--ca-file`, say).
fn check(server: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "check",
        "--server",
        server,
        "--user",
        "nobody@example.com",
        "--connector",
        "github",
        "--tool",
        "x",
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn succeeds(output: &std::process::Output) -> bool {
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains("\"decision\"")
}

/// A channel trusting `ca`, presenting `identity` if given.
async fn channel(
    url: &str,
    ca: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// GET `path` over HTTPS (HTTP/2) with a channel used as a plain HTTP client: (status, body).
async fn get(channel: &mut Channel, url: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let request = http::Request::get(url)
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = channel.call(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn decide(channel: Channel) -> Result<pb::CheckResponse, tonic::Status> {
    pb::decision_service_client::DecisionServiceClient::new(channel)
        .check(pb::CheckRequest {
            user: "nobody@example.com".into(),
            connector: "github".into(),
            tool: "x".into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

#[test]
fn check_trusts_the_ca_file_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new(root.path(), "a");
    let (cert, key) = ca.write_leaf("server", 1, false);
    let server = Serving::start(
        &root.path().join("data"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );

    let trusted = check(&server.grpc(), &["--ca-file", &ca.ca_file()]);
    assert!(
        succeeds(&trusted),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    // The same through the environment.
    let output = bin()
        .args([
            "check",
            "--server",
            &server.grpc(),
            "--user",
            "u",
            "--connector",
            "c",
            "--tool",
            "t",
        ])
        .env("PORTCULLIS_CA_FILE", ca.ca_file())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Without the CA the webpki roots are used, and they do not know ours.
    assert!(!check(&server.grpc(), &[]).status.success());
    // Nor does another CA.
    let other = Ca::new(root.path(), "other");
    assert!(
        !check(&server.grpc(), &["--ca-file", &other.ca_file()])
            .status
            .success()
    );
    // A CA file with a plain-text address is a mistake, not silently ignored.
    let plain = check(
        &format!("http://127.0.0.1:{}", server.grpc_port),
        &["--ca-file", &ca.ca_file()],
    );
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("https://"));

    // workload replay and admin take the same flags.
    let help = run_ok(&["workload", "replay", "--help"]);
    assert!(help.contains("--ca-file") && help.contains("--client-cert"));
    let help = run_ok(&["admin", "whoami", "--help"]);
    assert!(help.contains("--ca-file") && help.contains("--client-key"));
}

#[test]
fn a_client_ca_requires_a_client_certificate() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new(root.path(), "a");
    let (cert, key) = ca.write_leaf("server", 1, false);
    let (client_cert, client_key) = ca.write_leaf("client", 2, true);
    let stranger = Ca::new(root.path(), "stranger");
    let (stranger_cert, stranger_key) = stranger.write_leaf("client", 3, true);
    let server = Serving::start(
        &root.path().join("data"),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca-file",
            &ca.ca_file(),
        ],
    );

    let without = check(&server.grpc(), &["--ca-file", &ca.ca_file()]);
    assert!(!without.status.success());
    let with = check(
        &server.grpc(),
        &[
            "--ca-file",
            &ca.ca_file(),
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
        ],
    );
    assert!(succeeds(&with), "{}", String::from_utf8_lossy(&with.stderr));
    // A certificate from a CA the server does not know is refused too.
    let unknown = check(
        &server.grpc(),
        &[
            "--ca-file",
            &ca.ca_file(),
            "--client-cert",
            &stranger_cert,
            "--client-key",
            &stranger_key,
        ],
    );
    assert!(!unknown.status.success());
    // --client-cert without --client-key is a usage error.
    assert!(
        !check(
            &server.grpc(),
            &["--ca-file", &ca.ca_file(), "--client-cert", &client_cert]
        )
        .status
        .success()
    );
}

/// The reason `portcullis check --json` printed, once the answer no longer says the sidecar has
/// no snapshot, or after `within`.
fn reason_within(server: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let output = check(server, &[]);
        let answer = String::from_utf8_lossy(&output.stdout).into_owned();
        if answer.contains("UNKNOWN_USER") || Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sidecar_presents_its_client_certificate_to_the_control_plane() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new(root.path(), "a");
    let (cert, key) = ca.write_leaf("server", 1, false);
    let (client_cert, client_key) = ca.write_leaf("sidecar", 2, true);
    let token = root.path().join("sidecar-token");
    std::fs::write(&token, "a-sidecar-secret").unwrap();
    let server = Serving::start(
        &root.path().join("data"),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca-file",
            &ca.ca_file(),
            "--sidecar-token-file",
            path(&token),
        ],
    );
    let upstream = server.grpc();
    let sidecar = |extra: &[&str]| {
        let mut args = vec![
            "sidecar",
            "--upstream",
            &upstream,
            "--upstream-token-file",
            path(&token),
            "--upstream-ca-file",
            ca.file("ca.pem").to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::Server::spawn(&args)
    };

    // With its certificate it follows, and answers from the snapshot.
    let with = sidecar(&[
        "--upstream-client-cert",
        &client_cert,
        "--upstream-client-key",
        &client_key,
    ]);
    let answer = reason_within(&with.addr, Duration::from_secs(30));
    assert!(answer.contains("UNKNOWN_USER"), "{answer}");

    // Without one the control plane refuses it: it never has a snapshot and fails closed.
    let without = sidecar(&[]);
    // An absence, over a bounded window: for 3 s it never answers with a snapshot.
    let answer = reason_within(&without.addr, Duration::from_secs(3));
    assert!(answer.contains("STALE_SNAPSHOT"), "{answer}");
}

/// `GET path` over TLS offering only `http/1.1` in ALPN, trusting `ca_pem` and presenting
/// `client` (cert PEM, key PEM): the raw response.
async fn http1_get(port: u16, ca_pem: &str, client: (String, String), path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(client.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(client.1.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_metrics_and_scim_with_client_certificates() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::new(root.path(), "a");
    let (cert, key) = ca.write_leaf("server", 1, false);
    let client = ca.leaf(2, true);
    let server = Serving::start(
        &root.path().join("data"),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca-file",
            &ca.ca_file(),
            "--http-tls",
        ],
    );
    assert!(server.log.lock().unwrap().contains("tls=true"));

    let mut https = channel(&server.https(), &ca.pem, Some(client.clone()))
        .await
        .unwrap();
    let (status, body) = get(&mut https, &format!("{}/metrics", server.https())).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("portcullis_"), "{body}");
    // SCIM is there too (and still wants its bearer token).
    let (status, _) = get(&mut https, &format!("{}/scim/v2/Users", server.https())).await;
    assert_eq!(status, 401);
    // A client that speaks only HTTP/1.1 (as identity providers' SCIM clients do) agrees on
    // `http/1.1` in ALPN and is served.
    let answer = http1_get(server.http_port, &ca.pem, client.clone(), "/scim/v2/Users").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{answer}"
    );

    // Without a client certificate, or trusting another CA, no connection.
    let refused = match channel(&server.https(), &ca.pem, None).await {
        Err(_) => true,
        Ok(mut c) => {
            std::future::poll_fn(|cx| c.poll_ready(cx)).await.is_err() || {
                let request = http::Request::get(format!("{}/metrics", server.https()))
                    .body(tonic::body::Body::empty())
                    .unwrap();
                c.call(request).await.is_err()
            }
        }
    };
    assert!(refused);
    let other = Ca::new(root.path(), "other");
    assert!(
        channel(&server.https(), &other.pem, Some(client))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_connections() {
    let root = tempfile::tempdir().unwrap();
    let old = Ca::new(root.path(), "old");
    let new = Ca::new(root.path(), "new");
    let (cert, key) = old.write_leaf("server", 1, false);
    let server = Serving::start(
        &root.path().join("data"),
        &["--tls-cert", &cert, "--tls-key", &key, "--http-tls"],
    );
    let open = channel(&server.grpc(), &old.pem, None).await.unwrap();
    decide(open.clone()).await.unwrap();
    assert!(channel(&server.grpc(), &new.pem, None).await.is_err());

    // Files that do not parse: the old certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .log
        .lock()
        .unwrap()
        .contains("cannot reload the TLS certificate")
    {
        assert!(
            Instant::now() < deadline,
            "no refused reload logged in 20 s: {}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    decide(channel(&server.grpc(), &old.pem, None).await.unwrap())
        .await
        .unwrap();

    // A new certificate, from another CA and with a new serial, in place of the old files.
    let (new_cert, new_key) = new.leaf(2, false);
    std::fs::write(&key, new_key).unwrap();
    std::fs::write(&cert, new_cert).unwrap();
    server.reload(2);

    // New connections, gRPC and HTTPS, see the new certificate and not the old one.
    decide(channel(&server.grpc(), &new.pem, None).await.unwrap())
        .await
        .unwrap();
    assert!(channel(&server.grpc(), &old.pem, None).await.is_err());
    let mut https = channel(&server.https(), &new.pem, None).await.unwrap();
    assert_eq!(
        get(&mut https, &format!("{}/metrics", server.https()))
            .await
            .0,
        200
    );
    assert!(channel(&server.https(), &old.pem, None).await.is_err());
    // The connection opened before the reload carries on (reconnecting would need the old CA
    // to trust the new certificate, which it does not).
    decide(open).await.unwrap();
    // And so does `portcullis check` with the new CA file.
    assert!(succeeds(&check(
        &server.grpc(),
        &["--ca-file", &new.ca_file()]
    )));
}
