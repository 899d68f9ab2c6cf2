//! Deterministic DICOM test data: part-10 CT-like studies, a large streamed multi-frame, dcmtk transcoding.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

/// Pixel sample layout. CT is usually 16 allocated / 12 stored; 8-bit exists for JPEG baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    U16,
    U12,
    U8,
}

impl Depth {
    pub fn allocated(self) -> u16 {
        if self == Depth::U8 { 8 } else { 16 }
    }
    pub fn stored(self) -> u16 {
        match self {
            Depth::U16 => 16,
            Depth::U12 => 12,
            Depth::U8 => 8,
        }
    }
    fn bytes(self) -> usize {
        self.allocated() as usize / 8
    }
}

#[derive(Clone, Debug)]
pub struct SeriesSpec {
    pub series_uid: String,
    pub modality: String,
    pub number: i32,
    pub description: String,
    pub instances: u32,
    pub rows: u16,
    pub cols: u16,
    /// > 1 makes multi-frame instances (Multi-frame Grayscale Word/Byte SC).
    pub frames: u32,
    pub depth: Depth,
    /// Pixels of a synthetic chest CT (in HU) instead of the checkable ramps: for the browser
    /// tests and the screenshots, where windows and slices must look like what they are.
    pub phantom: bool,
}

#[derive(Clone, Debug)]
pub struct Spec {
    /// Drives every UID; two specs with the same seed produce identical files.
    pub seed: u64,
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub study_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession: String,
    pub study_description: String,
    pub series: Vec<SeriesSpec>,
}

/// One written file and the identifiers a test will want to look up.
#[derive(Clone, Debug)]
pub struct Instance {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub instance_number: u32,
    pub frames: u32,
}

