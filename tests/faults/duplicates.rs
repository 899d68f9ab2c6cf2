//! The same instance sent again: acknowledged every time, kept once.

use std::collections::BTreeSet;

use crate::common::dcmtk;
use crate::support::{SUCCESS, Store, assert_same_dataset, local_site, on_default_association};

#[tokio::test(flavor = "multi_thread")]
async fn the_same_instance_twice_is_acknowledged_and_kept_once() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    for _ in 0..2 {
        let out = site.storescu(&[&instance.path], &["-v"]).await;
        assert!(out.status.success(), "{}", dcmtk::text(&out));
        assert!(dcmtk::text(&out).contains("Received Store Response (Success)"));
    }
    // And twice on one association.
    let store = Store::of(&instance);
    let statuses = on_default_association(site.port(), move |scu| {
        [
            store.send(scu).unwrap().status,
            store.send(scu).unwrap().status,
        ]
    })
    .await;
    assert_eq!(statuses, [SUCCESS, SUCCESS]);

    assert_eq!(site.instance_count().await, 1);
    let key = site.blob_key(&instance.sop_instance_uid).await.unwrap();
    assert_eq!(site.blob_keys(), BTreeSet::from([key.clone()]), "one blob");
    assert_same_dataset(&site.blob_path(&key), &instance.path);
    let duplicates = site.log_lines(&["stored", &instance.sop_instance_uid, "duplicate=true"]);
    assert_eq!(duplicates.len(), 3, "{duplicates:#?}");
    site.assert_no_spool_files().await;
}
