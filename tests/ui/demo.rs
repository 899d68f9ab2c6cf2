//! Studies that look like a small clinic's day: chest CTs of the phantom with a few series, a
//! cine run, and a list of other patients, sent with dcmtk's `storescu` as a modality would.

use std::path::Path;

use crate::common::dcmtk;
use crate::common::dicomgen::{Depth, Instance, Spec};

/// The study the test opens and looks at.
pub const MAIN_PATIENT: &str = "DOE^JANE";
pub const MAIN_SLICES: u32 = 24;

const OTHERS: [(&str, &str, &str, &str); 10] = [
    ("SMITH^JOHN", "CT", "CT THORAX W/O CONTRAST", "20260312"),
    ("GARCIA^MARIA", "CT", "CT ABDOMEN PELVIS", "20260221"),
    ("NGUYEN^AN", "CT", "CT CHEST LOW DOSE", "20251130"),
    ("MÜLLER^ANNA", "CT", "CT ANGIO CHEST", "20251004"),
    ("OKAFOR^CHIDI", "CT", "CT CHEST HIGH RESOLUTION", "20250817"),
    ("ROSSI^LUCA", "CT", "CT THORAX FOLLOW-UP", "20250602"),
    ("TANAKA^YUKI", "CT", "CT CARDIAC", "20250415"),
    ("DUBOIS^CLAIRE", "CT", "CT CHEST TRAUMA", "20250109"),
    ("KOWALSKI^PIOTR", "CT", "CT PULMONARY EMBOLISM", "20241120"),
    ("HASSAN^LAYLA", "CT", "CT CHEST W CONTRAST", "20240905"),
];

/// The main study's patient ID.
pub const MAIN_PATIENT_ID: &str = "MRN-104233";

/// Writes every study under `dir` and returns the instances of the main study.
pub fn write(dir: &Path) -> Vec<Instance> {
    let instances = write_main(dir);
    write_others(dir);
    instances
}

/// Writes the main study under `dir/main`.
pub fn write_main(dir: &Path) -> Vec<Instance> {
    let mut main = Spec::new(7001);
    main.patient_id = MAIN_PATIENT_ID.into();
    main.patient_name = MAIN_PATIENT.into();
    main.birth_date = "19640518".into();
    main.sex = "F".into();
    main.study_date = "20260415".into();
    main.accession = "A26-0415-031".into();
    main.study_description = "CT CHEST W CONTRAST".into();
    main.series.clear();
    for (description, rows) in [("AXIAL 2.5MM SOFT TISSUE", 256), ("AXIAL 5MM LUNG", 192)] {
        let series = main.add_series("CT", MAIN_SLICES, rows, rows, 1, Depth::U12);
        series.description = description.into();
        series.phantom = true;
    }
    let cine = main.add_series("CT", 1, 128, 128, 16, Depth::U16);
    cine.description = "CINE BREATH HOLD".into();
    cine.phantom = true;
    main.write(&dir.join("main")).unwrap()
}

/// Writes the other patients' studies under `dir/other-N`.
fn write_others(dir: &Path) {
    for (n, (name, modality, description, date)) in OTHERS.iter().enumerate() {
        let mut spec = Spec::new(7100 + n as u64);
        spec.patient_id = format!("MRN-{}", 200311 + n * 7919);
        spec.patient_name = (*name).into();
        spec.birth_date = format!("19{}0{}1{}", 40 + n * 4, 1 + n % 9, n % 10);
        spec.sex = if n % 2 == 0 { "M" } else { "F" }.into();
        spec.study_date = (*date).into();
        spec.accession = format!("A{}-{:04}", &date[2..4], 100 + n * 37);
        spec.study_description = (*description).into();
        spec.series.clear();
        let series = spec.add_series(modality, 4, 128, 128, 1, Depth::U12);
        series.description = "AXIAL 5MM".into();
        series.phantom = true;
        spec.write(&dir.join(format!("other-{n}"))).unwrap();
    }
}

/// One study, not yet in the archive, for the upload.
pub fn upload_file(dir: &Path) -> Instance {
    let mut spec = Spec::new(7500);
    spec.patient_id = "MRN-990001".into();
    spec.patient_name = "UPLOAD^WALK-IN".into();
    spec.study_description = "CD IMPORT".into();
    spec.series.clear();
    let series = spec.add_series("CT", 1, 128, 128, 1, Depth::U12);
    series.phantom = true;
    spec.write(dir).unwrap().pop().unwrap()
}

/// Sends everything under `dir`.
pub async fn send(dir: &Path, port: u16) {
    let out = dcmtk::storescu("127.0.0.1", port, "ORTHWEB", &[dir], &[]).await;
    assert!(out.status.success(), "storescu: {}", dcmtk::text(&out));
}
