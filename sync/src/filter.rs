//! SCIM filters (RFC 7644 §3.4.2.2): parsing and evaluation on a resource's JSON.
