//! C-STOREs whose data set the server cannot take: truncated (also inside a deflate stream),
//! without the UIDs the index needs, naming another instance or class than the command (or a
//! command naming another class than its presentation context), with element headers a reader
//! cannot make sense of, or claiming elements of 1 GiB. Each is refused with its status,
//! nothing of it is kept, and the association (where the protocol allows) and the server keep
//! working; data sets that are odd but readable are still stored.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;

use crate::common::dcmtk;
use crate::common::dicomgen::{self, Instance};
use crate::common::scu::{self, Scu, blocking};
use crate::common::server::ServerConfig;
use crate::site::Site;
use crate::support::{
    CANNOT_UNDERSTAND, Contexts, DATA_SET_MISMATCH, SOP_CLASS_NOT_SUPPORTED, SUCCESS, Store,
    assert_usable, dataset, edited_dataset, local_site, on_association, on_default_association,
};

const SECONDARY_CAPTURE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// One C-STORE to send as is, and what is wrong with it.
struct Case {
    what: &'static str,
    store: Store,
}

impl Case {
    fn new(what: &'static str, instance: &Instance, data: Vec<u8>) -> Case {
        Case {
            what,
            store: Store::with_data(instance, data),
        }
    }
}

/// Sends every case (each made from `instance`) on one association (Verification + CT storage),
/// then a fresh valid instance. Each case must be answered with `expected` and an Error Comment;
/// the valid one must be acknowledged with 0000 (a refused store leaves the association usable)
/// and indexed; nothing of `instance` may be kept.
async fn assert_refused(site: &Site, instance: &Instance, cases: Vec<Case>, expected: u16) {
    let valid = site.one();
    let valid_store = Store::of(&valid);
    let responses = on_default_association(site.port(), move |scu| {
        let mut out = Vec::new();
        for case in cases {
            let response = case
                .store
                .send(scu)
                .unwrap_or_else(|e| panic!("{}: no response: {e}", case.what));
            assert_eq!(
                response.affected_sop_instance_uid.as_deref(),
                Some(case.store.uid.as_str()),
                "{}",
                case.what
            );
            out.push((case.what, response));
        }
        let response = valid_store.send(scu).unwrap();
        assert_eq!(
            response.status, SUCCESS,
            "valid store after faulty ones: {response:?}"
        );
        assert_usable(scu);
        out
    })
    .await;
    for (what, response) in &responses {
        assert_eq!(
            response.status, expected,
            "{what}: expected {expected:#06x}, got {response:?}"
        );
        assert!(
            response
                .error_comment
                .as_deref()
                .is_some_and(|c| !c.is_empty()),
            "{what}: a refusal carries an Error Comment: {response:?}"
        );
    }
    site.assert_not_stored(&instance.sop_instance_uid).await;
    assert!(site.blob_key(&valid.sop_instance_uid).await.is_some());
}

