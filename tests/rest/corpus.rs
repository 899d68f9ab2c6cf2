//! The studies the REST tests send, and what Orthanc says about them: every resource's ID (from
//! the SHA-1 formula), parent, children and main DICOM tags, written from what the generator put
//! in the files, never from what the server answers.
//!
//! - patient 0, `RESTP1` DOE^JOHN (M, 19800101):
//!   - study 0, 20230115 "CT CHEST": CT "Axial 5mm" ×3, CT "Coronal" ×2;
//!   - study 1, 20240220 "MR Brain": MR "T1 axial" ×2;
//! - patient 1, `RESTP2` DOE^JANE (F, 19850505):
//!   - study 2, 20240610 "ct abdomen": CT "Portal venous" ×2, PT "PET AC" ×1;
//! - patient 2, `RESTP3` Müller^Jürgen (M, 19500303):
//!   - study 3, 20221231 "Follow-up": MR "Sagittal T2" ×1, whose instance also has a
//!     sequence, a binary element and a text longer than Orthanc shows.
//!
//! The studies are sent one storescu run each, in this order, a little over a second apart, so
//! their `LastUpdate`s are distinct and increasing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{Value, json};

use crate::common::dcmtk;
use crate::common::dicomgen::{self, Depth, Spec, Syntax};
use crate::common::orthanc_id;
use crate::common::server::Server;
use crate::support::Level;

pub struct PatientPlan {
    pub id: &'static str,
    pub name: &'static str,
    pub birth_date: &'static str,
    pub sex: &'static str,
}

pub const PATIENTS: [PatientPlan; 3] = [
    PatientPlan {
        id: "RESTP1",
        name: "DOE^JOHN",
        birth_date: "19800101",
        sex: "M",
    },
    PatientPlan {
        id: "RESTP2",
        name: "DOE^JANE",
        birth_date: "19850505",
        sex: "F",
    },
    PatientPlan {
        id: "RESTP3",
        name: "Müller^Jürgen",
        birth_date: "19500303",
        sex: "M",
    },
];

struct StudyPlan {
    seed: u64,
    patient: usize,
    date: &'static str,
    description: &'static str,
    accession: &'static str,
    /// (modality, description, instances)
    series: &'static [(&'static str, &'static str, u32)],
}

const STUDIES: [StudyPlan; 4] = [
    StudyPlan {
        seed: 301,
        patient: 0,
        date: "20230115",
        description: "CT CHEST",
        accession: "A-301",
        series: &[("CT", "Axial 5mm", 3), ("CT", "Coronal", 2)],
    },
    StudyPlan {
        seed: 302,
        patient: 0,
        date: "20240220",
        description: "MR Brain",
        accession: "A-302",
        series: &[("MR", "T1 axial", 2)],
    },
    StudyPlan {
        seed: 303,
        patient: 1,
        date: "20240610",
        description: "ct abdomen",
        accession: "A-303",
        series: &[("CT", "Portal venous", 2), ("PT", "PET AC", 1)],
    },
    StudyPlan {
        seed: 304,
        patient: 2,
        date: "20221231",
        description: "Follow-up",
        accession: "A-304",
        series: &[("MR", "Sagittal T2", 1)],
    },
];

/// The one instance (study 3, series 0, instance 0) that also carries a sequence, a binary
/// element and a text longer than Orthanc shows.
pub const EXTENDED: (usize, usize, usize) = (3, 0, 0);
/// Length of its Additional Patient History (more than Orthanc's 256).
pub const LONG_TEXT: usize = 300;

pub const IMAGE_ORIENTATION: &str = "1\\0\\0\\0\\1\\0";

/// What one resource should look like.
#[derive(Clone, Debug)]
pub struct Expected {
    pub level: Level,
    pub id: String,
    pub parent: Option<String>,
    pub children: BTreeSet<String>,
    /// `MainDicomTags`, exactly.
    pub main_tags: Value,
    /// `PatientMainDicomTags` (studies).
    pub patient_tags: Option<Value>,
    /// The identifier `/tools/lookup` finds it by (PatientID or its UID).
    pub uid: String,
    /// Instances: `IndexInSeries` and the file that was sent.
    pub index_in_series: Option<u64>,
    pub file: Option<PathBuf>,
}

pub struct Corpus {
    pub resources: BTreeMap<String, Expected>,
    patients: Vec<String>,
    studies: Vec<String>,
    /// By study, by series number.
    series: Vec<Vec<String>>,
    /// By study, by series, by instance number.
    instances: Vec<Vec<Vec<String>>>,
    /// One folder per study, in sending order.
    dirs: Vec<PathBuf>,
}

