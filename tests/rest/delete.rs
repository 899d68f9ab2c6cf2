//! `DELETE /{level}/{id}`, run last: an instance, a study, the last study of a patient, a
//! series, a patient. Each answer names the remaining ancestor; the index rows, the counts, the
//! blobs and the change log follow.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::changes::{all_since, tally};
use crate::corpus::Corpus;
use crate::files::blob_of;
use crate::support::{Api, Level, UNKNOWN_ID, eventually, files_under, set, strings};

/// What the deletion tests need between steps.
pub struct Deleting<'a> {
    pub api: &'a Api,
    pub corpus: &'a Corpus,
    pub blob_root: PathBuf,
    /// What earlier steps deleted.
    pub deleted: RefCell<BTreeSet<String>>,
}

impl<'a> Deleting<'a> {
    pub fn new(api: &'a Api, corpus: &'a Corpus, blob_root: &Path) -> Deleting<'a> {
        Deleting {
            api,
            corpus,
            blob_root: blob_root.to_path_buf(),
            deleted: RefCell::default(),
        }
    }

    /// `id` (of `level`) and what is still there under it.
    fn subtree(&self, level: Level, id: &str) -> BTreeSet<String> {
        let mut ids = set([id]);
        for below in level.below() {
            ids.extend(self.corpus.under(id, below));
        }
        let deleted = self.deleted.borrow();
        ids.retain(|i| !deleted.contains(i));
        ids
    }

    /// The blob of each instance under `id` (or `id` itself), found before deleting it.
    async fn blobs_under(&self, level: Level, id: &str) -> Vec<PathBuf> {
        let mut blobs = Vec::new();
        for instance in self.subtree(level, id) {
            if self.corpus.get(&instance).level == Level::Instance {
                blobs.push(blob_of(self.api, &self.blob_root, &instance).await);
            }
        }
        blobs
    }

    /// Deletes `level`/`id`, checks the answer names `remaining`, that everything under it is
    /// gone from the API and its blobs from the store, and that other blobs remain.
    async fn delete(&self, level: Level, id: &str, remaining: Option<(Level, &str)>) {
        let gone = self.blobs_under(level, id).await;
        let subtree = self.subtree(level, id);
        let before = files_under(&self.blob_root).len();
        let path = level.path(id);
        let answer = self.api.delete(&path).await.ok_json();
        // Whatever the answer, this is gone now; so are the ancestors it emptied.
        {
            let mut deleted = self.deleted.borrow_mut();
            deleted.extend(subtree.iter().cloned());
            for ancestor in self.corpus.ancestors(id) {
                if remaining.is_some_and(|(_, kept)| kept == ancestor.id) {
                    break;
                }
                deleted.insert(ancestor.id.clone());
            }
        }
        let want = match remaining {
            Some((level, id)) => json!({"ID": id, "Path": level.path(id), "Type": level.name()}),
            None => Value::Null,
        };
        assert_eq!(answer, json!({"RemainingAncestor": want}), "DELETE {path}");

        for gone in &subtree {
            let resource = self.corpus.get(gone);
            self.api
                .get(&resource.level.path(gone))
                .await
                .assert_error(404);
        }
        let root = self.blob_root.clone();
        let gone_set: BTreeSet<PathBuf> = gone.iter().cloned().collect();
        eventually(&format!("the blobs of {path} to be removed"), || {
            let files = files_under(&root);
            let ready = files.iter().all(|f| !gone_set.contains(f))
                && files.len() == before - gone_set.len();
            async move { ready.then_some(()) }
        })
        .await;
        self.api.delete(&path).await.assert_error(404);
    }

    async fn counts(&self, patients: u64, studies: u64, series: u64, instances: u64) {
        let stats = self.api.json("/statistics").await;
        let counts = [
            &stats["CountPatients"],
            &stats["CountStudies"],
            &stats["CountSeries"],
            &stats["CountInstances"],
        ];
        assert_eq!(
            counts,
            [
                &json!(patients),
                &json!(studies),
                &json!(series),
                &json!(instances)
            ],
            "/statistics: {stats}"
        );
        for (level, count) in [
            (Level::Patient, patients),
            (Level::Study, studies),
            (Level::Series, series),
            (Level::Instance, instances),
        ] {
            let listed = strings(&self.api.json(&format!("/{}", level.plural())).await);
            assert_eq!(
                listed.len() as u64,
                count,
                "/{}: {listed:?}",
                level.plural()
            );
        }
        assert_eq!(
            files_under(&self.blob_root).len() as u64,
            instances,
            "one blob per remaining instance"
        );
        let remaining = self.api.json("/instances?expand").await;
        let size: u64 = remaining
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["FileSize"].as_u64().unwrap())
            .sum();
        assert_eq!(
            stats["TotalDiskSize"],
            size.to_string(),
            "/statistics: TotalDiskSize is the size of the remaining files"
        );
    }
}

/// The highest change sequence number so far.
pub async fn last_seq(api: &Api) -> i64 {
    all_since(api, 0, 1000)
        .await
        .last()
        .map_or(0, |c| c["Seq"].as_i64().unwrap())
}

