//! Writes synthetic CT studies for benchmarks: `gen_studies OUT_DIR COUNT [STUDIES] [SIZE] [SEED]`.
//! SIZE×SIZE (default 512) 16-bit slices in Explicit VR Little Endian, the same generator the
//! tests use. Different SEEDs (default 5000) give different UIDs.

#[path = "../tests/common/dicomgen.rs"]
#[allow(dead_code)]
mod dicomgen;

use dicomgen::{Depth, Spec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_studies OUT_DIR COUNT [STUDIES] [SIZE] [SEED]");
        std::process::exit(2);
    }
    let out = std::path::PathBuf::from(&args[1]);
    let count: u32 = args[2].parse().expect("COUNT is a number");
    let studies: u32 = args
        .get(3)
        .map(|s| s.parse().expect("STUDIES is a number"))
        .unwrap_or(1);
    let size: u16 = args
        .get(4)
        .map(|s| s.parse().expect("SIZE is a number"))
        .unwrap_or(512);
    let seed: u64 = args
        .get(5)
        .map(|s| s.parse().expect("SEED is a number"))
        .unwrap_or(5000);
    let mut bytes = 0u64;
    let mut written = 0u32;
    for study in 0..studies {
        let n = count / studies + u32::from(study < count % studies);
        let mut spec = Spec::new(seed + u64::from(study));
        spec.series.clear();
        spec.add_series("CT", n, size, size, 1, Depth::U12);
        for instance in spec
            .write(&out.join(format!("study{study}")))
            .expect("write study")
        {
            bytes += std::fs::metadata(&instance.path).expect("written").len();
            written += 1;
        }
    }
    println!("{written} instances, {bytes} bytes in {}", out.display());
}
