//! Writes a synthetic archive for query benchmarks (`bench/query`):
//! `gen_corpus OUT_DIR [STUDIES] [INSTANCES_PER_STUDY] [THREADS]` (defaults 1000, 100, 4).
//!
//! One patient per study, with names built from a few syllables (so that `SMI*` or `*AN*`
//! select a fraction of them), study dates spread over 2018–2025, a handful of modalities and
//! descriptions, 1 to 4 series per study. Images are 16×16 so that 100,000 instances take
//! little disk and time. Everything derives from the study number: two runs write identical
//! files. Besides `OUT_DIR/sNNNNN/*.dcm` it writes `OUT_DIR/manifest.tsv` (one line per study:
//! number, PatientID, PatientName, StudyDate, modalities, description), from which the
//! benchmark computes the answers it expects, and last `OUT_DIR/complete`, whose presence
//! means the corpus is whole.

#[path = "../tests/common/dicomgen.rs"]
#[allow(dead_code)]
mod dicomgen;

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use dicomgen::{Depth, Spec};

const FAMILY_FIRST: &[&str] = &[
    "SMI", "JOHN", "BER", "KO", "LI", "MAR", "TEN", "DU", "RO", "VAL", "NO", "WA", "KI", "EL",
    "HAR", "BRA",
];
const FAMILY_SECOND: &[&str] = &[
    "TH", "SON", "GER", "VAC", "NDE", "TIN", "NANT", "BOIS", "SSI", "DEZ", "LAN", "DA", "MURA",
    "LIS", "DY", "NKE",
];
const GIVEN: &[&str] = &[
    "ANNA", "JOHN", "MARIA", "PETER", "LUCIE", "KENJI", "OMAR", "ELENA", "PAUL", "SOFIA", "IVAN",
    "CHLOE", "DAVID", "YUKI", "HANS", "EMMA",
];
/// (series modalities, study description).
const KINDS: &[(&[&str], &str)] = &[
    (&["CT"], "CT THORAX"),
    (&["CT", "CT"], "CT ABDOMEN PELVIS"),
    (&["MR", "MR", "MR"], "MR BRAIN"),
    (&["MR", "MR", "MR", "MR"], "MR KNEE LEFT"),
    (&["CR", "CR"], "CR CHEST PA LAT"),
    (&["US"], "US ABDOMEN"),
    (&["PT", "CT"], "PET-CT WHOLE BODY"),
    (&["MG", "MG", "MG", "MG"], "MAMMOGRAPHY SCREENING"),
];

fn hash(study: u32, salt: u64) -> u64 {
    let mut x = (u64::from(study) << 8 | salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<T: Copy>(items: &[T], study: u32, salt: u64) -> T {
    items[(hash(study, salt) % items.len() as u64) as usize]
}

/// The study's spec and its manifest line.
fn study(number: u32, instances: u32) -> (Spec, String) {
    let mut spec = Spec::new(7_000_000 + u64::from(number));
    spec.series.clear();
    spec.patient_id = format!("QB{number:06}");
    spec.patient_name = format!(
        "{}{}^{}",
        pick(FAMILY_FIRST, number, 1),
        pick(FAMILY_SECOND, number, 2),
        pick(GIVEN, number, 3)
    );
    spec.sex = pick(&["F", "M"], number, 4).into();
    spec.birth_date = format!(
        "{}{:02}{:02}",
        1930 + hash(number, 5) % 90,
        1 + hash(number, 6) % 12,
        1 + hash(number, 7) % 28
    );
    spec.study_date = format!(
        "{}{:02}{:02}",
        2018 + hash(number, 8) % 8,
        1 + hash(number, 9) % 12,
        1 + hash(number, 10) % 28
    );
    spec.study_time = format!(
        "{:02}{:02}{:02}",
        7 + hash(number, 11) % 12,
        hash(number, 12) % 60,
        hash(number, 13) % 60
    );
    spec.accession = format!("QA{number:07}");
    let (modalities, description) = pick(KINDS, number, 14);
    spec.study_description = description.into();
    let n = modalities.len() as u32;
    for (i, modality) in modalities.iter().enumerate() {
        let count = instances / n + u32::from((i as u32) < instances % n);
        let series = spec.add_series(modality, count, 16, 16, 1, Depth::U12);
        series.description = format!("{description} {}", i + 1);
    }
    let mut distinct: Vec<&str> = modalities.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let line = format!(
        "{number}\t{}\t{}\t{}\t{}\t{description}\n",
        spec.patient_id,
        spec.patient_name,
        spec.study_date,
        distinct.join("\\")
    );
    (spec, line)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: gen_corpus OUT_DIR [STUDIES] [INSTANCES_PER_STUDY] [THREADS]");
        std::process::exit(2);
    }
    let number = |i: usize, default: u32| -> u32 {
        args.get(i)
            .map(|s| s.parse().expect("arguments after OUT_DIR are numbers"))
            .unwrap_or(default)
    };
    let out = std::path::PathBuf::from(&args[1]);
    let (studies, per_study, threads) = (number(2, 1000), number(3, 100), number(4, 4).max(1));
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let _ = std::fs::remove_file(out.join("complete"));

    let next = AtomicU32::new(0);
    let (files, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut lines = vec![String::new(); studies as usize];
    let chunks: Vec<Vec<(u32, String)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= studies {
                            return mine;
                        }
                        let (spec, line) = study(n, per_study);
                        // dicomgen syncs every file; the corpus is made once and reused.
                        for instance in spec
                            .write(&out.join(format!("s{n:05}")))
                            .expect("write study")
                        {
                            let len = std::fs::metadata(&instance.path).expect("written").len();
                            bytes.fetch_add(len, Ordering::Relaxed);
                            files.fetch_add(1, Ordering::Relaxed);
                        }
                        mine.push((n, line));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (n, line) in chunks.into_iter().flatten() {
        lines[n as usize] = line;
    }
    let mut manifest = std::fs::File::create(out.join("manifest.tsv")).expect("manifest");
    manifest
        .write_all(
            "study\tPatientID\tPatientName\tStudyDate\tModalities\tStudyDescription\n".as_bytes(),
        )
        .and_then(|()| manifest.write_all(lines.concat().as_bytes()))
        .and_then(|()| manifest.sync_all())
        .expect("write manifest");
    let files = files.into_inner();
    std::fs::write(
        out.join("complete"),
        format!("studies={studies} instances_per_study={per_study} files={files}\n"),
    )
    .expect("write marker");
    println!(
        "{files} instances, {} bytes in {}",
        bytes.into_inner(),
        out.display()
    );
}