/// An instance: its series remains, with one instance fewer.
pub async fn instance(d: &Deleting<'_>) {
    let c = d.corpus;
    let (series, instance) = (c.series(0, 0), c.instance(0, 0, 2));
    d.delete(Level::Instance, instance, Some((Level::Series, series)))
        .await;
    let body = d.api.json(&Level::Series.path(series)).await;
    assert_eq!(
        set(strings(&body["Instances"])),
        set([c.instance(0, 0, 0), c.instance(0, 0, 1)]),
        "series after deleting an instance"
    );
    let stats = d
        .api
        .json(&format!("{}/statistics", Level::Series.path(series)))
        .await;
    assert_eq!(stats["CountInstances"], 2, "series statistics: {stats}");
    d.counts(3, 4, 6, 10).await;
}

/// A study of a patient who has another: the patient remains.
pub async fn study(d: &Deleting<'_>) {
    let c = d.corpus;
    let (patient, study) = (c.patient(0), c.study(0));
    d.delete(Level::Study, study, Some((Level::Patient, patient)))
        .await;
    let body = d.api.json(&Level::Patient.path(patient)).await;
    assert_eq!(
        set(strings(&body["Studies"])),
        set([c.study(1)]),
        "patient after deleting a study"
    );
    let stats = d
        .api
        .json(&format!("{}/statistics", Level::Patient.path(patient)))
        .await;
    assert_eq!(
        (
            &stats["CountStudies"],
            &stats["CountSeries"],
            &stats["CountInstances"]
        ),
        (&json!(1), &json!(1), &json!(2)),
        "patient statistics: {stats}"
    );
    d.counts(3, 3, 4, 6).await;
    let left = d
        .api
        .find_ids(&json!({"Level": "Study", "Query": {}}))
        .await;
    assert_eq!(set(left), set([c.study(1), c.study(2), c.study(3)]));
}

/// The only study of a patient: the patient goes too, and nothing remains above.
pub async fn last_study_of_a_patient(d: &Deleting<'_>) {
    let c = d.corpus;
    d.delete(Level::Study, c.study(3), None).await;
    d.api
        .get(&Level::Patient.path(c.patient(2)))
        .await
        .assert_error(404);
    let left = d
        .api
        .find_ids(&json!({"Level": "Patient", "Query": {"PatientName": "Müller*"}}))
        .await;
    assert!(
        left.is_empty(),
        "the emptied patient is still found: {left:?}"
    );
    d.counts(2, 2, 3, 5).await;
}

/// A series: its study remains, without that modality.
pub async fn series(d: &Deleting<'_>) {
    let c = d.corpus;
    let study = c.study(2);
    d.delete(Level::Series, c.series(2, 1), Some((Level::Study, study)))
        .await;
    let body = d.api.json(&Level::Study.path(study)).await;
    assert_eq!(set(strings(&body["Series"])), set([c.series(2, 0)]));
    let pt = d
        .api
        .find_ids(&json!({"Level": "Study", "Query": {"ModalitiesInStudy": "PT"}}))
        .await;
    assert!(
        pt.is_empty(),
        "a study without PT series found by PT: {pt:?}"
    );
    let answers = d
        .api
        .find(
            &json!({"Level": "Study", "Query": {}, "ParentPatient": c.patient(1),
                       "Expand": true, "RequestedTags": ["ModalitiesInStudy"]}),
        )
        .await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["RequestedTags"]["ModalitiesInStudy"], "CT");
    d.counts(2, 2, 2, 4).await;
}

/// A patient: everything under it goes, nothing remains above.
pub async fn patient(d: &Deleting<'_>) {
    let c = d.corpus;
    d.delete(Level::Patient, c.patient(1), None).await;
    d.counts(1, 1, 1, 2).await;
    let left = d.api.json("/instances").await;
    assert_eq!(
        set(strings(&left)),
        set([c.instance(1, 0, 0), c.instance(1, 0, 1)]),
        "what is left"
    );
}

/// The change log has one `Deleted` per deleted resource, cascades and emptied ancestors
/// included, after `since`, and nothing else. What remains is patient 0 with study 1.
pub async fn changes(d: &Deleting<'_>, since: i64) {
    let c = d.corpus;
    let remaining = set([
        c.patient(0),
        c.study(1),
        c.series(1, 0),
        c.instance(1, 0, 0),
        c.instance(1, 0, 1),
    ]);
    let want = c
        .resources
        .values()
        .filter(|r| !remaining.contains(&r.id))
        .map(|r| {
            (
                (
                    "Deleted".to_string(),
                    r.level.name().to_string(),
                    r.id.clone(),
                ),
                1,
            )
        })
        .collect();
    let changes = all_since(d.api, since, 7).await;
    assert_eq!(
        tally(&changes),
        want,
        "GET /changes?since={since}: one Deleted per deleted resource"
    );
}

/// Unknown IDs, and IDs of another level, are 404s with a JSON body.
pub async fn unknown(api: &Api, corpus: &Corpus) {
    for level in Level::ALL {
        api.delete(&level.path(UNKNOWN_ID)).await.assert_error(404);
    }
    // A study's ID is not a series'.
    api.delete(&Level::Series.path(corpus.study(1)))
        .await
        .assert_error(404);
    api.get(&Level::Study.path(corpus.study(1)))
        .await
        .assert_status(200);
}