impl Corpus {
    /// Writes the files under `dir` and works out what Orthanc would index.
    pub fn generate(dir: &Path) -> Corpus {
        let mut corpus = Corpus {
            resources: BTreeMap::new(),
            patients: PATIENTS.iter().map(|p| orthanc_id(&[p.id])).collect(),
            studies: Vec::new(),
            series: Vec::new(),
            instances: Vec::new(),
            dirs: Vec::new(),
        };
        for patient in &PATIENTS {
            let id = orthanc_id(&[patient.id]);
            corpus.resources.insert(
                id.clone(),
                Expected {
                    level: Level::Patient,
                    id,
                    parent: None,
                    children: BTreeSet::new(),
                    main_tags: patient_tags(patient),
                    patient_tags: None,
                    uid: patient.id.to_string(),
                    index_in_series: None,
                    file: None,
                },
            );
        }
        for (k, plan) in STUDIES.iter().enumerate() {
            corpus.add_study(k, plan, &dir.join(format!("study-{k}")));
        }
        corpus
    }

    fn add_study(&mut self, k: usize, plan: &StudyPlan, dir: &Path) {
        let patient = &PATIENTS[plan.patient];
        let mut spec = Spec::new(plan.seed);
        spec.patient_id = patient.id.into();
        spec.patient_name = patient.name.into();
        spec.birth_date = patient.birth_date.into();
        spec.sex = patient.sex.into();
        spec.study_date = plan.date.into();
        spec.study_description = plan.description.into();
        spec.accession = plan.accession.into();
        spec.series.clear();
        for (modality, description, count) in plan.series {
            spec.add_series(modality, *count, 64, 64, 1, Depth::U12)
                .description = description.to_string();
        }
        let instances = spec.write(dir).expect("generate the study");
        if k == EXTENDED.0 {
            extend(&instances[0].path);
        }
        self.dirs.push(dir.to_path_buf());

        let patient_id = orthanc_id(&[patient.id]);
        let study_id = orthanc_id(&[patient.id, &spec.study_uid]);
        self.resources
            .get_mut(&patient_id)
            .unwrap()
            .children
            .insert(study_id.clone());
        let mut study = Expected {
            level: Level::Study,
            id: study_id.clone(),
            parent: Some(patient_id),
            children: BTreeSet::new(),
            main_tags: json!({
                "StudyDate": spec.study_date,
                "StudyTime": spec.study_time,
                "StudyID": "1",
                "StudyDescription": spec.study_description,
                "AccessionNumber": spec.accession,
                "StudyInstanceUID": spec.study_uid,
                "ReferringPhysicianName": "",
            }),
            patient_tags: Some(patient_tags(patient)),
            uid: spec.study_uid.clone(),
            index_in_series: None,
            file: None,
        };
        let mut study_series = Vec::new();
        let mut study_instances = Vec::new();
        for series in &spec.series {
            let series_id = orthanc_id(&[patient.id, &spec.study_uid, &series.series_uid]);
            study.children.insert(series_id.clone());
            let mut expected = Expected {
                level: Level::Series,
                id: series_id.clone(),
                parent: Some(study_id.clone()),
                children: BTreeSet::new(),
                main_tags: json!({
                    "SeriesDate": spec.study_date,
                    "Modality": series.modality,
                    "Manufacturer": "Orthweb testkit",
                    "SeriesDescription": series.description,
                    "SeriesNumber": series.number.to_string(),
                    "SeriesInstanceUID": series.series_uid,
                    "ImageOrientationPatient": IMAGE_ORIENTATION,
                }),
                patient_tags: None,
                uid: series.series_uid.clone(),
                index_in_series: None,
                file: None,
            };
            let mut series_instances = Vec::new();
            for instance in instances
                .iter()
                .filter(|i| i.series_uid == series.series_uid)
            {
                let id = orthanc_id(&[
                    patient.id,
                    &spec.study_uid,
                    &series.series_uid,
                    &instance.sop_instance_uid,
                ]);
                expected.children.insert(id.clone());
                let z = -(instance.instance_number as f64) * 2.5;
                self.resources.insert(
                    id.clone(),
                    Expected {
                        level: Level::Instance,
                        id: id.clone(),
                        parent: Some(series_id.clone()),
                        children: BTreeSet::new(),
                        main_tags: json!({
                            "InstanceNumber": instance.instance_number.to_string(),
                            "SOPInstanceUID": instance.sop_instance_uid,
                            "ImagePositionPatient": format!("-80\\-80\\{z}"),
                            "ImageOrientationPatient": IMAGE_ORIENTATION,
                        }),
                        patient_tags: None,
                        uid: instance.sop_instance_uid.clone(),
                        index_in_series: Some(u64::from(instance.instance_number)),
                        file: Some(instance.path.clone()),
                    },
                );
                series_instances.push((instance.instance_number, id));
            }
            series_instances.sort();
            study_instances.push(series_instances.into_iter().map(|(_, id)| id).collect());
            self.resources.insert(series_id.clone(), expected);
            study_series.push(series_id);
        }
        self.resources.insert(study_id.clone(), study);
        self.studies.push(study_id);
        self.series.push(study_series);
        self.instances.push(study_instances);
    }

