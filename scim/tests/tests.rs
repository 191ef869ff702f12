#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod entra;
mod groups;
mod limits;
mod lists;
mod okta;
mod protocol;
mod users;
