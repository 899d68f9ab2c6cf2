//! Writes one synthetic chest CT series for the rendering benchmark:
//! `gen_phantom OUT_DIR COUNT [SEED]`. COUNT 512×512 slices, 16 bits allocated, 12 stored,
//! rescale intercept −1024 and a 40/400 window, in Explicit VR Little Endian: the phantom of the
//! browser tests (body, lungs, heart, spine, ribs, noise), so that windowed renderings and their
//! PNG/JPEG sizes look like those of a real CT rather than of the tests' checkable ramps. Two
//! seeds give two studies with distinct UIDs and the same pixels.

#[path = "../tests/common/dicomgen.rs"]
#[allow(dead_code)]
mod dicomgen;

use dicomgen::{Depth, Spec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_phantom OUT_DIR COUNT [SEED]");
        std::process::exit(2);
    }
    let out = std::path::PathBuf::from(&args[1]);
    let count: u32 = args[2].parse().expect("COUNT is a number");
    let seed: u64 = args
        .get(3)
        .map(|s| s.parse().expect("SEED is a number"))
        .unwrap_or(7000);
    let mut spec = Spec::new(seed);
    spec.series.clear();
    spec.add_series("CT", count, 512, 512, 1, Depth::U12)
        .phantom = true;
    let mut bytes = 0u64;
    let written = spec.write(&out).expect("write series");
    for instance in &written {
        bytes += std::fs::metadata(&instance.path).expect("written").len();
    }
    println!(
        "{} instances, {bytes} bytes in {}",
        written.len(),
        out.display()
    );
}
