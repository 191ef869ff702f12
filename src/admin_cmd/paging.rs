//! The list commands' paging (`--limit`, `--all`, `--page-size`, following page tokens) and the
//! report every list makes, said once for every list RPC.

use super::show::Table;
use super::{Client, MAX_PAGE_SIZE, Report, status};
use portcullis_proto::v1 as pb;
use serde_json::{Map, Value};

/// `--limit`, `--all` and `--page-size` of the list commands.
#[derive(Debug, clap::Args)]
pub struct Paging {
    /// Show at most this many rows (following page tokens as needed).
    #[arg(long, default_value_t = 50, conflicts_with = "all",
          value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Page through every row.
    #[arg(long)]
    all: bool,
    /// Rows asked for per request (default: what is still needed, at most 500).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE_SIZE)))]
    page_size: Option<u32>,
}

/// One page as a list RPC returns it.
pub struct Page<T> {
    rows: Vec<T>,
    next_page_token: String,
    /// `None` when the RPC does not say.
    revision: Option<u64>,
}

/// The rows of a list, read page by page.
pub struct Listed<T> {
    pub rows: Vec<T>,
    /// More rows were left unread (`--limit` was reached).
    more: bool,
    /// The revision the last page was read at (`None` when the RPC does not say).
    revision: Option<u64>,
}

impl Paging {
    /// Reads a list: `call(client, request)` once per page, each request asking for its page.
    pub async fn list<Q, A, F, Fut>(
        &self,
        client: &Client,
        request: Q,
        call: F,
    ) -> anyhow::Result<Listed<A::Row>>
    where
        Q: PageRequest,
        A: PageAnswer,
        F: Fn(Client, Q) -> Fut,
        Fut: Future<Output = Result<tonic::Response<A>, tonic::Status>>,
    {
        self.collect(|page_size, page_token| {
            let answer = call(client.clone(), request.page(page_size, page_token));
            async move { Ok(answer.await?.into_inner().into_page()) }
        })
        .await
    }

    /// Calls `fetch(page_size, page_token)` until the last page, or until `--limit` rows.
    async fn collect<T, F, Fut>(&self, mut fetch: F) -> anyhow::Result<Listed<T>>
    where
        F: FnMut(u32, String) -> Fut,
        Fut: Future<Output = Result<Page<T>, tonic::Status>>,
    {
        let limit = (!self.all).then_some(self.limit as usize);
        let mut rows = Vec::new();
        let mut token = String::new();
        loop {
            let wanted = limit.map_or(usize::MAX, |l| l - rows.len());
            let size = self
                .page_size
                .unwrap_or(MAX_PAGE_SIZE)
                .min(u32::try_from(wanted).unwrap_or(u32::MAX));
            let page = fetch(size, std::mem::take(&mut token))
                .await
                .map_err(status)?;
            rows.extend(page.rows);
            if let Some(limit) = limit
                && rows.len() >= limit
            {
                let more = rows.len() > limit || !page.next_page_token.is_empty();
                rows.truncate(limit);
                return Ok(Listed {
                    rows,
                    more,
                    revision: page.revision,
                });
            }
            if page.next_page_token.is_empty() {
                return Ok(Listed {
                    rows,
                    more: false,
                    revision: page.revision,
                });
            }
            token = page.next_page_token;
        }
    }
}

impl<T> Listed<T> {
    /// What a list command prints: the rows as JSON under `what` with `more` (and `revision`
    /// when the RPC says), `text` for people, and a note when the list was cut short.
    pub fn report(&self, what: &str, row_json: impl Fn(&T) -> Value, text: String) -> Report {
        let mut json = Map::new();
        json.insert(what.to_owned(), self.rows.iter().map(row_json).collect());
        json.insert("more".to_owned(), self.more.into());
        if let Some(revision) = self.revision {
            json.insert("revision".to_owned(), revision.into());
        }
        Report::new(json.into(), text).note(self.note(what))
    }

    /// [`Listed::report`] with a table for people: `header`, then each row's `cells`.
    pub fn table(
        &self,
        what: &str,
        row_json: impl Fn(&T) -> Value,
        header: &[&'static str],
        cells: impl Fn(&T) -> Vec<String>,
    ) -> Report {
        let mut table = Table::new(header);
        for row in &self.rows {
            table.row(cells(row));
        }
        self.report(what, row_json, table.render())
    }

    /// For people: a hint on stderr when the list was cut short.
    fn note(&self, what: &str) -> Option<String> {
        self.more
            .then(|| format!("(more {what} than shown: raise --limit, or --all for every one)",))
    }
}

/// A list RPC's request, asking for one page.
pub trait PageRequest: Clone {
    fn page(&self, page_size: u32, page_token: String) -> Self;
}

/// A list RPC's answer: one page of rows.
pub trait PageAnswer {
    type Row;
    fn into_page(self) -> Page<Self::Row>;
}

/// Pairs a list RPC's request and answer; `$revision` reads the revision from the answer.
macro_rules! list_rpc {
    ($request:ident, $answer:ident, $rows:ident: $row:ident, $revision:expr) => {
        impl PageRequest for pb::$request {
            fn page(&self, page_size: u32, page_token: String) -> Self {
                pb::$request {
                    page_size,
                    page_token,
                    ..self.clone()
                }
            }
        }

        impl PageAnswer for pb::$answer {
            type Row = pb::$row;
            fn into_page(self) -> Page<pb::$row> {
                let revision: fn(&pb::$answer) -> Option<u64> = $revision;
                Page {
                    revision: revision(&self),
                    rows: self.$rows,
                    next_page_token: self.next_page_token,
                }
            }
        }
    };
}

list_rpc!(ListUsersRequest, ListUsersResponse, users: UserRow, |a| Some(a.revision));
list_rpc!(ListGroupsRequest, ListGroupsResponse, groups: Group, |a| Some(a.revision));
list_rpc!(ListGroupMembersRequest, ListGroupMembersResponse, members: GroupMember, |a| {
    Some(a.revision)
});
list_rpc!(ListPoliciesRequest, ListPoliciesResponse, policies: PolicyRow, |a| {
    Some(a.revision)
});
// The audit log is not versioned: its list says no revision.
list_rpc!(ListAuditEventsRequest, ListAuditEventsResponse, events: AuditEvent, |_| None);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_reports_its_rows_more_and_revision_only_when_the_rpc_says() {
        let listed = Listed {
            rows: vec![1, 2],
            more: true,
            revision: Some(7),
        };
        let report = listed.report("numbers", |n| json!(n), "table\n".to_owned());
        assert_eq!(
            report.json,
            json!({"numbers": [1, 2], "more": true, "revision": 7})
        );
        assert_eq!(report.text, "table\n");
        assert!(report.note.is_some_and(|n| n.contains("more numbers")));

        let unversioned = Listed {
            rows: Vec::<u8>::new(),
            more: false,
            revision: None,
        };
        let report = unversioned.report("events", |n| json!(n), String::new());
        assert_eq!(report.json, json!({"events": [], "more": false}));
        assert_eq!(report.note, None);
    }
}
