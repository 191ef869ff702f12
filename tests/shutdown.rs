//! `serve` stops within `--shutdown-grace` of SIGTERM whatever is in flight: here a SCIM
//! request whose client sent its headers and trickles its body.

use crate::support::{Server, scim_token};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn sigterm_exits_within_the_grace_period_while_a_scim_body_trickles() {
    let dir = tempfile::tempdir().unwrap();
    let secret = scim_token(dir.path(), "okta");
    let server = Server::start_with(dir.path(), &["--shutdown-grace", "2s"]);
    let host = server.http.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&host).unwrap();
    stream
        .write_all(
            format!(
                "PATCH /scim/v2/Users/someone HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: Bearer {secret}\r\nContent-Type: application/scim+json\r\n\
                 Content-Length: 1000000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .unwrap();
    // One byte every 100 ms: the request never completes on its own.
    let done = Arc::new(AtomicBool::new(false));
    let trickle = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if stream.write_all(b" ").is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let stderr = Arc::clone(&server.stderr);
    let status = server.terminate_within(Duration::from_secs(20));
    done.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    let log = stderr.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("serve still running 20 s after SIGTERM: {log}"));
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        log.contains("exiting anyway"),
        "the request was not in flight at SIGTERM: {log}"
    );
}
