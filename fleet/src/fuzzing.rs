//! The entry point of the snapshot stream's fuzz target (`fuzz/`, feature `fuzzing`): a
//! stream's events as a sidecar decodes and applies them, without the network.

use crate::Grants;
use crate::decoder::{Decoded, Decoder, Received};
use portcullis_proto::v1 as pb;
use prost::Message;
use store::View;
use tonic::transport::Channel;

/// `bytes` as a stream of length-delimited `WatchEvent`s, decoded, checked and applied as the
/// follower does (a snapshot built from each whole model and after each change; approval
/// updates held) until the end or the first event the follower would end the connection on.
pub fn stream(bytes: &[u8]) {
    static CHANNEL: std::sync::OnceLock<Option<(tokio::runtime::Runtime, Channel)>> =
        std::sync::OnceLock::new();
    // A channel needs a runtime to exist; the grants never use it here. Made once and cloned:
    // each `connect_lazy` spawns a worker task that this never-driven runtime would keep
    // forever (a leak of the harness, not of the follower, whose runtime runs).
    let Some((runtime, channel)) = CHANNEL.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let channel = {
            let _entered = runtime.enter();
            tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy()
        };
        Some((runtime, channel))
    }) else {
        return;
    };
    let _entered = runtime.enter();
    let grants = Grants::new(channel.clone(), None);
    let mut decoder = Decoder::default();
    let mut received = Received::default();
    let mut view: Option<View> = None;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(message) = pb::WatchEvent::decode_length_delimited(&mut rest) else {
            return;
        };
        let size = message.encoded_len() as u64;
        let Some(event) = message.event else {
            continue;
        };
        let Ok(decoded) = decoder.event(event, size, &mut received) else {
            return;
        };
        match decoded {
            Decoded::Full { model, .. } => {
                let built = View::from_model(model);
                let _ = live::build(&built);
                view = Some(built);
            }
            Decoded::Change(delta) => {
                if let Some(view) = view.as_mut() {
                    let revision = delta.revision;
                    let updates = delta.updates(view);
                    view.apply(revision, updates);
                    let _ = live::build(view);
                }
            }
            Decoded::Approvals(parts) => {
                if grants.apply(parts).is_err() {
                    return;
                }
            }
            Decoded::Heartbeat(_) | Decoded::Nothing => {}
        }
    }
}
