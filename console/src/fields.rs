//! What the console's forms share: a form whose fields may repeat (roles, the users picked),
//! and a refused call's message placed next to the field it names, with the fields that show
//! it.

use crate::call::Failure;
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use tonic::Status;

/// A posted form as its name–value pairs, in order: checkboxes sharing a name send one pair
/// each, which a struct cannot hold.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or empty.
    pub fn one(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`, in the order sent.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether the confirmation box named `confirm` was ticked.
    pub fn confirmed(&self) -> bool {
        self.one("confirm") == "yes"
    }
}

/// Why a form was refused: each message by the field it names, the rest for the whole form,
/// and the HTTP status the page is sent with.
#[derive(Debug, Default)]
pub struct Problems {
    pub status: Option<StatusCode>,
    by_field: BTreeMap<&'static str, String>,
    form: Vec<String>,
}

impl Problems {
    /// No problem: the form as first shown.
    pub fn none() -> Problems {
        Problems::default()
    }

    /// The admin service's refusal. Its messages start with the request field at fault
    /// (`name: must not be empty`, `roles[0]: …`); when that field is one of `fields` (the
    /// form's inputs, named as the request's fields) the message goes next to it.
    pub fn from_status(status: &Status, fields: &[&'static str]) -> Problems {
        let mut problems = Problems {
            status: Some(Failure::from(status.clone()).status),
            ..Problems::default()
        };
        let message = status.message();
        let named = message.split_once(": ").and_then(|(field, problem)| {
            let root = field.split(['[', '.']).next().unwrap_or(field);
            fields
                .iter()
                .find(|f| **f == root)
                .map(|f| (*f, problem.to_owned()))
        });
        match named {
            Some((field, problem)) => {
                problems.by_field.insert(field, problem);
            }
            None => problems.form.push(message.to_owned()),
        }
        problems
    }

    /// A form's write the service refused: the problems to show beside the form again, or,
    /// when the person may not write at all (a Read Only person's forged POST), the service's
    /// refusal as is.
    pub fn refused(status: Status, fields: &[&'static str]) -> Result<Problems, Failure> {
        if status.code() == tonic::Code::PermissionDenied {
            return Err(Failure::from(status));
        }
        Ok(Problems::from_status(&status, fields))
    }

    /// A problem the console finds itself (a confirmation box left unticked).
    pub fn field(field: &'static str, problem: impl Into<String>) -> Problems {
        let mut problems = Problems {
            status: Some(StatusCode::BAD_REQUEST),
            ..Problems::default()
        };
        problems.by_field.insert(field, problem.into());
        problems
    }

    /// A problem with the whole form, shown at its top.
    pub fn whole(problem: impl Into<String>) -> Problems {
        Problems {
            status: Some(StatusCode::BAD_REQUEST),
            form: vec![problem.into()],
            ..Problems::default()
        }
    }

    /// Adds a problem with `field` (a form that checks several fields before any call).
    pub fn add(&mut self, field: &'static str, problem: impl Into<String>) {
        self.status.get_or_insert(StatusCode::BAD_REQUEST);
        self.by_field.insert(field, problem.into());
    }

    /// Adds every problem of `other`.
    pub fn extend(&mut self, other: Problems) {
        self.status = self.status.or(other.status);
        self.by_field.extend(other.by_field);
        self.form.extend(other.form);
    }

    /// Whether there is no problem at all.
    pub fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.form.is_empty()
    }

    /// The message for `field`, if any.
    pub fn of(&self, field: &str) -> Option<&str> {
        self.by_field.get(field).map(String::as_str)
    }

    /// The message shown under input `id` (which names the request field), tied to it by
    /// `aria-describedby="{id}-error"`.
    pub fn under(&self, id: &str) -> Markup {
        html! {
            @if let Some(problem) = self.of(id) {
                p.error id=(format!("{id}-error")) role="alert" { (problem) }
            }
        }
    }

    /// `aria-describedby` for input `id`: its error when there is one.
    pub fn described_by(&self, id: &str) -> Option<String> {
        self.of(id).map(|_| format!("{id}-error"))
    }

    /// A one-line text field for request field `name` (its id and form name too), labelled
    /// `label`, showing `value`, its problem (if any) under it and tied to it.
    pub fn text(
        &self,
        name: &str,
        label: &str,
        value: &str,
        required: bool,
        maxlength: u32,
    ) -> Markup {
        html! {
            div.field {
                label for=(name) { (label) }
                input id=(name) type="text" name=(name) value=(value) required[required]
                    maxlength=(maxlength)
                    aria-invalid=[self.of(name).map(|_| "true")]
                    aria-describedby=[self.described_by(name)];
                (self.under(name))
            }
        }
    }

    /// A text area for request field `name`, as [`Problems::text`].
    pub fn textarea(&self, name: &str, label: &str, value: &str, maxlength: u32) -> Markup {
        html! {
            div.field {
                label for=(name) { (label) }
                textarea id=(name) name=(name) maxlength=(maxlength)
                    aria-invalid=[self.of(name).map(|_| "true")]
                    aria-describedby=[self.described_by(name)] { (value) }
                (self.under(name))
            }
        }
    }

    /// The messages for the whole form, at its top.
    pub fn above(&self) -> Markup {
        html! {
            @for problem in &self.form {
                p.notice.danger role="alert" { (problem) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Problems;
    use tonic::Status;

    #[test]
    fn a_named_field_gets_the_message_and_the_rest_goes_to_the_form() {
        let fields = ["name", "roles"];
        let named = Problems::from_status(
            &Status::invalid_argument("name: must not be empty"),
            &fields,
        );
        assert_eq!(named.of("name"), Some("must not be empty"));
        assert_eq!(named.status.map(|s| s.as_u16()), Some(400));
        let indexed = Problems::from_status(
            &Status::invalid_argument("roles[1]: unknown role 7"),
            &fields,
        );
        assert_eq!(indexed.of("roles"), Some("unknown role 7"));
        let other = Problems::from_status(
            &Status::failed_precondition("group `g1` is already named `x`: names are unique"),
            &fields,
        );
        assert_eq!(other.of("name"), None);
        assert_eq!(other.form.len(), 1);
        assert_eq!(other.status.map(|s| s.as_u16()), Some(409));
    }
}
