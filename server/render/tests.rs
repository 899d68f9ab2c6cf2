//! Rendering small objects built in memory: frame lookup in native and encapsulated pixel data,
//! every native transfer syntax, and the pixel math end to end.

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

use super::*;

fn params(kind: Kind) -> Params {
    Params {
        kind,
        center: None,
        width: None,
        box_width: None,
        box_height: None,
        smooth: false,
        format: Format::Png,
        quality: 90,
    }
}

/// A 2×2 image header with `frames` frames.
fn header(frames: u32, allocated: u16, stored: u16, signed: bool, pi: &str) -> InMemDicomObject {
    let mut object = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| object.put(DataElement::new(tag, vr, value));
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE.into(),
    );
    put(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4".into());
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, pi.into());
    put(tags::NUMBER_OF_FRAMES, VR::IS, frames.to_string().into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(2u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(2u16));
    put(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(allocated),
    );
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(stored));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(stored - 1));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(u16::from(signed)),
    );
    object
}

fn part10(object: InMemDicomObject, ts: &str) -> Vec<u8> {
    let file = object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
        .unwrap();
    let mut out = Vec::new();
    file.write_all(&mut out).unwrap();
    out
}

/// Locates, fetches (from the bytes) and draws frame `frame`.
fn render(file: &[u8], frame: u32, params: &Params) -> Result<Vec<u8>, RenderError> {
    let (header, source) = frame::locate(file, file.len() as u64, frame)?;
    let source = match source {
        FrameSource::NativeRange(r) => {
            FrameSource::Native(file[r.start as usize..r.end as usize].to_vec())
        }
        FrameSource::FragmentRange(r) => FrameSource::Fragments(fragments::parse_items(
            &file[r.start as usize..r.end as usize],
        )?),
        source => source,
    };
    Ok(draw(header, source, frame, params)?.into_bytes())
}

/// Three frames of signed 12-bit CT values (rescale −1024), frame f holding f*100 + [0, 1, 2, 4095-ish].
fn ct(ts: &str) -> Vec<u8> {
    let mut object = header(3, 16, 12, true, "MONOCHROME2");
    object.put(DataElement::new(tags::RESCALE_SLOPE, VR::DS, "2"));
    object.put(DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
    object.put(DataElement::new(tags::WINDOW_CENTER, VR::DS, "0\\100"));
    object.put(DataElement::new(tags::WINDOW_WIDTH, VR::DS, "401\\7"));
    let samples: Vec<u16> = (0..3i16)
        .flat_map(|f| [f * 100, f * 100 + 10, -(f * 100) - 10, 200])
        .map(|v| (v as u16) & 0x0FFF)
        .collect();
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(samples.into()),
    ));
    part10(object, ts)
}

#[test]
fn native_frames_are_found_by_offset_in_every_native_syntax() {
    let file = ct(uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let (header, source) = frame::locate(&file[..], file.len() as u64, 1).unwrap();
    assert_eq!(header.frames, 3);
    let FrameSource::NativeRange(range) = source else {
        panic!("native data is fetched by range: {source:?}")
    };
    // The pixel data value is the last 24 bytes; frame 1 is its second third.
    let end = file.len() as u64;
    assert_eq!(range, end - 16..end - 8);
    // Frame 1: stored 100, 110, -110, 200 → -824, -804, -1244, -624; window 0/401 by default.
    let expected = vec![
        voi::window(-824.0, 0.0, 401.0),
        voi::window(-804.0, 0.0, 401.0),
        voi::window(-1244.0, 0.0, 401.0),
        voi::window(-624.0, 0.0, 401.0),
    ];
    for ts in [
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        "1.2.840.10008.1.2.2", // explicit VR big endian (retired)
        uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    ] {
        let file = ct(ts);
        assert_eq!(
            render(&file, 1, &params(Kind::Rendered)).unwrap(),
            expected,
            "{ts}"
        );
        // Preview of frame 2: 200, 210, -210, 200 → -624, -604, -1444, -624; 820 × 255 / 840.
        assert_eq!(
            render(&file, 2, &params(Kind::Preview)).unwrap(),
            vec![249, 255, 0, 249],
            "{ts}"
        );
        assert!(matches!(
            render(&file, 3, &params(Kind::Preview)),
            Err(RenderError::NoFrame {
                frame: 3,
                frames: 3
            })
        ));
    }
    // A window given in the request replaces the data set's.
    let windowed = Params {
        center: Some(-800.0),
        width: Some(41.0),
        ..params(Kind::Rendered)
    };
    let file = ct(uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(render(&file, 1, &windowed).unwrap(), vec![0, 105, 0, 255]);
}

#[test]
fn monochrome1_is_inverted() {
    let mut object = header(1, 8, 8, false, "MONOCHROME1");
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(vec![0, 10, 20, 30].into()),
    ));
    let file = part10(object, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(
        render(&file, 0, &params(Kind::Preview)).unwrap(),
        vec![255, 170, 85, 0]
    );
}

/// One RLE fragment of a 2×2 8-bit frame: a header with one segment, one literal run.
fn rle_fragment(pixels: [u8; 4]) -> Vec<u8> {
    let mut fragment = vec![0u8; 64];
    fragment[0] = 1;
    fragment[4] = 64;
    fragment.push(3);
    fragment.extend(pixels);
    fragment.push(0); // even length
    fragment
}

fn rle(frames: &[[u8; 4]], offset_table: bool) -> Vec<u8> {
    let mut object = header(frames.len() as u32, 8, 8, false, "MONOCHROME2");
    let fragments: Vec<Vec<u8>> = frames.iter().map(|f| rle_fragment(*f)).collect();
    let offsets = if offset_table {
        (0..frames.len() as u32)
            .map(|i| i * (fragments[0].len() as u32 + 8))
            .collect()
    } else {
        vec![]
    };
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(offsets, fragments),
    ));
    part10(object, uids::RLE_LOSSLESS)
}