/// `2.25.<decimal>` from a hash of (seed, parts): stable across runs, distinct across seeds.
pub fn uid(seed: u64, parts: &[u64]) -> String {
    let mut h = splitmix(seed ^ 0x4f52_5448_5745_4221); // "ORTHWEB!"
    for p in parts {
        h = splitmix(h ^ splitmix(*p));
    }
    let v = ((h as u128) << 64 | splitmix(h) as u128).max(1);
    format!("2.25.{v}")
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The pixel pattern: diagonal ramps shifted per frame and per instance, masked to the stored
/// bits, so a decoded image can be checked pixel by pixel and frames/instances tell apart.
pub fn pixel_value(depth: Depth, instance_number: u32, frame: u32, x: u32, y: u32) -> u16 {
    let v = x.wrapping_mul(37)
        + y.wrapping_mul(101)
        + frame.wrapping_mul(1009)
        + instance_number.wrapping_mul(7919);
    (v & ((1u32 << depth.stored()) - 1)) as u16
}

impl Spec {
    /// A small default study: one CT series of 3 single-frame 64x64 16-bit (12 stored) instances.
    pub fn new(seed: u64) -> Spec {
        let mut s = Spec {
            seed,
            patient_id: format!("PID{seed}"),
            patient_name: format!("Test^Patient{seed}"),
            birth_date: "19700101".into(),
            sex: "O".into(),
            study_uid: uid(seed, &[1]),
            study_date: "20240131".into(),
            study_time: "101500".into(),
            accession: format!("ACC{seed}"),
            study_description: "Orthweb test study".into(),
            series: Vec::new(),
        };
        s.add_series("CT", 3, 64, 64, 1, Depth::U12);
        s
    }

    /// Append a series with derived UID/number; returns it for further tweaking.
    pub fn add_series(
        &mut self,
        modality: &str,
        instances: u32,
        rows: u16,
        cols: u16,
        frames: u32,
        depth: Depth,
    ) -> &mut SeriesSpec {
        let n = self.series.len() as u64 + 1;
        self.series.push(SeriesSpec {
            series_uid: uid(self.seed, &[2, n]),
            modality: modality.into(),
            number: n as i32,
            description: format!("Series {n}"),
            instances,
            rows,
            cols,
            frames: frames.max(1),
            depth,
            phantom: false,
        });
        self.series.last_mut().unwrap()
    }

    /// Write every instance as `dir/<series number>_<instance number>.dcm` (Explicit VR LE).
    pub fn write(&self, dir: &Path) -> io::Result<Vec<Instance>> {
        std::fs::create_dir_all(dir)?;
        let mut out = Vec::new();
        for (si, series) in self.series.iter().enumerate() {
            for i in 1..=series.instances {
                let sop_uid = uid(self.seed, &[3, si as u64 + 1, i as u64]);
                let path = dir.join(format!("{}_{i}.dcm", series.number));
                let (header, class) = self.header(series, si, i, &sop_uid);
                write_part10(&path, header, series.depth, series.frames, |frame, buf| {
                    if series.phantom {
                        let slices = series.instances.max(series.frames);
                        let slice = (i - 1).max(frame);
                        fill_phantom(buf, series, slice as f64 / (slices.max(2) - 1) as f64)
                    } else {
                        fill_frame(buf, series.depth, i, frame, series.rows, series.cols)
                    }
                })?;
                out.push(Instance {
                    path,
                    sop_class_uid: class.into(),
                    sop_instance_uid: sop_uid,
                    study_uid: self.study_uid.clone(),
                    series_uid: series.series_uid.clone(),
                    instance_number: i,
                    frames: series.frames,
                });
            }
        }
        Ok(out)
    }

    fn header(
        &self,
        s: &SeriesSpec,
        si: usize,
        i: u32,
        sop_uid: &str,
    ) -> (InMemDicomObject, &'static str) {
        let multi = s.frames > 1;
        let class = match (multi, s.depth) {
            (false, Depth::U8) => uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
            (false, _) => uids::CT_IMAGE_STORAGE,
            (true, Depth::U8) => uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
            (true, _) => uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
        };
        let z = -(i as f64) * 2.5;
        let st = |t: Tag, vr: VR, v: &str| DataElement::new(t, vr, PrimitiveValue::from(v));
        let us = |t: Tag, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
        let mut o = InMemDicomObject::from_element_iter([
            // UTF-8 so tests may use non-ASCII names; dicom-object encodes accordingly.
            st(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
            st(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
            st(tags::SOP_CLASS_UID, VR::UI, class),
            st(tags::SOP_INSTANCE_UID, VR::UI, sop_uid),
            st(tags::STUDY_DATE, VR::DA, &self.study_date),
            st(tags::SERIES_DATE, VR::DA, &self.study_date),
            st(tags::CONTENT_DATE, VR::DA, &self.study_date),
            st(tags::STUDY_TIME, VR::TM, &self.study_time),
            st(tags::CONTENT_TIME, VR::TM, &self.study_time),
            st(tags::ACCESSION_NUMBER, VR::SH, &self.accession),
            st(tags::MODALITY, VR::CS, &s.modality),
            st(tags::MANUFACTURER, VR::LO, "Orthweb testkit"),
            st(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
            st(tags::STUDY_DESCRIPTION, VR::LO, &self.study_description),
            st(tags::SERIES_DESCRIPTION, VR::LO, &s.description),
            st(tags::PATIENT_NAME, VR::PN, &self.patient_name),
            st(tags::PATIENT_ID, VR::LO, &self.patient_id),
            st(tags::PATIENT_BIRTH_DATE, VR::DA, &self.birth_date),
            st(tags::PATIENT_SEX, VR::CS, &self.sex),
            st(tags::SLICE_THICKNESS, VR::DS, "2.5"),
            st(tags::KVP, VR::DS, "120"),
            st(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_uid),
            st(tags::SERIES_INSTANCE_UID, VR::UI, &s.series_uid),
            st(tags::STUDY_ID, VR::SH, "1"),
            st(tags::SERIES_NUMBER, VR::IS, &s.number.to_string()),
            st(tags::INSTANCE_NUMBER, VR::IS, &i.to_string()),
            st(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &format!("-80\\-80\\{z}"),
            ),
            st(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
            st(
                tags::FRAME_OF_REFERENCE_UID,
                VR::UI,
                &uid(self.seed, &[4, si as u64 + 1]),
            ),
            st(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
            st(tags::SLICE_LOCATION, VR::DS, &z.to_string()),
            us(tags::SAMPLES_PER_PIXEL, 1),
            st(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            us(tags::ROWS, s.rows),
            us(tags::COLUMNS, s.cols),
            st(tags::PIXEL_SPACING, VR::DS, "0.5\\0.5"),
            us(tags::BITS_ALLOCATED, s.depth.allocated()),
            us(tags::BITS_STORED, s.depth.stored()),
            us(tags::HIGH_BIT, s.depth.stored() - 1),
            us(tags::PIXEL_REPRESENTATION, 0),
        ]);
        if class == uids::CT_IMAGE_STORAGE {
            o.put(st(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
            o.put(st(tags::RESCALE_SLOPE, VR::DS, "1"));
            o.put(st(tags::WINDOW_CENTER, VR::DS, "40"));
            o.put(st(tags::WINDOW_WIDTH, VR::DS, "400"));
        } else {
            // SC Equipment module: Conversion Type is type 1.
            o.put(st(tags::CONVERSION_TYPE, VR::CS, "WSD"));
        }
        if multi {
            o.put(st(tags::NUMBER_OF_FRAMES, VR::IS, &s.frames.to_string()));
            o.put(DataElement::new(
                tags::FRAME_INCREMENT_POINTER,
                VR::AT,
                PrimitiveValue::Tags(dicom_core::smallvec::smallvec![tags::FRAME_TIME]),
            ));
            o.put(st(tags::FRAME_TIME, VR::DS, "40"));
        }
        (o, class)
    }
}

fn fill_frame(buf: &mut Vec<u8>, depth: Depth, instance: u32, frame: u32, rows: u16, cols: u16) {
    buf.clear();
    for y in 0..rows as u32 {
        for x in 0..cols as u32 {
            let v = pixel_value(depth, instance, frame, x, y);
            match depth {
                Depth::U8 => buf.push(v as u8),
                _ => buf.extend_from_slice(&v.to_le_bytes()),
            }
        }
    }
}

/// One slice of the phantom at height `z` (0 = top, 1 = bottom of the volume), as stored values
/// (HU + 1024, the CT header's rescale intercept being −1024; 8-bit: a soft-tissue window).
fn fill_phantom(buf: &mut Vec<u8>, series: &SeriesSpec, z: f64) {
    buf.clear();
    let (rows, cols) = (series.rows as u32, series.cols as u32);
    for y in 0..rows {
        for x in 0..cols {
            // Four samples a pixel, so edges are smooth as a scanner's would be.
            let mut hu = 0.0;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let u = (x as f64 + dx - cols as f64 / 2.0) / (cols as f64 / 2.0);
                let v = (y as f64 + dy - rows as f64 / 2.0) / (rows as f64 / 2.0);
                hu += phantom_hu(u, v, z) / 4.0;
            }
            let noise =
                (splitmix((y as u64) << 32 | x as u64 ^ (z * 1e6) as u64) % 31) as f64 - 15.0;
            let hu = hu + noise;
            match series.depth {
                Depth::U8 => buf.push(((hu + 160.0) / 400.0 * 255.0).clamp(0.0, 255.0) as u8),
                depth => {
                    let max = ((1u32 << depth.stored()) - 1) as f64;
                    let stored = (hu + 1024.0).clamp(0.0, max) as u16;
                    buf.extend_from_slice(&stored.to_le_bytes());
                }
            }
        }
    }
}

/// Hounsfield units of a crude chest: body, fat, lungs that grow and shrink along the volume,
/// heart, aorta, spine and ribs.
fn phantom_hu(u: f64, v: f64, z: f64) -> f64 {
    let inside = |cu: f64, cv: f64, ru: f64, rv: f64| {
        ((u - cu) / ru).powi(2) + ((v - cv) / rv).powi(2) <= 1.0
    };
    let lung_scale = 0.55 + 0.45 * (std::f64::consts::PI * z).sin();
    if !inside(0.0, 0.0, 0.88, 0.68) {
        return -1000.0;
    }
    if inside(0.0, 0.55, 0.09, 0.09) {
        return if inside(0.0, 0.55, 0.035, 0.035) {
            20.0
        } else {
            750.0
        };
    }
    for k in 0..9 {
        let angle = std::f64::consts::PI * (0.15 + 0.7 * k as f64 / 8.0);
        for side in [-1.0, 1.0] {
            let (cu, cv) = (side * 0.74 * angle.cos().abs(), -0.56 * angle.sin() + 0.1);
            if inside(cu, cv, 0.035, 0.035) {
                return 650.0;
            }
        }
    }
    if inside(-0.08, 0.32, 0.065, 0.065) {
        return 170.0;
    }
    if inside(0.12, 0.02, 0.24 * (1.1 - 0.4 * z), 0.2 * (1.1 - 0.4 * z)) {
        return 45.0;
    }
    for side in [-1.0, 1.0] {
        if inside(side * 0.38, -0.02, 0.26 * lung_scale, 0.4 * lung_scale) {
            let vessel = ((u * 23.0).sin() * (v * 19.0 + z * 7.0).cos()).abs() > 0.97;
            return if vessel { 30.0 } else { -840.0 };
        }
    }
    if inside(0.0, 0.0, 0.8, 0.6) {
        40.0
    } else {
        -100.0
    }
}

/// Write header (everything but Pixel Data) with dicom-object, then append Pixel Data by hand one
/// frame at a time. Pixel Data is the last element, so this is a valid Explicit VR LE file and
/// memory stays at one frame however large the instance is.
fn write_part10(
    path: &Path,
    header: InMemDicomObject,
    depth: Depth,
    frames: u32,
    mut frame: impl FnMut(u32, &mut Vec<u8>),
) -> io::Result<()> {
    let obj = header
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(io::Error::other)?;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    obj.write_all(&mut w).map_err(io::Error::other)?;
    let mut buf = Vec::new();
    frame(0, &mut buf);
    let total = buf.len() as u64 * frames as u64;
    let padded = total + (total & 1); // element values have even length
    let len = u32::try_from(padded).map_err(|_| io::Error::other("pixel data over 4 GiB"))?;
    w.write_all(&[0xE0, 0x7F, 0x10, 0x00])?; // (7FE0,0010)
    w.write_all(if depth == Depth::U8 {
        b"OB\0\0"
    } else {
        b"OW\0\0"
    })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&buf)?;
    for f in 1..frames {
        frame(f, &mut buf);
        w.write_all(&buf)?;
    }
    if padded != total {
        w.write_all(&[0])?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// A multi-frame 512x512 16-bit instance of at least `megabytes` MiB of pixel data (200 frames per
/// 100 MiB), streamed to disk with one frame (512 KiB) in memory.
pub fn large_multiframe(path: &Path, megabytes: u32) -> io::Result<Instance> {
    let mut spec = Spec::new(0x1a2_6e00 + megabytes as u64);
    spec.series.clear();
    let frame_bytes = 512 * 512 * 2;
    let frames = (megabytes as u64 * 1024 * 1024).div_ceil(frame_bytes) as u32;
    spec.add_series("OT", 1, 512, 512, frames.max(2), Depth::U16);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut inst = spec.write(dir)?.pop().unwrap();
    std::fs::rename(&inst.path, path)?;
    inst.path = path.to_path_buf();
    Ok(inst)
}

/// Offset of the data set in a part-10 byte string: walks the (Explicit VR LE) group 0002
/// elements after the preamble and "DICM". None if this is not a part-10 file.
pub fn dataset_offset(bytes: &[u8]) -> Option<usize> {
    meta_elements(bytes).map(|(end, _)| end)
}

/// The data-set bytes of a part-10 file (everything after the file meta group), to compare
/// what a server stored with what was sent.
pub fn dataset_bytes(path: &Path) -> io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    let off = dataset_offset(&bytes).ok_or_else(|| io::Error::other("not a DICOM part-10 file"))?;
    Ok(bytes[off..].to_vec())
}

/// Transfer Syntax UID from the file meta group (trailing NUL/space stripped).
pub fn file_transfer_syntax(path: &Path) -> io::Result<String> {
    let mut head = vec![0u8; 64 * 1024];
    let n = io::Read::read(&mut File::open(path)?, &mut head)?;
    let (_, elems) =
        meta_elements(&head[..n]).ok_or_else(|| io::Error::other("not a DICOM part-10 file"))?;
    elems
        .into_iter()
        .find(|(t, _)| *t == 0x0010)
        .map(|(_, v)| {
            String::from_utf8_lossy(v)
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .ok_or_else(|| io::Error::other("no (0002,0010)"))
}

/// (element number in group 0002, value bytes)
type MetaElement<'a> = (u16, &'a [u8]);

/// End offset of the meta group and its elements.
fn meta_elements(b: &[u8]) -> Option<(usize, Vec<MetaElement<'_>>)> {
    if b.len() < 132 || &b[128..132] != b"DICM" {
        return None;
    }
    let (mut pos, mut out) = (132, Vec::new());
    let u16_at = |p: usize| u16::from_le_bytes([b[p], b[p + 1]]);
    while pos + 8 <= b.len() && u16_at(pos) == 0x0002 {
        let elem = u16_at(pos + 2);
        let long = matches!(
            &b[pos + 4..pos + 6],
            b"OB"
                | b"OW"
                | b"OF"
                | b"OD"
                | b"OL"
                | b"OV"
                | b"SQ"
                | b"UT"
                | b"UN"
                | b"UC"
                | b"UR"
                | b"SV"
                | b"UV"
        );
        let (hdr, len) = if long {
            (
                12,
                u32::from_le_bytes(b.get(pos + 8..pos + 12)?.try_into().ok()?) as usize,
            )
        } else {
            (8, u16_at(pos + 6) as usize)
        };
        out.push((elem, b.get(pos + hdr..pos + hdr + len)?));
        pos += hdr + len;
    }
    Some((pos, out))
}

/// Transfer syntaxes the kit can produce with dcmtk, with what storescu needs to propose them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    ImplicitLE,
    ExplicitLE,
    ExplicitBE,
    Deflated,
    /// Process 1, 8-bit only (use `Depth::U8`).
    JpegBaseline,
    /// Process 2/4, 8- or 12-bit (`Depth::U8`/`U12`).
    JpegExtended,
    /// Process 14, any predictor (1.2.840.10008.1.2.4.57).
    JpegLossless,
    /// Process 14 selection value 1 (1.2.840.10008.1.2.4.70), the usual "JPEG lossless".
    JpegLosslessSV1,
    Rle,
    JpegLsLossless,
    JpegLsNearLossless,
}

impl Syntax {
    pub const ALL: [Syntax; 11] = [
        Syntax::ImplicitLE,
        Syntax::ExplicitLE,
        Syntax::ExplicitBE,
        Syntax::Deflated,
        Syntax::JpegBaseline,
        Syntax::JpegExtended,
        Syntax::JpegLossless,
        Syntax::JpegLosslessSV1,
        Syntax::Rle,
        Syntax::JpegLsLossless,
        Syntax::JpegLsNearLossless,
    ];

    pub fn uid(self) -> &'static str {
        match self {
            Syntax::ImplicitLE => "1.2.840.10008.1.2",
            Syntax::ExplicitLE => "1.2.840.10008.1.2.1",
            Syntax::ExplicitBE => "1.2.840.10008.1.2.2",
            Syntax::Deflated => "1.2.840.10008.1.2.1.99",
            Syntax::JpegBaseline => "1.2.840.10008.1.2.4.50",
            Syntax::JpegExtended => "1.2.840.10008.1.2.4.51",
            Syntax::JpegLossless => "1.2.840.10008.1.2.4.57",
            Syntax::JpegLosslessSV1 => "1.2.840.10008.1.2.4.70",
            Syntax::Rle => "1.2.840.10008.1.2.5",
            Syntax::JpegLsLossless => "1.2.840.10008.1.2.4.80",
            Syntax::JpegLsNearLossless => "1.2.840.10008.1.2.4.81",
        }
    }

    /// storescu option that proposes this syntax. Without it storescu proposes only uncompressed
    /// syntaxes and silently *decompresses* compressed files before sending. `None` for
    /// JPEG lossless .57, which has no flag: use `dcmtk::storescu_config` instead.
    pub fn storescu_flag(self) -> Option<&'static str> {
        Some(match self {
            Syntax::ImplicitLE => "-xi",
            Syntax::ExplicitLE => "-xe",
            Syntax::ExplicitBE => "-xb",
            Syntax::Deflated => "-xd",
            Syntax::JpegBaseline => "-xy",
            Syntax::JpegExtended => "-xx",
            Syntax::JpegLossless => return None,
            Syntax::JpegLosslessSV1 => "-xs",
            Syntax::Rle => "-xr",
            Syntax::JpegLsLossless => "-xt",
            Syntax::JpegLsNearLossless => "-xu",
        })
    }

    pub fn is_encapsulated(self) -> bool {
        !matches!(
            self,
            Syntax::ImplicitLE | Syntax::ExplicitLE | Syntax::ExplicitBE | Syntax::Deflated
        )
    }

    pub fn is_lossy(self) -> bool {
        matches!(
            self,
            Syntax::JpegBaseline | Syntax::JpegExtended | Syntax::JpegLsNearLossless
        )
    }

    /// Whether dcmtk can encode images of this depth in this syntax.
    pub fn supports(self, depth: Depth) -> bool {
        match self {
            Syntax::JpegBaseline => depth == Depth::U8,
            Syntax::JpegExtended => depth != Depth::U16,
            _ => true,
        }
    }

    /// The dcmtk tool `transcode` runs (for `dcmtk::require_tool`).
    pub fn tool(self) -> &'static str {
        match self {
            Syntax::ImplicitLE | Syntax::ExplicitLE | Syntax::ExplicitBE | Syntax::Deflated => {
                "dcmconv"
            }
            Syntax::JpegBaseline
            | Syntax::JpegExtended
            | Syntax::JpegLossless
            | Syntax::JpegLosslessSV1 => "dcmcjpeg",
            Syntax::Rle => "dcmcrle",
            Syntax::JpegLsLossless | Syntax::JpegLsNearLossless => "dcmcjpls",
        }
    }

    fn tool_args(self) -> &'static [&'static str] {
        // `+un`: keep the SOP Instance UID even for lossy output (dcmtk's default assigns a new
        // one), so tests can find the instance they sent.
        match self {
            Syntax::ImplicitLE => &["+ti"],
            Syntax::ExplicitLE => &["+te"],
            Syntax::ExplicitBE => &["+tb"],
            Syntax::Deflated => &["+td"],
            Syntax::JpegBaseline => &["+eb", "+un"],
            Syntax::JpegExtended => &["+ee", "+un"],
            Syntax::JpegLossless => &["+el", "+un"],
            Syntax::JpegLosslessSV1 => &["+e1", "+un"],
            Syntax::Rle => &["+un"],
            Syntax::JpegLsLossless => &["+el", "+un"],
            Syntax::JpegLsNearLossless => &["+en", "+un"],
        }
    }
}

/// Re-encode an uncompressed part-10 file `src` into `dst` in `ts` with dcmtk.
pub fn transcode(src: &Path, dst: &Path, ts: Syntax) -> io::Result<()> {
    let out = Command::new(ts.tool())
        .args(ts.tool_args())
        .arg(src)
        .arg(dst)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} {:?} failed: {}{}",
            ts.tool(),
            ts,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}