/// Offset of the Pixel Data element header in an Explicit VR LE data set.
fn pixel_data_offset(dataset: &[u8]) -> usize {
    dataset
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .expect("pixel data present")
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_data_sets_are_refused_with_c000() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    let full = dataset(&instance);
    let pixel = pixel_data_offset(&full);
    let study_uid = full
        .windows(4)
        .position(|w| w == [0x20, 0x00, 0x0D, 0x00])
        .expect("Study Instance UID element");
    let cuts = [
        (
            "cut inside pixel data",
            pixel + 12 + (full.len() - pixel - 12) / 2,
        ),
        ("cut one byte short", full.len() - 1),
        ("cut inside the pixel data element header", pixel + 6),
        ("cut inside the first element header", 5),
        ("cut inside the Study Instance UID value", study_uid + 8 + 3),
    ];
    let cases = cuts
        .iter()
        .map(|&(what, cut)| Case::new(what, &instance, full[..cut].to_vec()))
        .collect();
    assert_refused(&site, &instance, cases, CANNOT_UNDERSTAND).await;

    let uid = instance.sop_instance_uid.as_str();
    let refusals = site.log_lines(&["C-STORE failed", uid, "0xc000"]);
    assert_eq!(
        refusals.len(),
        cuts.len(),
        "one log line per refusal: {refusals:#?}"
    );
    let truncated = site.log_lines(&["C-STORE failed", uid, "truncated"]);
    assert!(
        truncated.len() >= 2,
        "cuts inside pixel data are named as truncation: {refusals:#?}"
    );
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sop_instance_uid_differing_from_the_command_is_refused_with_a900() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    let announced = format!("{}.99", instance.sop_instance_uid);
    let mut case = Case::new("UID mismatch", &instance, dataset(&instance));
    case.store.uid = announced.clone();
    assert_refused(&site, &instance, vec![case], DATA_SET_MISMATCH).await;

    site.assert_not_stored(&announced).await;
    site.expect_log(&[
        "C-STORE failed",
        &announced,
        "0xa900",
        "differs from the command",
    ])
    .await;
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sop_class_differing_from_the_command_is_refused_with_a900() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    // The command (and so the file meta group) says CT; the data set says Secondary Capture.
    let data = edited_dataset(&instance, |o| {
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(SECONDARY_CAPTURE_STORAGE),
        ));
    });
    let case = Case::new("SOP class mismatch", &instance, data);
    assert_refused(&site, &instance, vec![case], DATA_SET_MISMATCH).await;

    site.expect_log(&[
        "C-STORE failed",
        &instance.sop_instance_uid,
        "0xa900",
        "SOP Class UID",
        "differs from the command",
    ])
    .await;
    site.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_for_another_class_than_its_presentation_context_is_refused_with_0122() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    // A Secondary Capture instance, consistent with its command, on the CT context.
    let data = edited_dataset(&instance, |o| {
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(SECONDARY_CAPTURE_STORAGE),
        ));
    });
    let uid = instance.sop_instance_uid.clone();
    let valid = Store::of(&site.one());
    let (response, after) = on_default_association(site.port(), move |scu| {
        let context = scu.context_id(scu::CT_IMAGE_STORAGE);
        let id = scu.message_id();
        scu.send_command(context, &scu::store_rq(id, SECONDARY_CAPTURE_STORAGE, &uid))
            .unwrap();
        scu.send_data(context, &data, true).unwrap();
        let response = scu.receive_response().unwrap();
        assert_eq!(response.message_id_responded_to, id, "{response:?}");
        (response, valid.send(scu).unwrap())
    })
    .await;
    assert_eq!(
        response.status, SOP_CLASS_NOT_SUPPORTED,
        "class {SECONDARY_CAPTURE_STORAGE} on the CT context: {response:?}"
    );
    assert!(
        response.error_comment.is_some_and(|c| !c.is_empty()),
        "a refusal carries an Error Comment"
    );
    assert_eq!(after.status, SUCCESS, "the association goes on: {after:?}");
    site.assert_not_stored(&instance.sop_instance_uid).await;
    site.expect_log(&[
        "C-STORE refused",
        &instance.sop_instance_uid,
        "0x0122",
        "abstract syntax",
    ])
    .await;
}

/// One Explicit VR LE element: the short header (16-bit length) for the VRs that have one and
/// for unknown VR codes, the long one (reserved bytes, 32-bit length) for the others.
fn element(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    const LONG: [&[u8; 2]; 11] = [
        b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT",
    ];
    let mut bytes = Vec::new();
    bytes.extend(tag.0.to_le_bytes());
    bytes.extend(tag.1.to_le_bytes());
    bytes.extend(vr);
    if LONG.contains(&vr) || vr == b"SV" || vr == b"UV" {
        bytes.extend([0, 0]);
        bytes.extend((value.len() as u32).to_le_bytes());
    } else {
        bytes.extend((value.len() as u16).to_le_bytes());
    }
    bytes.extend(value);
    bytes
}

/// Where the element `tag` of VR `vr` starts in `data` (Explicit VR LE).
fn find_element(data: &[u8], tag: Tag, vr: &[u8; 2]) -> usize {
    let header = &element(tag, vr, &[])[..6];
    data.windows(6)
        .position(|w| w == header)
        .unwrap_or_else(|| panic!("{tag} {} in the data set", String::from_utf8_lossy(vr)))
}

