//! `GET /changes`: one entry per new resource, increasing sequence numbers, paging with
//! `since`/`limit` and Orthanc's `Done`/`Last`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::corpus::Corpus;
use crate::support::{Api, Level, is_timestamp, keys, set};

/// One page of `/changes`, checked for shape: the changes, `Done` and `Last`.
pub async fn page(api: &Api, path: &str) -> (Vec<Value>, bool, i64) {
    let body = api.json(path).await;
    for key in ["Changes", "Done", "Last"] {
        assert!(body.get(key).is_some(), "GET {path}: no {key} in {body}");
    }
    let changes = body["Changes"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: Changes is not an array"))
        .clone();
    let done = body["Done"]
        .as_bool()
        .unwrap_or_else(|| panic!("GET {path}: Done is not a boolean"));
    let last = body["Last"]
        .as_i64()
        .unwrap_or_else(|| panic!("GET {path}: Last is not a number"));
    for change in &changes {
        assert_eq!(
            keys(change),
            set(["ChangeType", "Date", "ID", "Path", "ResourceType", "Seq"]),
            "GET {path}: {change}"
        );
        let level = Level::ALL
            .into_iter()
            .find(|l| change["ResourceType"] == l.name())
            .unwrap_or_else(|| panic!("GET {path}: ResourceType of {change}"));
        let id = change["ID"].as_str().unwrap();
        assert_eq!(change["Path"], level.path(id), "GET {path}: {change}");
        assert!(
            change["Date"].as_str().is_some_and(is_timestamp),
            "GET {path}: Date of {change}"
        );
        assert!(change["Seq"].is_i64(), "GET {path}: Seq of {change}");
    }
    let seqs: Vec<i64> = changes.iter().map(|c| c["Seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "GET {path}: Seq not increasing: {seqs:?}"
    );
    if let Some(seq) = seqs.last() {
        assert_eq!(last, *seq, "GET {path}: Last is the last Seq");
    }
    (changes, done, last)
}

/// Every change after `since`, read in pages of `limit`; checks `Done` and `Last` on the way.
pub async fn all_since(api: &Api, since: i64, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut since = since;
    loop {
        let path = format!("/changes?since={since}&limit={limit}");
        let (changes, done, last) = page(api, &path).await;
        assert!(
            changes.len() <= limit,
            "GET {path}: {} changes",
            changes.len()
        );
        if let Some(first) = changes.first() {
            assert!(
                first["Seq"].as_i64().unwrap() > since,
                "GET {path}: since is exclusive"
            );
        }
        all.extend(changes.iter().cloned());
        if done {
            if changes.is_empty() {
                assert_eq!(last, since, "GET {path}: an empty last page keeps since");
            }
            return all;
        }
        assert_eq!(
            changes.len(),
            limit,
            "GET {path}: only the last page (Done) may be short"
        );
        since = last;
        assert!(all.len() < 10_000, "GET /changes never says Done");
    }
}

/// The changes grouped by (ChangeType, ResourceType, ID), with how often each appears.
pub fn tally(changes: &[Value]) -> BTreeMap<(String, String, String), usize> {
    let mut tally = BTreeMap::new();
    for change in changes {
        let key = (
            change["ChangeType"].as_str().unwrap().to_string(),
            change["ResourceType"].as_str().unwrap().to_string(),
            change["ID"].as_str().unwrap().to_string(),
        );
        *tally.entry(key).or_insert(0) += 1;
    }
    tally
}

/// After the ingest: one `New<Level>` per resource, in one default page, the same when read
/// in pages of 5, and nothing after `Last`.
pub async fn after_ingest(api: &Api, corpus: &Corpus) {
    let (changes, done, last) = page(api, "/changes").await;
    assert!(done, "GET /changes: 24 changes fit in the default page");
    let want: BTreeMap<(String, String, String), usize> = corpus
        .resources
        .values()
        .map(|r| {
            (
                (
                    format!("New{}", r.level.name()),
                    r.level.name().to_string(),
                    r.id.clone(),
                ),
                1,
            )
        })
        .collect();
    assert_eq!(tally(&changes), want, "GET /changes: one New* per resource");

    let paged = all_since(api, 0, 5).await;
    assert_eq!(paged, changes, "GET /changes in pages of 5");

    let (empty, done, after) = page(api, &format!("/changes?since={last}")).await;
    assert!(empty.is_empty(), "GET /changes?since={last}: {empty:?}");
    assert!(done, "GET /changes?since={last}: Done");
    assert_eq!(after, last, "GET /changes?since={last}: Last");

    let (two, done, at) = page(api, "/changes?limit=2").await;
    assert_eq!(two.len(), 2, "GET /changes?limit=2");
    assert!(!done, "GET /changes?limit=2: not Done");
    assert_eq!(
        at,
        two[1]["Seq"].as_i64().unwrap(),
        "GET /changes?limit=2: Last"
    );

    // Exactly the last four: the page is complete and Done.
    let before_last_four = changes[changes.len() - 5]["Seq"].as_i64().unwrap();
    let path = format!("/changes?since={before_last_four}&limit=4");
    let (four, done, at) = page(api, &path).await;
    assert_eq!(four, changes[changes.len() - 4..].to_vec(), "GET {path}");
    assert!(done, "GET {path}: Done when nothing is left");
    assert_eq!(at, last, "GET {path}: Last");

    for path in ["/changes?limit=x", "/changes?since=x"] {
        api.get(path).await.assert_error(400);
    }

    // On an empty page Orthanc answers the index of the
    // last change in the log (StatelessDatabaseOperations::GetChanges: `last =
    // transaction.GetLastChangeIndex()`), not `since`; so a poller holding a `since` beyond
    // the log (a database restored or replaced) is brought back to the real end instead of
    // skipping every change up to its stale number.
    let beyond = last + 1000;
    let (empty, done, at) = page(api, &format!("/changes?since={beyond}")).await;
    assert!(empty.is_empty() && done, "GET /changes?since={beyond}");
    assert_eq!(
        at, last,
        "GET /changes?since={beyond}: Last is the last change ({last}) as in Orthanc"
    );
}