#[test]
fn encapsulated_frames_are_found_with_and_without_an_offset_table() {
    let frames = [[0, 1, 2, 3], [10, 20, 30, 40], [4, 4, 8, 8]];
    let with_table = rle(&frames, true);
    let (_, source) = frame::locate(&with_table[..], with_table.len() as u64, 1).unwrap();
    assert!(
        matches!(source, FrameSource::FragmentRange(_)),
        "{source:?}"
    );
    let (_, source) = frame::locate(&with_table[..], with_table.len() as u64, 2).unwrap();
    let FrameSource::FragmentRange(last) = source else {
        panic!("{source:?}")
    };
    assert_eq!(
        last.end,
        with_table.len() as u64,
        "the last frame runs to the end"
    );
    let without = rle(&frames, false);
    let (_, source) = frame::locate(&without[..], without.len() as u64, 1).unwrap();
    assert_eq!(
        source,
        FrameSource::Fragments(vec![rle_fragment(frames[1])])
    );
    for file in [with_table, without] {
        for (n, pixels) in frames.iter().enumerate() {
            let expected: Vec<u8> = voi::stretch(&pixels.map(f64::from));
            assert_eq!(
                render(&file, n as u32, &params(Kind::Preview)).unwrap(),
                expected
            );
        }
        assert!(matches!(
            render(&file, 3, &params(Kind::Preview)),
            Err(RenderError::NoFrame { .. })
        ));
    }
}

#[test]
fn jpeg_frames_split_in_fragments_are_found_by_their_markers() {
    let mut object = header(2, 8, 8, false, "MONOCHROME2");
    let fragments = vec![
        vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2],
        vec![3, 4],
        vec![0xFF, 0xD8, 0xFF, 0xDB, 5, 6],
        vec![7, 8],
    ];
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(vec![], fragments.clone()),
    ));
    let file = part10(object, uids::JPEG_BASELINE8_BIT);
    let (_, source) = frame::locate(&file[..], file.len() as u64, 1).unwrap();
    assert_eq!(source, FrameSource::Fragments(fragments[2..].to_vec()));
    // Garbage where a JPEG stream should be: an error, not a panic.
    assert!(matches!(
        render(&file, 0, &params(Kind::Preview)),
        Err(RenderError::Corrupt(_))
    ));
}

#[test]
fn instances_without_pixel_data_or_cut_short_are_refused() {
    let file = part10(
        header(1, 8, 8, false, "MONOCHROME2"),
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
    );
    assert!(matches!(
        render(&file, 0, &params(Kind::Preview)),
        Err(RenderError::NoPixelData)
    ));
    let file = ct(uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let cut = &file[..file.len() - 30];
    assert!(render(cut, 0, &params(Kind::Preview)).is_err());
    assert!(
        matches!(
            frame::decodable(uids::JPEGLS_LOSSLESS),
            Err(RenderError::Unsupported(_))
        ) != cfg!(feature = "jpeg-ls")
    );
}

#[test]
fn native_ybr_full_422_is_upsampled() {
    let mut object = header(1, 8, 8, false, "YBR_FULL_422");
    object.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(3u16),
    ));
    object.put(DataElement::new(
        tags::PLANAR_CONFIGURATION,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    // Two rows of two gray pixels (Cb = Cr = 128): RGB equals Y.
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(vec![10, 20, 128, 128, 30, 40, 128, 128].into()),
    ));
    let file = part10(object, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(
        render(&file, 0, &params(Kind::Rendered)).unwrap(),
        vec![10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40]
    );
}

#[test]
fn huge_frames_are_refused_before_anything_is_allocated() {
    let mut object = header(1, 16, 16, false, "MONOCHROME2");
    object.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(65535u16),
    ));
    object.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(65535u16),
    ));
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(vec![0; 8].into()),
    ));
    let file = part10(object, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert!(matches!(
        render(&file, 0, &params(Kind::Preview)),
        Err(RenderError::Unsupported(_))
    ));
}
