//! The expectations: runs `make_images.py` with Debian's Python (pydicom, numpy, Pillow) and
//! reads the manifest it writes. Nothing here computes a pixel.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::common::dcmtk;
use crate::common::missing;

const PYTHON: &str = "/usr/bin/python3";

/// The dcmtk tools the script encodes and decodes with.
const TOOLS: [&str; 6] = [
    "dcmconv", "dcmcrle", "dcmcjpeg", "dcmdjpeg", "dcmcjpls", "dcmdjpls",
];

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub instances: Vec<InstanceSpec>,
    pub checks: Vec<Check>,
    /// The instance the resize, JPEG and ETag checks use.
    pub primary: String,
    /// A multi-frame instance, for frame numbers out of range.
    pub multiframe: String,
}

#[derive(Debug, Deserialize)]
pub struct InstanceSpec {
    pub name: String,
    pub file: String,
    pub syntax: String,
    pub frames: u32,
    /// A cargo feature the server needs to decode this syntax (`jpeg-ls`).
    pub needs: Option<String>,
}

/// One request and the pixels it must answer.
#[derive(Clone, Debug, Deserialize)]
pub struct Check {
    #[serde(default)]
    pub instance: String,
    /// Relative to `/instances/{id}/`: `rendered`, `frames/2/preview?…`.
    pub request: String,
    /// A raw file of rows × cols × channels bytes, row-major.
    pub expected: String,
    pub rows: u32,
    pub cols: u32,
    pub channels: u32,
    /// Largest difference allowed at any sample.
    pub max_diff: u8,
    /// Largest mean absolute difference allowed (lossy syntaxes).
    pub mean_diff: Option<f64>,
}

impl Manifest {
    pub fn instance(&self, name: &str) -> &InstanceSpec {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name} in the manifest"))
    }
}

/// Expected pixels, read from the script's raw file.
pub struct Expected {
    pub rows: u32,
    pub cols: u32,
    pub channels: u32,
    pub samples: Vec<u8>,
}

impl Check {
    pub fn load(&self, dir: &Path) -> Expected {
        let path = dir.join(&self.expected);
        let samples = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("read the expectation {}: {e}", path.display()));
        assert_eq!(
            samples.len() as u64,
            self.rows as u64 * self.cols as u64 * self.channels as u64,
            "{}: size of the expectation",
            path.display()
        );
        Expected {
            rows: self.rows,
            cols: self.cols,
            channels: self.channels,
            samples,
        }
    }
}

/// Whether Python with pydicom, numpy and Pillow (with JPEG 2000) and the dcmtk tools are
/// installed; otherwise fails under CI, or prints why the test skips.
pub fn prerequisites(extra_tools: &[&str]) -> bool {
    let python = Command::new(PYTHON)
        .args([
            "-c",
            "import numpy, pydicom; from PIL import features; \
             assert features.check('jpg_2000'), 'Pillow without JPEG 2000'",
        ])
        .output();
    let python_ok = match python {
        Ok(out) if out.status.success() => true,
        Ok(out) => missing(&format!(
            "{PYTHON} cannot import pydicom, numpy or Pillow with JPEG 2000 ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => missing(&format!("{PYTHON} does not run ({e})")),
    };
    python_ok
        && TOOLS
            .iter()
            .chain(extra_tools)
            .all(|tool| dcmtk::require_tool(tool))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render/make_images.py")
}

fn run(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(PYTHON)
        .arg(script())
        .args(args)
        .output()
        .expect("run make_images.py");
    assert!(
        out.status.success(),
        "make_images.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes the images and their expectations into `dir` and returns the manifest.
pub fn make_images(dir: &Path) -> Manifest {
    run(&[dir.as_os_str()]);
    manifest(dir)
}

/// Writes only the instances named (`multiframe.rle_nobot`) and their checks.
pub fn make_some(dir: &Path, names: &[&str]) -> Manifest {
    let names = names.join(",");
    run(&["--only".as_ref(), names.as_ref(), dir.as_os_str()]);
    manifest(dir)
}

fn manifest(dir: &Path) -> Manifest {
    let text = std::fs::read(dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_slice(&text).expect("a manifest")
}

/// The check of the default rendering of `file`'s last frame.
pub fn large(file: &Path) -> Check {
    let stdout = run(&["--large".as_ref(), file.as_os_str()]);
    serde_json::from_slice(&stdout).expect("a check on stdout")
}
