//! The resource routes: `/{level}`, `/{level}/{id}`, the sub-routes to children and ancestors,
//! paging, `LastUpdate` and `/statistics`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::common::pg::PgCluster;
use crate::corpus::{Corpus, Expected};
use crate::support::{Api, Level, ids_of, is_timestamp, is_uuid, keys, set, strings, without};

/// The exact fields of a resource of `level`, as Orthanc's `ExpandResource` writes them.
pub fn resource_keys(level: Level) -> BTreeSet<String> {
    let mut keys = set(["ID", "Type", "MainDicomTags", "Labels"]);
    keys.extend(set(match level {
        Level::Patient => vec!["Studies", "LastUpdate", "IsStable"],
        Level::Study => vec![
            "ParentPatient",
            "PatientMainDicomTags",
            "Series",
            "LastUpdate",
            "IsStable",
        ],
        Level::Series => vec![
            "ParentStudy",
            "Instances",
            "Status",
            "ExpectedNumberOfInstances",
            "LastUpdate",
            "IsStable",
        ],
        Level::Instance => vec!["ParentSeries", "FileSize", "FileUuid", "IndexInSeries"],
    }));
    keys
}

/// Checks one resource's JSON against what the corpus says, field by field.
pub fn check_resource(actual: &Value, expected: &Expected, what: &str) {
    let level = expected.level;
    assert_eq!(
        keys(actual),
        resource_keys(level),
        "{what}: fields of {level:?} {}",
        expected.id
    );
    assert_eq!(actual["ID"], expected.id, "{what}: ID");
    assert_eq!(actual["Type"], level.name(), "{what}: Type");
    assert_eq!(
        actual["MainDicomTags"], expected.main_tags,
        "{what}: MainDicomTags of {level:?} {}",
        expected.id
    );
    assert_eq!(actual["Labels"], json!([]), "{what}: Labels");
    if let Some(parent) = level.parent() {
        assert_eq!(
            actual[format!("Parent{}", parent.name())],
            json!(expected.parent),
            "{what}: Parent{}",
            parent.name()
        );
    }
    if let Some(children) = level.children_key() {
        let listed = strings(&actual[children]);
        assert_eq!(
            listed.len(),
            set(&listed).len(),
            "{what}: {children} repeats an ID: {listed:?}"
        );
        assert_eq!(set(&listed), expected.children, "{what}: {children}");
        let last_update = actual["LastUpdate"].as_str().unwrap_or_default();
        assert!(
            is_timestamp(last_update),
            "{what}: LastUpdate {:?} is not YYYYMMDDTHHMMSS",
            actual["LastUpdate"]
        );
        assert!(actual["IsStable"].is_boolean(), "{what}: IsStable");
    }
    match level {
        Level::Study => assert_eq!(
            Some(&actual["PatientMainDicomTags"]),
            expected.patient_tags.as_ref(),
            "{what}: PatientMainDicomTags"
        ),
        Level::Series => {
            assert_eq!(actual["Status"], "Unknown", "{what}: Status");
            assert_eq!(
                actual["ExpectedNumberOfInstances"],
                Value::Null,
                "{what}: ExpectedNumberOfInstances"
            );
        }
        Level::Instance => {
            assert!(
                actual["FileSize"].as_u64().is_some_and(|n| n > 132),
                "{what}: FileSize {}",
                actual["FileSize"]
            );
            assert!(
                actual["FileUuid"].as_str().is_some_and(is_uuid),
                "{what}: FileUuid {}",
                actual["FileUuid"]
            );
            assert_eq!(
                actual["IndexInSeries"],
                json!(expected.index_in_series),
                "{what}: IndexInSeries"
            );
        }
        Level::Patient => {}
    }
}

/// Every resource by ID, as `GET /{level}/{id}` answers it.
pub async fn fetch_all(api: &Api, corpus: &Corpus) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for resource in corpus.resources.values() {
        let body = api.json(&resource.level.path(&resource.id)).await;
        all.insert(resource.id.clone(), body);
    }
    all
}

