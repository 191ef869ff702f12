//! Listing: filters, paging, attributes.

use crate::support::*;
use serde_json::{Value, json};

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn people(h: &Harness) -> Vec<String> {
    let mut out = Vec::new();
    for (user_name, given, family, title, active, work, manager) in [
        (
            "ada@example.com",
            "Ada",
            "Lovelace",
            "Analyst",
            true,
            true,
            None,
        ),
        (
            "alan@example.com",
            "Alan",
            "Turing",
            "Cryptanalyst",
            true,
            false,
            Some("ada"),
        ),
        (
            "grace@navy.mil",
            "Grace",
            "Hopper",
            "Admiral",
            false,
            true,
            None,
        ),
        (
            "edsger@example.nl",
            "Edsger",
            "Dijkstra",
            "",
            true,
            false,
            None,
        ),
    ] {
        let mut body = json!({
            "schemas": [USER, ENTERPRISE],
            "userName": user_name,
            "name": {"givenName": given, "familyName": family},
            "emails": [{"value": user_name, "type": if work { "work" } else { "home" }, "primary": true}],
            "active": active,
        });
        if !title.is_empty() {
            body["title"] = json!(title);
        }
        if let Some(manager) = manager {
            body[ENTERPRISE] = json!({"manager": {"value": manager}, "department": "Codes"});
        }
        out.push(
            h.post("/Users", body).await.expect(201)["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    out
}

async fn filtered(h: &Harness, filter: &str) -> Vec<String> {
    let reply = h.get(&format!("/Users?filter={}", encode(filter))).await;
    let body = reply.expect(200);
    assert_eq!(
        body["totalResults"].as_u64().unwrap() as usize,
        ids(body).len()
    );
    ids(body)
}

#[tokio::test]
async fn filters_over_a_list() {
    let h = Harness::start().await;
    let p = people(&h).await;
    let (ada, alan, grace, edsger) = (&p[0], &p[1], &p[2], &p[3]);
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<String>>()
    };
    assert_eq!(
        filtered(&h, "userName eq \"ADA@example.com\"").await,
        vec![ada.clone()]
    );
    assert_eq!(
        filtered(&h, "userName co \"navy\"").await,
        vec![grace.clone()]
    );
    assert_eq!(
        filtered(&h, "userName sw \"a\"").await,
        sorted(vec![ada, alan])
    );
    assert_eq!(
        filtered(&h, "userName ew \".nl\"").await,
        vec![edsger.clone()]
    );
    assert_eq!(
        filtered(&h, "title pr").await,
        sorted(vec![ada, alan, grace])
    );
    assert_eq!(
        filtered(&h, "title pr and active eq true").await,
        sorted(vec![ada, alan])
    );
    assert_eq!(
        filtered(
            &h,
            "name.familyName eq \"Hopper\" or name.givenName eq \"Edsger\""
        )
        .await,
        sorted(vec![grace, edsger])
    );
    assert_eq!(
        filtered(&h, "not (active eq true)").await,
        vec![grace.clone()]
    );
    assert_eq!(
        filtered(&h, "emails[type eq \"work\" and value co \"example\"]").await,
        vec![ada.clone()]
    );
    assert_eq!(
        filtered(&h, "emails.type eq \"home\"").await,
        sorted(vec![alan, edsger])
    );
    assert_eq!(
        filtered(&h, "emails eq \"alan@example.com\"").await,
        vec![alan.clone()]
    );
    assert_eq!(
        filtered(&h, "emails.value eq \"GRACE@navy.mil\"").await,
        vec![grace.clone()]
    );
    assert_eq!(
        filtered(&h, &format!("{ENTERPRISE}:manager.value eq \"ada\"")).await,
        vec![alan.clone()]
    );
    assert_eq!(
        filtered(&h, &format!("id eq \"{edsger}\"")).await,
        vec![edsger.clone()]
    );
    assert_eq!(filtered(&h, "id eq \"nobody\"").await, Vec::<String>::new());
    // Time: everyone was modified after 2000, and nobody after 2100.
    assert_eq!(
        filtered(&h, "meta.lastModified gt \"2000-01-01T00:00:00Z\"")
            .await
            .len(),
        4
    );
    assert!(
        filtered(&h, "meta.lastModified gt \"2100-01-01T00:00:00Z\"")
            .await
            .is_empty()
    );
    // Unknown attributes are refused, unknown extensions are not.
    h.get(&format!("/Users?filter={}", encode("shoeSize eq 9")))
        .await
        .expect_error(400, Some("invalidFilter"));
    h.get(&format!(
        "/Users?filter={}",
        encode("members.value eq \"x\"")
    ))
    .await
    .expect_error(400, Some("invalidFilter"));
    assert!(
        filtered(&h, "urn:example:other:2.0:User:badge pr")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn group_filters() {
    let h = Harness::start_with(company()).await;
    let made = h
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Research", "externalId": "r-1", "members": [{"value": "u-bob"}]}),
        )
        .await;
    let research = made.expect(201)["id"].as_str().unwrap().to_owned();
    let list = |filter: &str| {
        let path = format!("/Groups?filter={}", encode(filter));
        let h = &h;
        async move { ids(h.get(&path).await.expect(200)) }
    };
    assert_eq!(
        list("displayName eq \"research\"").await,
        vec![research.clone()]
    );
    assert_eq!(list("externalId eq \"r-1\"").await, vec![research.clone()]);
    assert_eq!(
        list("members.value eq \"u-bob\"").await,
        vec![research.clone()]
    );
    assert_eq!(
        list("members eq \"u-alice\"").await,
        vec!["g-eng".to_owned()]
    );
    assert_eq!(
        list(&format!(
            "id eq \"{research}\" and members.value eq \"u-bob\""
        ))
        .await,
        vec![research.clone()]
    );
    assert_eq!(
        list(&format!(
            "id eq \"{research}\" and members.value eq \"u-alice\""
        ))
        .await,
        Vec::<String>::new()
    );
    assert_eq!(list("displayName co \"e\"").await.len(), 2);
    assert_eq!(
        list("meta.created lt \"2024-01-01T00:00:00Z\"").await,
        vec!["g-eng".to_owned()]
    );
    h.get(&format!("/Groups?filter={}", encode("userName eq \"x\"")))
        .await
        .expect_error(400, Some("invalidFilter"));
}

#[tokio::test]
async fn paging_with_start_index_and_count() {
    let mut model = pdp::Model::default();
    for i in 0..450 {
        model.users.push(user(
            &format!("u{i:04}"),
            &format!("user{i}@example.com"),
            &format!("User {i}"),
        ));
    }
    let h = Harness::start_with(model).await;
    let first = h.get("/Users").await;
    let first = first.expect(200);
    assert_eq!(first["totalResults"], json!(450));
    assert_eq!(first["itemsPerPage"], json!(200));
    assert_eq!(first["startIndex"], json!(1));
    assert_eq!(ids(first)[0], "u0000");
    let page = h.get("/Users?startIndex=201&count=200").await;
    let page = page.expect(200);
    assert_eq!(ids(page)[0], "u0200");
    assert_eq!(page["startIndex"], json!(201));
    let last = h.get("/Users?startIndex=401&count=200").await;
    let last = last.expect(200);
    assert_eq!(last["itemsPerPage"], json!(50));
    assert_eq!(ids(last)[49], "u0449");
    // count is capped at 200; 0 only counts.
    assert_eq!(
        h.get("/Users?count=5000").await.expect(200)["itemsPerPage"],
        json!(200)
    );
    let none = h.get("/Users?count=0").await;
    assert_eq!(none.expect(200)["totalResults"], json!(450));
    assert_eq!(none.body["Resources"], json!([]));
    let past = h.get("/Users?startIndex=1000").await;
    assert_eq!(past.expect(200)["itemsPerPage"], json!(0));
    // Paging a filtered list.
    let filter = encode("userName sw \"user1\"");
    let filtered = h
        .get(&format!("/Users?filter={filter}&startIndex=3&count=4"))
        .await;
    let filtered = filtered.expect(200);
    // user1, user10..user19, user100..user199: 111 users.
    assert_eq!(filtered["totalResults"], json!(111));
    assert_eq!(ids(filtered), vec!["u0011", "u0012", "u0013", "u0014"]);
}

#[tokio::test]
async fn attributes_and_excluded_attributes() {
    let h = Harness::start_with(company()).await;
    let list = h
        .get("/Users?attributes=userName,NAME.givenName,emails.value&filter=userName%20eq%20%22alice%40example.com%22")
        .await;
    let alice = &list.expect(200)["Resources"][0];
    let keys: Vec<&str> = alice
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["emails", "id", "meta", "schemas", "userName"]);
    assert_eq!(alice["emails"], json!([{"value": "alice@example.com"}]));
    assert_eq!(alice["meta"], json!({"resourceType": "User"}));
    let one = h
        .get(&format!(
            "/Users/u-alice?excludedAttributes=emails,meta,groups,{PORTCULLIS}"
        ))
        .await;
    let one = one.expect(200);
    assert!(one.get("emails").is_none() && one.get("groups").is_none());
    assert!(one.get(PORTCULLIS).is_none());
    assert_eq!(one["meta"], json!({"resourceType": "User"}));
    assert_eq!(one["userName"], json!("alice@example.com"));
    // The ETag is the whole resource's, whatever the answer shows.
    let full = h.get("/Users/u-alice").await;
    assert_eq!(
        h.get("/Users/u-alice?attributes=userName")
            .await
            .header("etag"),
        full.header("etag")
    );
    let ext = h
        .get(&format!(
            "/Users/u-alice?attributes={PORTCULLIS}:mfaEnabled"
        ))
        .await;
    assert_eq!(ext.expect(200)[PORTCULLIS], json!({"mfaEnabled": true}));
    let group = h.get("/Groups/g-eng?excludedAttributes=members").await;
    let group = group.expect(200);
    assert!(group.get("members").is_none());
    assert_eq!(group["displayName"], json!("Engineering"));
    let only_members = h.get("/Groups?attributes=members.display").await;
    assert_eq!(
        only_members.expect(200)["Resources"][0]["members"],
        json!([{"display": "Alice Example"}])
    );
}

/// RFC 7644 §3.4.3: the query in a POSTed SearchRequest, answered as the GET would be.
#[tokio::test]
async fn post_search_answers_like_the_query_it_carries() {
    let h = Harness::start_with(company()).await;
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let filter = "userName sw \"a\" or userName sw \"b\"";
    let by_get = h
        .get(&format!(
            "/Users?filter={}&attributes=userName&count=1&startIndex=2",
            encode(filter)
        ))
        .await;
    let by_post = h
        .post(
            "/Users/.search",
            json!({"schemas": [SEARCH], "filter": filter, "attributes": ["userName"],
                   "count": 1, "startIndex": 2}),
        )
        .await;
    assert_eq!(by_post.expect(200), by_get.expect(200));
    assert_eq!(by_post.expect(200)["itemsPerPage"], json!(1));
    let groups = h
        .post(
            "/Groups/.search",
            json!({"schemas": [SEARCH], "filter": "displayName eq \"engineering\""}),
        )
        .await;
    assert_eq!(ids(groups.expect(200)), vec!["g-eng".to_owned()]);
    // Bad requests: no SearchRequest schema, a filter of the wrong type, a bad filter.
    h.post("/Users/.search", json!({"filter": filter}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    h.post("/Users/.search", json!({"schemas": [SEARCH], "filter": 3}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    h.post(
        "/Users/.search",
        json!({"schemas": [SEARCH], "filter": "userName eq"}),
    )
    .await
    .expect_error(400, Some("invalidFilter"));
    // Across resource types: not supported, and said so.
    let root = h.post("/.search", json!({"schemas": [SEARCH]})).await;
    assert!(root.expect_error(501, None).contains("/Users/.search"));
}