/// `data` with the VR field of its element `tag` changed from `from` to `to`, as one flipped
/// byte or two would; the length and value stay.
fn flip_vr(data: &[u8], tag: Tag, from: &[u8; 2], to: &[u8; 2]) -> Vec<u8> {
    let at = find_element(data, tag, from);
    let mut flipped = data.to_vec();
    flipped[at + 4..at + 6].copy_from_slice(to);
    flipped
}

/// `data` with its element `tag` (of VR `vr`, which has a short header) replaced by
/// `replacement`.
fn replace_element(data: &[u8], tag: Tag, vr: &[u8; 2], replacement: &[u8]) -> Vec<u8> {
    let at = find_element(data, tag, vr);
    let len = u16::from_le_bytes([data[at + 6], data[at + 7]]) as usize;
    [&data[..at], replacement, &data[at + 8 + len..]].concat()
}

/// `data` with a Referenced Image Sequence of defined length before Patient's Name, whose one
/// item (of defined length) holds `inner` after its two UIDs, as storescu sends sequences.
fn with_sequence(data: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut item = element(
        tags::REFERENCED_SOP_CLASS_UID,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.2\0",
    );
    item.extend(element(
        tags::REFERENCED_SOP_INSTANCE_UID,
        b"UI",
        b"1.2.3.4\0",
    ));
    item.extend(inner);
    let mut items = Vec::new();
    for part in [0xFFFE, 0xE000] {
        items.extend(u16::to_le_bytes(part));
    }
    items.extend((item.len() as u32).to_le_bytes());
    items.extend(item);
    let sequence = element(tags::REFERENCED_IMAGE_SEQUENCE, b"SQ", &items);
    let at = data
        .windows(6)
        .position(|w| w == b"\x10\x00\x10\x00PN")
        .expect("Patient's Name in the data set");
    [&data[..at], &sequence, &data[at..]].concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn data_sets_with_unreadable_element_headers_are_refused_with_c000() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    let full = dataset(&instance);
    let modality = tags::MODALITY;
    let rows = tags::ROWS;
    let cases = vec![
        Case::new(
            "CS element rewritten as SS with an odd length",
            &instance,
            replace_element(&full, modality, b"CS", &element(modality, b"SS", b"CT ")),
        ),
        Case::new(
            "US element flipped to UL",
            &instance,
            flip_vr(&full, rows, b"US", b"UL"),
        ),
        Case::new(
            "CS element flipped to an unknown VR",
            &instance,
            flip_vr(&full, modality, b"CS", b"ZZ"),
        ),
        Case::new(
            "CS element rewritten as UL inside a sequence of defined length",
            &instance,
            with_sequence(&full, &element(modality, b"UL", b"CT")),
        ),
        // Parsing for the index stops at the pixel data: only the walk sees what follows.
        Case::new(
            "SS element of odd length after the pixel data",
            &instance,
            [
                &full[..],
                &element(Tag(0x7FE1, 0x0010), b"LO", b"ORTHWEB "),
                &element(Tag(0x7FE1, 0x1001), b"SS", &[1, 0, 2]),
            ]
            .concat(),
        ),
    ];
    let count = cases.len();
    assert_refused(&site, &instance, cases, CANNOT_UNDERSTAND).await;

    let uid = instance.sop_instance_uid.as_str();
    let refusals = site.log_lines(&["C-STORE failed", uid, "0xc000"]);
    assert_eq!(
        refusals.len(),
        count,
        "one log line per refusal: {refusals:#?}"
    );
    for reason in ["not a multiple of 2", "not a multiple of 4", "unknown VR"] {
        assert!(
            refusals.iter().any(|line| line.contains(reason)),
            "a refusal names {reason:?}: {refusals:#?}"
        );
    }
    site.assert_serves().await;
}

/// A change to an Explicit VR LE data set.
type Edit = fn(&[u8]) -> Vec<u8>;