/// The IDs of every level are Orthanc's SHA-1 of the identifiers, and nothing else is there.
pub async fn ids_follow_the_formula(api: &Api, corpus: &Corpus) {
    for level in Level::ALL {
        let listed = strings(&api.json(&format!("/{}", level.plural())).await);
        assert_eq!(
            listed.len(),
            set(&listed).len(),
            "/{} lists an ID twice: {listed:?}",
            level.plural()
        );
        assert_eq!(
            set(&listed),
            set(corpus.ids(level)),
            "/{}: the IDs are SHA-1 of PatientID|StudyUID|SeriesUID|SOPInstanceUID",
            level.plural()
        );
    }
}

/// `GET /{level}/{id}` for every resource: exact fields, values and hierarchy.
pub async fn shapes(api: &Api, corpus: &Corpus) {
    for expected in corpus.resources.values() {
        let path = expected.level.path(&expected.id);
        let actual = api.json(&path).await;
        check_resource(&actual, expected, &format!("GET {path}"));
    }
}

/// The sub-routes: children (expanded by default, IDs with `?expand=false`) at every depth,
/// and every ancestor.
pub async fn sub_routes(api: &Api, corpus: &Corpus) {
    let direct = fetch_all(api, corpus).await;
    let stable = |v: &Value| without(v, &["IsStable"]);
    for resource in corpus.resources.values() {
        let base = resource.level.path(&resource.id);
        for below in resource.level.below() {
            let path = format!("{base}/{}", below.plural());
            let expanded = api.json(&path).await;
            let wanted = corpus.under(&resource.id, below);
            let listed = ids_of(&expanded);
            assert_eq!(listed.len(), wanted.len(), "GET {path}: {listed:?}");
            assert_eq!(set(&listed), wanted, "GET {path}");
            for item in expanded.as_array().unwrap() {
                let id = item["ID"].as_str().unwrap();
                check_resource(item, corpus.get(id), &format!("GET {path}"));
                assert_eq!(stable(item), stable(&direct[id]), "GET {path}: {id}");
            }
            let path = format!("{path}?expand=false");
            let plain = strings(&api.json(&path).await);
            assert_eq!(plain.len(), wanted.len(), "GET {path}: {plain:?}");
            assert_eq!(set(&plain), wanted, "GET {path}");
        }
        for above in resource.level.above() {
            let path = format!("{base}/{}", above.singular());
            let actual = api.json(&path).await;
            let expected = corpus.ancestor(&resource.id, above);
            check_resource(&actual, expected, &format!("GET {path}"));
            assert_eq!(stable(&actual), stable(&direct[&expected.id]), "GET {path}");
        }
    }
}

/// `GET /{level}`, `?expand`, and `?since=&limit=` pages that cover every ID exactly once, in
/// ID order.
pub async fn listing_and_paging(api: &Api, corpus: &Corpus) {
    for level in Level::ALL {
        let base = format!("/{}", level.plural());
        let sorted = corpus.ids(level);

        assert_eq!(
            strings(&api.json(&base).await),
            sorted,
            "GET {base}: every ID, in ID order"
        );
        let expanded = api.json(&format!("{base}?expand")).await;
        let listed = ids_of(&expanded);
        assert_eq!(set(&listed), set(&sorted), "GET {base}?expand");
        assert_eq!(listed.len(), sorted.len(), "GET {base}?expand");
        for item in expanded.as_array().unwrap() {
            let id = item["ID"].as_str().unwrap();
            check_resource(item, corpus.get(id), &format!("GET {base}?expand"));
        }

        for limit in [1, 2, 5] {
            let mut seen = Vec::new();
            loop {
                let path = format!("{base}?since={}&limit={limit}", seen.len());
                let page = strings(&api.json(&path).await);
                assert!(page.len() <= limit, "GET {path}: {} IDs", page.len());
                let last = page.len() < limit;
                seen.extend(page);
                assert!(
                    seen.len() <= sorted.len(),
                    "GET {path}: more IDs than exist"
                );
                if last {
                    break;
                }
            }
            assert_eq!(
                seen, sorted,
                "{base} paged by {limit}: every ID once, in ID order"
            );
        }

        let path = format!("{base}?expand&since=1&limit=2");
        let page = ids_of(&api.json(&path).await);
        assert_eq!(page, sorted[1..3].to_vec(), "GET {path}");

        let path = format!("{base}?since=1000&limit=10");
        assert_eq!(api.json(&path).await, json!([]), "GET {path}");
    }
}

