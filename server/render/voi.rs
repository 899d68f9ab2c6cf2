//! Pixel math for monochrome frames: stored values (signedness, BitsStored, HighBit), the
//! modality rescale, the linear VOI window of PS3.3 C.11.2.1.2.1, the min–max stretch of
//! previews and MONOCHROME1 inversion. All to 8 bits, rounded to nearest.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// How a decoded monochrome frame's samples are laid out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
}

/// The stored values of a decoded frame (little-endian samples of `bits_allocated` bits; 1-bit
/// data comes from dicom-pixeldata as one byte of 0 or 255 per pixel).
pub(crate) fn stored_values(data: &[u8], layout: Layout) -> Vec<i64> {
    let width = match layout.bits_allocated {
        1 => return data.iter().map(|&b| i64::from(b != 0)).collect(),
        8 => 1,
        16 => 2,
        _ => 4,
    };
    let stored = u32::from(layout.bits_stored.clamp(1, layout.bits_allocated.max(1)));
    let stored = stored.min(32);
    let shift = (u32::from(layout.high_bit) + 1)
        .saturating_sub(stored)
        .min(31);
    let mask: u64 = (1u64 << stored) - 1;
    data.chunks_exact(width)
        .map(|c| {
            let mut raw = [0u8; 4];
            raw[..width].copy_from_slice(c);
            let value = (u64::from(u32::from_le_bytes(raw)) >> shift) & mask;
            if layout.signed && value & (1 << (stored - 1)) != 0 {
                value as i64 - (1i64 << stored)
            } else {
                value as i64
            }
        })
        .collect()
}

/// Modality values: stored × slope + intercept.
pub(crate) fn modality(stored: &[i64], slope: f64, intercept: f64) -> Vec<f64> {
    stored
        .iter()
        .map(|&v| v as f64 * slope + intercept)
        .collect()
}

