//! Checks of an encapsulated frame before dicom-pixeldata decodes it. Its decoders (0.10.1)
//! trust the frame to match the data set and panic when it does not: the RLE decoder indexes
//! the header and the decoded segments without bounds checks (a header cut short, more than 15
//! segments, a segment that decodes to fewer bytes than the frame has pixels); the JPEG one
//! copies the decoded image into a buffer sized from Rows, Columns and Samples per Pixel (a
//! JPEG larger than the data set says). The server would answer 422 all the same (a panic on
//! a render thread is caught), but with a clearer reason and no panic in the log.

use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::RenderError;
use super::frame::int;

/// The RLE header: the number of segments and 15 offsets, 32-bit little endian each.
const HEADER: usize = 64;
const MAX_SEGMENTS: usize = 15;

/// Checks frame `fragments` of a data set in transfer syntax `ts` for what its decoder needs.
pub(crate) fn check(
    ts: &str,
    dataset: &InMemDicomObject,
    fragments: &[Vec<u8>],
) -> Result<(), RenderError> {
    let value = |tag: Tag, default: i64| int(dataset, tag).unwrap_or(default).max(0) as u64;
    let allocated = value(tags::BITS_ALLOCATED, 8);
    // Other depths are refused by the decoders themselves, without a panic.
    if !matches!(allocated, 8 | 16) {
        return Ok(());
    }
    let pixels = value(tags::ROWS, 0).saturating_mul(value(tags::COLUMNS, 0));
    // The decoders size the frame from Samples per Pixel as it is: with 0, the JPEG one writes
    // its image into an empty buffer.
    let samples = value(tags::SAMPLES_PER_PIXEL, 1);
    if samples == 0 {
        return Err(RenderError::Corrupt("Samples per Pixel is 0".into()));
    }
    let samples = samples.min(4);
    match ts {
        uids::RLE_LOSSLESS => match fragments.first() {
            Some(fragment) => rle_frame(fragment, (samples * allocated / 8) as usize, pixels),
            None => Ok(()),
        },
        uids::JPEG_BASELINE8_BIT
        | uids::JPEG_EXTENDED12_BIT
        | uids::JPEG_LOSSLESS
        | uids::JPEG_LOSSLESS_SV1 => {
            // One fragment, or several that make one JPEG stream, as the decoder joins them.
            let joined;
            let stream = match fragments {
                [one] => one.as_slice(),
                _ => {
                    joined = fragments.concat();
                    &joined
                }
            };
            jpeg_frame(stream, pixels.saturating_mul(samples * allocated / 8))
        }
        _ => Ok(()),
    }
}

/// Checks that a JPEG stream decodes to at most `room` bytes (the decoder would write past
/// the frame otherwise). A stream whose header cannot be read is left for the decoder to
/// refuse.
fn jpeg_frame(stream: &[u8], room: u64) -> Result<(), RenderError> {
    let mut decoder = jpeg_decoder::Decoder::new(stream);
    if decoder.read_info().is_err() {
        return Ok(());
    }
    let Some(info) = decoder.info() else {
        return Ok(());
    };
    let size =
        u64::from(info.width) * u64::from(info.height) * info.pixel_format.pixel_bytes() as u64;
    if size > room {
        return Err(RenderError::Corrupt(format!(
            "the JPEG image ({}×{}, {} bytes a pixel) is larger than the frame the data set \
             describes ({room} bytes)",
            info.width,
            info.height,
            info.pixel_format.pixel_bytes()
        )));
    }
    Ok(())
}

/// Checks that `fragment` holds `segments` segments (one per byte of each sample, as the
/// decoder reads them) that decode to at least `pixels` bytes each.
fn rle_frame(fragment: &[u8], segments: usize, pixels: u64) -> Result<(), RenderError> {
    let corrupt = |what: String| Err(RenderError::Corrupt(format!("RLE: {what}")));
    if fragment.len() < HEADER {
        return corrupt(format!("a frame of {} bytes has no header", fragment.len()));
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            fragment[4 * i],
            fragment[4 * i + 1],
            fragment[4 * i + 2],
            fragment[4 * i + 3],
        ]) as usize
    };
    let count = word(0);
    if count > MAX_SEGMENTS || count < segments {
        return corrupt(format!("{count} segments where {segments} are needed"));
    }
    // As the decoder reads them: each segment ends where the next starts, the last at the end
    // of the fragment.
    let end = |i: usize| {
        if i + 1 < count {
            word(i + 2)
        } else {
            fragment.len()
        }
    };
    for i in 0..segments {
        let Some(segment) = fragment.get(word(i + 1)..end(i)) else {
            return corrupt(format!("segment {i} lies outside the frame"));
        };
        let decoded = decoded_length(segment)
            .ok_or_else(|| RenderError::Corrupt(format!("RLE: segment {i} is cut short")))?;
        if (decoded as u64) < pixels {
            return corrupt(format!(
                "segment {i} decodes to {decoded} bytes, not {pixels}"
            ));
        }
    }
    Ok(())
}

