//! Condition compilation (CEL) and evaluation: the input is the expression, then optionally a
//! NUL byte and the tool call's arguments as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, arguments) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let Ok(expression) = pdp::expression::Expression::compile(source) else {
        return;
    };
    let arguments: Option<pdp::Arguments> =
        arguments.and_then(|bytes| serde_json::from_slice(bytes).ok());
    let attributes: std::collections::BTreeMap<String, String> =
        [("repo".to_owned(), "infra".to_owned())].into();
    let request = pdp::Request {
        user: "alice@example.com",
        agent: "claude",
        connector: "github",
        tool: "create_issue",
        attributes: &attributes,
        context: pdp::Context {
            arguments: arguments.as_ref(),
            ..pdp::Context::default()
        },
    };
    let groups = ["g-eng"];
    let input = pdp::expression::Input {
        request: &request,
        user: pdp::expression::UserFacts {
            id: "u1",
            email: "alice@example.com",
            groups: &groups,
            mfa: pdp::Mfa::Enabled,
        },
    };
    let _ = expression.evaluate(&input);
});