/// The linear VOI function of PS3.3 C.11.2.1.2.1 to 0–255 (`width` below 1 counts as 1).
pub(crate) fn window(x: f64, center: f64, width: f64) -> u8 {
    let width = width.max(1.0);
    let low = center - 0.5 - (width - 1.0) / 2.0;
    let high = center - 0.5 + (width - 1.0) / 2.0;
    if x <= low {
        0
    } else if x > high {
        255
    } else {
        (((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8
    }
}

/// Applies a window to every value.
pub(crate) fn apply_window(values: &[f64], center: f64, width: f64) -> Vec<u8> {
    values.iter().map(|&x| window(x, center, width)).collect()
}

/// Stretches the values from their minimum to their maximum (all 0 when they are equal).
pub(crate) fn stretch(values: &[f64]) -> Vec<u8> {
    let (min, max) = min_max(values);
    if max <= min {
        return vec![0; values.len()];
    }
    let scale = 255.0 / (max - min);
    values
        .iter()
        .map(|&x| ((x - min) * scale).round().clamp(0.0, 255.0) as u8)
        .collect()
}

pub(crate) fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// MONOCHROME1: 255 − y.
pub(crate) fn invert(pixels: &mut [u8]) {
    pixels.iter_mut().for_each(|p| *p = 255 - *p);
}

/// Rescale slope and intercept of frame `frame`: the root attributes, else the frame's
/// Pixel Value Transformation (per-frame, then shared functional groups); 1 and 0 by default.
pub(crate) fn rescale(dataset: &InMemDicomObject, frame: u32) -> (f64, f64) {
    let find = |tag| {
        first_float(
            dataset,
            frame,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tag,
        )
    };
    (
        find(tags::RESCALE_SLOPE).unwrap_or(1.0),
        find(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
    )
}

/// The first window (center, width) of the data set for frame `frame`, if any.
pub(crate) fn default_window(dataset: &InMemDicomObject, frame: u32) -> Option<(f64, f64)> {
    let find = |tag| first_float(dataset, frame, tags::FRAME_VOILUT_SEQUENCE, tag);
    Some((find(tags::WINDOW_CENTER)?, find(tags::WINDOW_WIDTH)?))
}

/// A number from the root of the data set, else from the functional group `group` of the
/// frame, else from the shared functional groups.
fn first_float(dataset: &InMemDicomObject, frame: u32, group: Tag, tag: Tag) -> Option<f64> {
    let from = |object: &InMemDicomObject| -> Option<f64> {
        let text = object.get(tag)?.to_str().ok()?;
        let first = text.split('\\').next()?.trim_matches(['\0', ' ']);
        first.parse::<f64>().ok().filter(|v| v.is_finite())
    };
    let in_groups = |sequence: Tag, index: usize| -> Option<f64> {
        let item = dataset.get(sequence)?.items()?.get(index)?;
        from(item.get(group)?.items()?.first()?)
    };
    from(dataset)
        .or_else(|| in_groups(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame as usize))
        .or_else(|| in_groups(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    #[test]
    fn window_edges_follow_the_standard() {
        // c = 40, w = 400: low edge 40 - 0.5 - 199.5 = -160, high edge 239.
        assert_eq!(window(-160.0, 40.0, 400.0), 0);
        assert_eq!(window(-159.0, 40.0, 400.0), 1); // ((-159-39.5)/399+0.5)*255 = 0.64 → 1
        assert_eq!(window(239.0, 40.0, 400.0), 255);
        assert_eq!(window(239.5, 40.0, 400.0), 255);
        assert_eq!(window(39.5, 40.0, 400.0), 128); // 127.5 rounds up
        assert_eq!(window(40.0, 40.0, 400.0), 128);
        // Width 1 is a threshold at c - 0.5; widths below 1 count as 1.
        assert_eq!(window(99.5, 100.0, 1.0), 0);
        assert_eq!(window(99.6, 100.0, 1.0), 255);
        assert_eq!(window(99.6, 100.0, 0.0), 255);
    }

    #[test]
    fn stretch_maps_min_to_0_and_max_to_255() {
        assert_eq!(stretch(&[-1000.0, 0.0, 1000.0]), vec![0, 128, 255]);
        assert_eq!(stretch(&[5.0, 5.0]), vec![0, 0]);
        let mut pixels = stretch(&[0.0, 1.0, 3.0]);
        assert_eq!(pixels, vec![0, 85, 255]);
        invert(&mut pixels);
        assert_eq!(pixels, vec![255, 170, 0]);
    }

    #[test]
    fn stored_values_respect_sign_bits_stored_and_high_bit() {
        let signed12 = Layout {
            bits_allocated: 16,
            bits_stored: 12,
            high_bit: 11,
            signed: true,
        };
        // 0x0FFF is -1 in 12 bits; 0x0800 is -2048; 0x07FF is 2047; bits above are ignored.
        let data = [0xFF, 0x0F, 0x00, 0x08, 0xFF, 0x07, 0xFF, 0xF7];
        assert_eq!(stored_values(&data, signed12), vec![-1, -2048, 2047, 2047]);
        let unsigned12 = Layout {
            signed: false,
            ..signed12
        };
        assert_eq!(
            stored_values(&data, unsigned12),
            vec![4095, 2048, 2047, 2047]
        );
        // High bit 15 with 12 bits stored: the samples sit in the top bits.
        let high = Layout {
            bits_allocated: 16,
            bits_stored: 12,
            high_bit: 15,
            signed: false,
        };
        assert_eq!(
            stored_values(&[0x10, 0x00, 0xF0, 0xFF], high),
            vec![1, 4095]
        );
        let bytes = Layout {
            bits_allocated: 8,
            bits_stored: 8,
            high_bit: 7,
            signed: true,
        };
        assert_eq!(stored_values(&[0x80, 0x7F], bytes), vec![-128, 127]);
    }

    #[test]
    fn rescale_and_window_come_from_the_data_set() {
        let mut dataset = InMemDicomObject::new_empty();
        assert_eq!(rescale(&dataset, 0), (1.0, 0.0));
        assert_eq!(default_window(&dataset, 0), None);
        dataset.put(DataElement::new(tags::RESCALE_SLOPE, VR::DS, "2"));
        dataset.put(DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
        dataset.put(DataElement::new(
            tags::WINDOW_CENTER,
            VR::DS,
            PrimitiveValue::from("40\\300"),
        ));
        dataset.put(DataElement::new(tags::WINDOW_WIDTH, VR::DS, "400\\2000"));
        assert_eq!(rescale(&dataset, 0), (2.0, -1024.0));
        assert_eq!(default_window(&dataset, 0), Some((40.0, 400.0)));
        assert_eq!(
            modality(&[0, 1000, -5], 2.0, -1024.0),
            vec![-1024.0, 976.0, -1034.0]
        );
    }
}
