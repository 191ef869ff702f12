//! Entry points for the fuzz targets (`fuzz/`, feature `fuzzing`): what `POST /Users` and
//! `POST /Groups` do with a request body before anything is written — parse, check the
//! schema and the bounds, map to the model, render — without HTTP or a store.

use crate::{groups, http, schema, users};

const BASE: &str = "https://portcullis.example/scim/v2";

/// A user body, as `POST /Users` reads it. Errors are the answers a client would get.
pub fn user_body(bytes: &[u8]) -> crate::Result<()> {
    let body = http::parse_json(bytes, crate::Limits::default().json_max_depth as usize)?;
    http::require_schema(&body, schema::USER)?;
    let doc = users::normalize(body)?;
    crate::Limits::default().check_user(&doc)?;
    let doc = serde_json::Value::Object(doc);
    let mapped = users::Mapped::from_doc(&doc)?;
    let user = mapped.to_user("u1", None, pdp::Timestamp(0));
    let _ = users::render(&user, Some(&doc), &[], BASE);
    Ok(())
}

/// A group body, as `POST /Groups` reads it.
pub fn group_body(bytes: &[u8]) -> crate::Result<()> {
    let body = http::parse_json(bytes, crate::Limits::default().json_max_depth as usize)?;
    http::require_schema(&body, schema::GROUP)?;
    let (doc, members) = groups::normalize(body)?;
    crate::Limits::default().check_group(&doc, members.len())?;
    let doc = serde_json::Value::Object(doc);
    let mapped = groups::Mapped::from_doc(&doc)?;
    let group = mapped.to_group("g1", None, pdp::Timestamp(0));
    let _ = groups::render(&group, Some(&doc), &[], BASE);
    Ok(())
}
