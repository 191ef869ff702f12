//! SCIM attribute paths (RFC 7644 §3.10 and the PATCH `path` grammar of §3.5.2).