/// What a reader can read is kept, even when it is not what the dictionary says: UN or OB for
/// any tag, SS for a US tag, a text value of odd length, sequences of defined length.
#[tokio::test(flavor = "multi_thread")]
async fn data_sets_with_odd_but_readable_elements_are_stored() {
    let Some(site) = local_site() else { return };
    let edits: Vec<(&str, Edit)> = vec![
        ("Modality as UN", |d| {
            replace_element(
                d,
                tags::MODALITY,
                b"CS",
                &element(tags::MODALITY, b"UN", b"CT"),
            )
        }),
        ("Modality as OB", |d| {
            replace_element(
                d,
                tags::MODALITY,
                b"CS",
                &element(tags::MODALITY, b"OB", b"CT"),
            )
        }),
        ("Rows as SS", |d| flip_vr(d, tags::ROWS, b"US", b"SS")),
        ("Modality of odd length", |d| {
            replace_element(
                d,
                tags::MODALITY,
                b"CS",
                &element(tags::MODALITY, b"CS", b"CTX"),
            )
        }),
        ("a sequence of defined length", |d| {
            with_sequence(d, &element(tags::MODALITY, b"CS", b"CT"))
        }),
    ];
    let stores: Vec<(&str, Instance, Store)> = edits
        .into_iter()
        .map(|(what, edit)| {
            let instance = site.one();
            let store = Store::with_data(&instance, edit(&dataset(&instance)));
            (what, instance, store)
        })
        .collect();
    let sent: Vec<(&str, Store)> = stores.iter().map(|(w, _, s)| (*w, s.clone())).collect();
    let responses = on_default_association(site.port(), move |scu| {
        sent.into_iter()
            .map(|(what, store)| (what, store.send(scu).unwrap()))
            .collect::<Vec<_>>()
    })
    .await;
    for (what, response) in &responses {
        assert_eq!(response.status, SUCCESS, "{what}: {response:?}");
    }
    for (what, instance, store) in &stores {
        let key = site
            .blob_key(&instance.sop_instance_uid)
            .await
            .unwrap_or_else(|| panic!("{what}: not indexed"));
        assert_eq!(
            dicomgen::dataset_bytes(&site.blob_path(&key)).unwrap(),
            store.data,
            "{what}: stored as sent"
        );
    }
    site.assert_blobs_match_rows().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_sets_without_study_series_or_sop_instance_uid_are_refused_with_c000() {
    let Some(site) = local_site() else { return };
    let instance = site.one();
    let without = |what, tag: Tag| {
        let data = edited_dataset(&instance, |o| {
            assert!(o.remove_element(tag));
        });
        Case::new(what, &instance, data)
    };
    let empty_study = edited_dataset(&instance, |o| {
        o.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::Empty,
        ));
    });
    let cases = vec![
        without("no Study Instance UID", tags::STUDY_INSTANCE_UID),
        without("no Series Instance UID", tags::SERIES_INSTANCE_UID),
        Case::new("empty Study Instance UID", &instance, empty_study),
        without("no SOP Instance UID", tags::SOP_INSTANCE_UID),
    ];
    assert_refused(&site, &instance, cases, CANNOT_UNDERSTAND).await;

    let uid = instance.sop_instance_uid.as_str();
    for missing in [
        "has no Study Instance UID",
        "has no Series Instance UID",
        "has no SOP Instance UID",
    ] {
        site.expect_log(&["C-STORE failed", uid, "0xc000", missing])
            .await;
    }
    site.assert_serves().await;
}

/// CT Image Storage in Deflated Explicit VR LE only.
const DEFLATED_CONTEXTS: Contexts = &[(scu::CT_IMAGE_STORAGE, &[scu::DEFLATED_LE])];