    /// Sends the studies in order, one storescu run each, with a pause between them so that
    /// each has its own `LastUpdate` second.
    pub async fn send(&self, server: &Server) {
        for (k, dir) in self.dirs.iter().enumerate() {
            if k > 0 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            // Explicit VR little endian first, the syntax the files are written in, so the
            // server keeps the data sets byte for byte as written.
            let out =
                dcmtk::storescu("127.0.0.1", server.dicom_port, "ORTHWEB", &[dir], &["-xe"]).await;
            assert!(
                out.status.success(),
                "storescu of study {k}: {}",
                dcmtk::text(&out)
            );
        }
    }

    pub fn get(&self, id: &str) -> &Expected {
        self.resources
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not in the corpus"))
    }

    pub fn patient(&self, p: usize) -> &str {
        &self.patients[p]
    }

    pub fn study(&self, k: usize) -> &str {
        &self.studies[k]
    }

    pub fn series(&self, k: usize, s: usize) -> &str {
        &self.series[k][s]
    }

    /// Instance `i` (0-based; its InstanceNumber is `i + 1`) of series `s` of study `k`.
    pub fn instance(&self, k: usize, s: usize, i: usize) -> &str {
        &self.instances[k][s][i]
    }

    /// Every resource of `level`.
    pub fn all(&self, level: Level) -> impl Iterator<Item = &Expected> {
        self.resources.values().filter(move |r| r.level == level)
    }

    /// The IDs of a level, sorted.
    pub fn ids(&self, level: Level) -> Vec<String> {
        self.all(level).map(|r| r.id.clone()).collect()
    }

    /// The resources of `level` under `id`.
    pub fn under(&self, id: &str, level: Level) -> BTreeSet<String> {
        self.all(level)
            .filter(|r| self.ancestors(&r.id).any(|a| a.id == id))
            .map(|r| r.id.clone())
            .collect()
    }

    /// The ancestors of `id`, nearest first.
    pub fn ancestors<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a Expected> + 'a {
        std::iter::successors(self.get(id).parent.as_deref(), move |p| {
            self.get(p).parent.as_deref()
        })
        .map(move |p| self.get(p))
    }

    /// The ancestor of `id` at `level`.
    pub fn ancestor(&self, id: &str, level: Level) -> &Expected {
        self.ancestors(id)
            .find(|a| a.level == level)
            .unwrap_or_else(|| panic!("{id} has no {level:?} above it"))
    }
}

fn patient_tags(patient: &PatientPlan) -> Value {
    json!({
        "PatientName": patient.name,
        "PatientID": patient.id,
        "PatientBirthDate": patient.birth_date,
        "PatientSex": patient.sex,
    })
}

/// Adds to a generated file a Procedure Code Sequence of one item, a binary (OW) element and an
/// Additional Patient History of [`LONG_TEXT`] characters.
fn extend(path: &Path) {
    let mut file = dicom_object::open_file(path).expect("open the generated file");
    let text =
        |tag: Tag, vr: VR, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let item = InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, "CT123"),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "LOCAL"),
        text(tags::CODE_MEANING, VR::LO, "Chest"),
    ]);
    file.put(DataElement::new(
        tags::PROCEDURE_CODE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    file.put(DataElement::new(
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        VR::OW,
        PrimitiveValue::U16(dicom_core::smallvec::smallvec![0, 1, 2, 3]),
    ));
    file.put(text(
        tags::ADDITIONAL_PATIENT_HISTORY,
        VR::LT,
        &"x".repeat(LONG_TEXT),
    ));
    // Written by dicom-object, then once more by dcmtk: storescu re-encodes what it reads
    // (sequences with explicit lengths), so only dcmtk's own encoding reaches the server as is.
    let edited = path.with_extension("edited.dcm");
    file.write_to_file(&edited).expect("write the edited file");
    dicomgen::transcode(&edited, path, Syntax::ExplicitLE).expect("dcmconv rewrites the file");
    std::fs::remove_file(&edited).unwrap();
}