/// `LastUpdate` moves up the hierarchy: a study's is its newest series', a patient's its
/// newest study's, and the studies, sent a second apart, have increasing ones.
pub async fn last_update(api: &Api, corpus: &Corpus) {
    let all = fetch_all(api, corpus).await;
    let last_update = |id: &str| {
        all[id]["LastUpdate"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let studies: Vec<String> = (0..4).map(|k| last_update(corpus.study(k))).collect();
    for pair in studies.windows(2) {
        assert!(
            pair[0] < pair[1],
            "studies sent a second apart have increasing LastUpdate: {studies:?}"
        );
    }
    for level in [Level::Patient, Level::Study] {
        for resource in corpus.all(level) {
            let newest = resource
                .children
                .iter()
                .map(|c| last_update(c))
                .max()
                .unwrap();
            assert_eq!(
                last_update(&resource.id),
                newest,
                "{level:?} {}: LastUpdate is its newest child's",
                resource.id
            );
        }
    }
}

/// The fields of `/{level}/{id}/statistics` (Orthanc's `GetResourceStatistics`).
fn statistics_keys(level: Level) -> BTreeSet<String> {
    let mut keys = set([
        "DiskSize",
        "DiskSizeMB",
        "UncompressedSize",
        "UncompressedSizeMB",
        "DicomDiskSize",
        "DicomDiskSizeMB",
        "DicomUncompressedSize",
        "DicomUncompressedSizeMB",
    ]);
    let counts = [
        (Level::Study, "CountStudies"),
        (Level::Series, "CountSeries"),
        (Level::Instance, "CountInstances"),
    ];
    for (below, key) in counts {
        if below > level {
            keys.insert(key.to_string());
        }
    }
    keys
}

/// `/statistics` and `/{level}/{id}/statistics`: counts below the resource and the sum of its
/// files' sizes (a string, as Orthanc writes it).
pub async fn statistics(api: &Api, corpus: &Corpus) {
    let mut sizes = BTreeMap::new();
    for instance in corpus.all(Level::Instance) {
        let body = api.json(&Level::Instance.path(&instance.id)).await;
        sizes.insert(instance.id.clone(), body["FileSize"].as_u64().unwrap());
    }
    let total: u64 = sizes.values().sum();
    let global = api.json("/statistics").await;
    assert_eq!(global["CountPatients"], 3, "/statistics: {global}");
    assert_eq!(global["CountStudies"], 4, "/statistics: {global}");
    assert_eq!(global["CountSeries"], 6, "/statistics: {global}");
    assert_eq!(global["CountInstances"], 11, "/statistics: {global}");
    assert_eq!(
        global["TotalDiskSize"],
        total.to_string(),
        "/statistics: {global}"
    );
    assert_eq!(
        global["TotalDiskSizeMB"],
        total / (1024 * 1024),
        "/statistics: {global}"
    );

    for resource in corpus.resources.values() {
        let path = format!("{}/statistics", resource.level.path(&resource.id));
        let body = api.json(&path).await;
        assert_eq!(keys(&body), statistics_keys(resource.level), "GET {path}");
        let instances: Vec<String> = if resource.level == Level::Instance {
            vec![resource.id.clone()]
        } else {
            corpus
                .under(&resource.id, Level::Instance)
                .into_iter()
                .collect()
        };
        let size: u64 = instances.iter().map(|i| sizes[i]).sum();
        for key in [
            "DiskSize",
            "UncompressedSize",
            "DicomDiskSize",
            "DicomUncompressedSize",
        ] {
            assert_eq!(body[key], size.to_string(), "GET {path}: {key}");
            assert_eq!(
                body[format!("{key}MB")],
                size / (1024 * 1024),
                "GET {path}: {key}MB"
            );
        }
        for (below, key) in [
            (Level::Study, "CountStudies"),
            (Level::Series, "CountSeries"),
            (Level::Instance, "CountInstances"),
        ] {
            if below > resource.level {
                assert_eq!(
                    body[key],
                    corpus.under(&resource.id, below).len(),
                    "GET {path}: {key}"
                );
            }
        }
    }
}

/// With a stable age of a few seconds, every patient, study and series becomes stable once
/// nothing has arrived for that long.
pub async fn stability(api: &Api, corpus: &Corpus) {
    let last = Level::Study.path(corpus.study(3));
    crate::support::eventually("the last study sent to become stable", || async {
        (api.json(&last).await["IsStable"] == json!(true)).then_some(())
    })
    .await;
    for resource in corpus.resources.values() {
        if resource.level != Level::Instance {
            let path = resource.level.path(&resource.id);
            assert_eq!(api.json(&path).await["IsStable"], json!(true), "GET {path}");
        }
    }
}

/// On PostgreSQL the counter rows behind `/statistics` agree with the rows they count, after
/// everything the other steps did and after what the steps cannot do there: a copy replaced
/// with another size (the `INSERT … ON CONFLICT DO UPDATE` of overwrite `always`) and a
/// multi-row delete. Run last: it changes the index behind the server's back.
pub fn postgres_counters_match_the_rows(pg: &PgCluster, db: &str) {
    let agree = || {
        pg.psql(
            db,
            "SELECT (SELECT SUM(patients) FROM resource_counts) = (SELECT COUNT(*) FROM patients)
                AND (SELECT SUM(studies) FROM resource_counts) = (SELECT COUNT(*) FROM studies)
                AND (SELECT SUM(series) FROM resource_counts) = (SELECT COUNT(*) FROM series)
                AND (SELECT SUM(instances) FROM resource_counts)
                    = (SELECT COUNT(*) FROM instances)
                AND (SELECT SUM(total_size) FROM resource_counts)
                    = (SELECT COALESCE(SUM(file_size), 0) FROM instances)",
        )
        .trim()
            == "t"
    };
    let total = || pg.psql(db, "SELECT SUM(total_size) FROM resource_counts");
    assert!(agree(), "after the steps");
    assert_ne!(total().trim(), "0", "the steps leave files");

    let before = total();
    pg.psql(
        db,
        "INSERT INTO instances (id, series, sop_instance_uid, sop_class_uid, instance_number,
            transfer_syntax_uid, blob_key, file_size, sha256, remote_aet, main_tags, received_at,
            has_pixel_data)
         SELECT id, series, sop_instance_uid, sop_class_uid, instance_number,
            transfer_syntax_uid, blob_key || '-copy', file_size + 1000, sha256, remote_aet,
            main_tags, received_at, has_pixel_data
         FROM instances ORDER BY id LIMIT 1
         ON CONFLICT (id) DO UPDATE SET blob_key = excluded.blob_key,
            file_size = excluded.file_size",
    );
    let after: i64 = total().trim().parse().unwrap();
    assert_eq!(after, before.trim().parse::<i64>().unwrap() + 1000);
    assert!(agree(), "after replacing a copy");

    pg.psql(
        db,
        "DELETE FROM instances WHERE id IN (SELECT id FROM instances ORDER BY id LIMIT 2)",
    );
    assert!(agree(), "after deleting two instances");
}
