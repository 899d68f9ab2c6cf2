//! Policy: who may associate (called and calling AE titles) and which SOP classes are stored.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use sqlx::Row;

use crate::common::dicomgen::Instance;
use crate::common::scu::{self, Scu, blocking};
use crate::common::server::ServerConfig;
use crate::common::{dcmtk, eventually};
use crate::site::Site;
use crate::support::{
    Contexts, DEFAULT_CONTEXTS, SOP_CLASS_NOT_SUPPORTED, SUCCESS, Store, assert_usable,
    edited_dataset, on_association,
};

/// Not in the standard dictionary.
const MADE_UP_SOP_CLASS: &str = "1.2.826.0.1.3680043.9.7433.1.1";

const MADE_UP_CONTEXTS: Contexts = &[
    (scu::VERIFICATION, &[scu::IMPLICIT_LE]),
    (MADE_UP_SOP_CLASS, &[scu::EXPLICIT_LE]),
];

/// Stores `instance` as an instance of a made-up SOP class (command and data set agree).
async fn store_made_up_class(port: u16, instance: &Instance) -> scu::Response {
    let data = edited_dataset(instance, |o| {
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(MADE_UP_SOP_CLASS),
        ));
    });
    let uid = instance.sop_instance_uid.clone();
    on_association(port, MADE_UP_CONTEXTS, move |scu| {
        let response = scu.store(MADE_UP_SOP_CLASS, &uid, &data).unwrap();
        assert_usable(scu);
        response
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sop_classes_are_refused_with_0122_only_when_configured() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let strict = Site::configured("accept_unknown_sop_classes = false\n");
    let instance_refused = strict.one();
    let response = store_made_up_class(strict.port(), &instance_refused).await;
    assert_eq!(response.status, SOP_CLASS_NOT_SUPPORTED, "{response:?}");
    strict
        .assert_not_stored(&instance_refused.sop_instance_uid)
        .await;
    // Standard storage classes still go in.
    strict.assert_serves().await;

    // The default accepts it, as Orthanc does, and records the class the data set names.
    let open = Site::local(ServerConfig::default());
    let instance = open.one();
    let response = store_made_up_class(open.port(), &instance).await;
    assert_eq!(response.status, SUCCESS, "{response:?}");
    let pool = open.pool().await;
    let class: String =
        sqlx::query("SELECT sop_class_uid FROM instances WHERE sop_instance_uid = $1")
            .bind(&instance.sop_instance_uid)
            .fetch_one(&pool)
            .await
            .expect("indexed")
            .get(0);
    pool.close().await;
    assert_eq!(class, MADE_UP_SOP_CLASS);
    open.assert_blobs_match_rows().await;

    // The refusal is in the log, with the instance and the class (written before the response
    // was sent, so no need to wait for it).
    let lines = strict.log_lines(&[&instance_refused.sop_instance_uid, MADE_UP_SOP_CLASS]);
    assert!(
        !lines.is_empty(),
        "no log line explains the 0122 refusal of {}:\n{}",
        instance_refused.sop_instance_uid,
        strict.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ae_title_policy_refuses_associations() {
    if !dcmtk::require_tool("echoscu") {
        return;
    }
    let site = Site::configured(
        "check_called_aet = true\nallowed_calling_aets = [\"TESTSCU\", \"GOODSCU\"]\n",
    );
    site.assert_echoes("").await;

    let wrong_called = site.echoscu("NOTORTHWEB").await;
    assert!(
        !wrong_called.status.success(),
        "{}",
        dcmtk::text(&wrong_called)
    );
    assert!(
        dcmtk::text(&wrong_called).contains("Rejected"),
        "echoscu sees a rejection: {}",
        dcmtk::text(&wrong_called)
    );
    site.expect_log(&["called AE title is not ours", "NOTORTHWEB"])
        .await;

    let port = site.port();
    let (evil, good) = blocking(move || {
        let contexts: Contexts = &[(scu::VERIFICATION, &[scu::IMPLICIT_LE])];
        let evil = Scu::connect(port, "EVILSCU", "ORTHWEB", contexts).map(|_| ());
        let mut good = Scu::connect(port, "GOODSCU", "ORTHWEB", contexts).expect("GOODSCU allowed");
        let echo = good.echo().unwrap();
        good.release().unwrap();
        (evil, echo)
    })
    .await;
    let evil = evil.expect_err("EVILSCU must be refused");
    assert!(
        format!("{evil:?}").contains("Rejected"),
        "an A-ASSOCIATE-RJ, not a dropped connection: {evil:?}"
    );
    assert_eq!(good.status, SUCCESS);
    site.expect_log(&["calling AE title not allowed", "EVILSCU"])
        .await;
    site.assert_serves().await;

    // By default the called AE title is not checked.
    let open = Site::local(ServerConfig::default());
    let any = open.echoscu("ANYTHING").await;
    assert!(any.status.success(), "{}", dcmtk::text(&any));
}

/// Refused: not authorized.
const NOT_AUTHORIZED: u16 = 0x0124;

#[tokio::test(flavor = "multi_thread")]
async fn peer_rules_decide_who_may_associate_and_who_may_store() {
    if !dcmtk::require_tool("storescu") {
        return;
    }
    let site = Site::configured(
        r#"
# Only the peers below may associate.
dicom_always_allow_echo = false
dicom_always_allow_store = false

[[modalities]]
aet = "STORER"
addresses = ["127.0.0.0/8"]

[[modalities]]
aet = "ECHOONLY"
store = false

[[modalities]]
aet = "FARAWAY"
addresses = ["10.0.0.0/8", "fd00::/8"]

# The test kit's own dcmtk calls.
[[modalities]]
aet = "TESTSCU"
addresses = ["127.0.0.1/32"]
"#,
    );
    let port = site.port();
    let stored = site.one();
    let refused = site.one();
    let (to_store, to_refuse) = (Store::of(&stored), Store::of(&refused));
    let (stored_status, echo_only, faraway, stranger) = blocking(move || {
        let connect = |aet: &str| Scu::connect(port, aet, "ORTHWEB", DEFAULT_CONTEXTS);
        let mut storer = connect("STORER").expect("STORER from loopback is admitted");
        let stored_status = to_store.send(&mut storer).unwrap().status;
        storer.release().unwrap();

        let mut echo_only = connect("ECHOONLY").expect("ECHOONLY is admitted");
        let echo = echo_only.echo().unwrap().status;
        let store = to_refuse.send(&mut echo_only).unwrap().status;
        // The refusal leaves the association usable.
        let echo_after = echo_only.echo().unwrap().status;
        echo_only.release().unwrap();

        let faraway = connect("FARAWAY").map(|_| ());
        let stranger = connect("STRANGER").map(|_| ());
        (stored_status, (echo, store, echo_after), faraway, stranger)
    })
    .await;
    assert_eq!(stored_status, SUCCESS);
    assert_eq!(
        echo_only,
        (SUCCESS, NOT_AUTHORIZED, SUCCESS),
        "ECHOONLY: echo, store, echo"
    );
    for (who, refused) in [("FARAWAY (wrong address)", faraway), ("STRANGER", stranger)] {
        let error = refused.expect_err(who);
        assert!(
            format!("{error:?}").contains("Rejected"),
            "{who}: an A-ASSOCIATE-RJ: {error:?}"
        );
    }
    site.assert_not_stored(&refused.sop_instance_uid).await;
    site.expect_log(&["association refused", "unknown peer", "STRANGER"])
        .await;
    site.expect_log(&["this peer may not store", &refused.sop_instance_uid])
        .await;
    site.assert_serves().await;
}

/// With every association slot taken, a new peer gets an A-ASSOCIATE-RJ that says why
/// (transient, local limit exceeded), not a dropped connection; once a slot frees, it is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_rejects_associations_with_the_reason() {
    if !dcmtk::require_tool("echoscu") {
        return;
    }
    let site = Site::configured("max_associations = 1\n");
    let port = site.port();
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (opened, is_open) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(blocking(move || {
        let contexts: Contexts = &[(scu::VERIFICATION, &[scu::IMPLICIT_LE])];
        let mut scu = Scu::connect(port, "TESTSCU", "ORTHWEB", contexts).expect("first one fits");
        opened.send(()).unwrap();
        held.recv().unwrap();
        assert_usable(&mut scu);
        scu.release().unwrap();
    }));
    is_open.await.unwrap();

    let refused = site.echoscu("ORTHWEB").await;
    let text = dcmtk::text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("Rejected") && text.contains("Local Limit Exceeded"),
        "echoscu is told why: {text}"
    );
    site.expect_log(&["too many associations", "rejected"])
        .await;

    hold.send(()).unwrap();
    holder.await.unwrap();
    // The server frees the slot when its side of the association has ended.
    eventually("an echo once the slot is free", || async {
        site.echoscu("ORTHWEB").await.status.success().then_some(())
    })
    .await;
}
