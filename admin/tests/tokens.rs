//! tokens over a real server.

#[allow(unused_imports)]
use crate::support::Harness;