/// How many bytes a PackBits segment decodes to, read as the decoder reads it (a literal run
/// cut short keeps what there is; a repeat run without its byte is an error).
fn decoded_length(segment: &[u8]) -> Option<usize> {
    let (mut at, mut decoded) = (0usize, 0usize);
    while at < segment.len() {
        let header = segment[at] as i8;
        at += 1;
        match header {
            -128 => {}
            -127..=-1 => {
                segment.get(at)?;
                decoded += (1 - isize::from(header)) as usize;
                at += 1;
            }
            _ => {
                let literal = header as usize + 1;
                decoded += literal.min(segment.len() - at);
                at += literal;
            }
        }
    }
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER];
        bytes[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        for (i, segment) in segments.iter().enumerate() {
            let offset = bytes.len() as u32;
            bytes[4 * (i + 1)..4 * (i + 2)].copy_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(segment);
        }
        bytes
    }

    /// A JPEG stream of a `width`×`height` 8-bit gray image.
    fn gray_jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut stream = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut stream)
            .encode(
                &vec![128u8; (width * height) as usize],
                width,
                height,
                image::ExtendedColorType::L8,
            )
            .unwrap();
        stream
    }

    #[test]
    fn jpeg_images_larger_than_the_frame_are_refused() {
        // Found by the part10 fuzz target: a JPEG bigger than Rows × Columns, which the
        // decoder copied into the frame's buffer without checking.
        let stream = gray_jpeg(4, 6);
        jpeg_frame(&stream, 24).unwrap();
        assert!(jpeg_frame(&stream, 23).is_err());
        // A header the decoder cannot read is its to refuse.
        jpeg_frame(&stream[..10], 0).unwrap();
    }

    #[test]
    fn frames_of_no_samples_per_pixel_are_refused() {
        // Found by the part10 fuzz target: Samples per Pixel 0 gave the JPEG decoder a frame
        // buffer of 0 bytes to copy its 64 into.
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let dataset = |samples: u16| {
            let mut dataset = InMemDicomObject::new_empty();
            for (tag, value) in [
                (tags::ROWS, 8),
                (tags::COLUMNS, 8),
                (tags::BITS_ALLOCATED, 8),
                (tags::SAMPLES_PER_PIXEL, samples),
            ] {
                dataset.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
            }
            dataset
        };
        let fragments = [gray_jpeg(8, 8)];
        check(uids::JPEG_BASELINE8_BIT, &dataset(1), &fragments).unwrap();
        assert!(check(uids::JPEG_BASELINE8_BIT, &dataset(0), &fragments).is_err());
    }

    #[test]
    fn packbits_lengths() {
        assert_eq!(decoded_length(&[2, 1, 2, 3]), Some(3));
        assert_eq!(decoded_length(&[0xFD, 7]), Some(4));
        assert_eq!(decoded_length(&[0x80, 0, 9]), Some(1));
        assert_eq!(decoded_length(&[5, 1]), Some(1));
        assert_eq!(decoded_length(&[0xFD]), None);
    }

    #[test]
    fn frames_the_decoder_would_panic_on_are_refused() {
        // Two 8-bit samples of 4 pixels each: one run of four and four literals.
        let good = frame(&[&[0xFD, 1], &[3, 1, 2, 3, 4]]);
        rle_frame(&good, 2, 4).unwrap();
        // Found by the part10 fuzz target: a segment that decodes short.
        assert!(rle_frame(&good, 2, 5).is_err());
        assert!(rle_frame(&good[..40], 2, 4).is_err());
        assert!(rle_frame(&good, 3, 4).is_err());
        let mut many = good.clone();
        many[..4].copy_from_slice(&16u32.to_le_bytes());
        assert!(rle_frame(&many, 2, 4).is_err());
        let mut outside = good.clone();
        outside[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(rle_frame(&outside, 2, 4).is_err());
    }
}