#[tokio::test(flavor = "multi_thread")]
async fn truncated_deflated_data_sets_are_refused_with_c000() {
    if !dcmtk::require_tool("storescu") || !dcmtk::require_tool("dcmconv") {
        return;
    }
    let site = Site::local(ServerConfig::default());
    let native = site.one_of(256);
    let deflated = site.work.path().join("deflated.dcm");
    dicomgen::transcode(&native.path, &deflated, dicomgen::Syntax::Deflated).unwrap();
    let full = dicomgen::dataset_bytes(&deflated).unwrap();
    // The last cuts leave every element inflatable but the deflate stream without its end.
    let cuts = [
        40,
        full.len() / 2,
        full.len() - 8,
        full.len() - 2,
        full.len() - 1,
    ];
    let store = Store::with_data(&native, full);
    let responses = on_association(site.port(), DEFLATED_CONTEXTS, move |scu| {
        let mut out = Vec::new();
        for cut in cuts {
            let response = scu.store(&store.class, &store.uid, &store.data[..cut]);
            out.push((cut, response.unwrap()));
        }
        // The whole file goes in.
        out.push((store.data.len(), store.send(scu).unwrap()));
        out
    })
    .await;
    let (whole, cut) = responses.split_last().unwrap();
    assert_eq!(whole.1.status, SUCCESS, "{:?}", whole.1);
    site.assert_blobs_match_rows().await;
    site.assert_no_spool_files().await;
    let key = site.blob_key(&native.sop_instance_uid).await.unwrap();
    let statuses: Vec<(usize, u16)> = cut.iter().map(|(at, r)| (*at, r.status)).collect();
    assert_eq!(
        dicomgen::dataset_bytes(&site.blob_path(&key))
            .unwrap()
            .len(),
        whole.0,
        "the stored copy is the whole stream, not a cut one (statuses by cut: {statuses:x?})"
    );
    for (at, response) in cut {
        assert_eq!(
            response.status, CANNOT_UNDERSTAND,
            "deflated data set of {} bytes cut at {at}: {response:?}",
            whole.0
        );
    }
}

/// Runs `probe` on `site`, checks the site still serves, and returns by how many MiB the
/// server's peak memory grew during the probe.
async fn peak_growth_mib(site: &Site, probe: impl AsyncFnOnce(&Site)) -> u64 {
    let before = site.server.peak_rss_kib();
    probe(site).await;
    let after = site.server.peak_rss_kib();
    site.assert_serves().await;
    after.saturating_sub(before) / 1024
}

/// Element lengths are read from the wire: a 12-byte command set or a 14-byte data set that
/// claims a 1 GiB element must not make the server allocate (and zero) 1 GiB. Each case runs on
/// its own server, since peak memory only grows.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_element_lengths_cost_no_memory() {
    // (0008,0001) with a 1 GiB length, Implicit VR LE: a command set.
    let Some(command_site) = local_site() else {
        return;
    };
    let command_grew = peak_growth_mib(&command_site, async |site: &Site| {
        let port = site.port();
        blocking(move || {
            let mut scu = Scu::connect_default(port);
            let context = scu.context_id(scu::CT_IMAGE_STORAGE);
            scu.send_command(context, b"\x08\x00\x01\x00\x00\x00\x00\x40")
                .unwrap();
            scu.expect_abort();
        })
        .await;
        site.expect_log(&["association ended with an error", "malformed command set"])
            .await;
    })
    .await;

    // (0009,0010) UN with a 1 GiB length, Explicit VR LE: a data set.
    let data_site = Site::local(ServerConfig::default());
    let data_grew = peak_growth_mib(&data_site, async |site: &Site| {
        let data = b"\x09\x00\x10\x00UN\x00\x00\x00\x00\x00\x40";
        let response = on_default_association(site.port(), move |scu| {
            scu.store(scu::CT_IMAGE_STORAGE, "1.2.3.4.5.6.7", data)
                .unwrap()
        })
        .await;
        assert_eq!(response.status, CANNOT_UNDERSTAND, "{response:?}");
        site.assert_not_stored("1.2.3.4.5.6.7").await;
    })
    .await;

    assert!(
        command_grew < 128 && data_grew < 128,
        "peak memory grew by {command_grew} MiB for a 12-byte command set and by {data_grew} MiB for a 14-byte data set",
    );
}
