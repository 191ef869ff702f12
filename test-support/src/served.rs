//! An in-process server's surroundings: its store, seeded, in a directory removed with the
//! test; a listener on an ephemeral loopback port; and its shutdown when the test's harness goes.

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A store in a fresh temporary directory with `model` imported. The directory lives as long
/// as the returned `TempDir`: keep it until the server is gone.
pub fn seeded_store(model: &pdp::Model) -> (tempfile::TempDir, store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).unwrap();
    store.import(model).unwrap();
    (dir, store)
}

/// A listener on an ephemeral port of 127.0.0.1 (the OS picks a free one, so suites run in
/// parallel), and its address.
pub async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Tells a server task to stop when dropped: a harness holding it stops its server however the
/// test ends (a panic included).
pub struct Shutdown(Option<oneshot::Sender<()>>);

impl Shutdown {
    /// The shutdown, and the signal the server awaits (it resolves when the `Shutdown` drops).
    pub fn new() -> (Shutdown, impl Future<Output = ()> + Send + 'static) {
        let (send, stop) = oneshot::channel::<()>();
        (Shutdown(Some(send)), async {
            let _ = stop.await;
        })
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        if let Some(send) = self.0.take() {
            let _ = send.send(());
        }
    }
}
