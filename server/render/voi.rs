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

/// Reads stored values from a decoded frame's samples (little-endian, `bits_allocated` bits
/// each; 1-bit data comes from dicom-pixeldata as one byte of 0 or 255 per pixel).
struct Samples {
    width: usize,
    one_bit: bool,
    shift: u32,
    mask: u64,
    sign: Option<u64>,
    stored: u32,
}

impl Samples {
    fn new(layout: Layout) -> Samples {
        let width = match layout.bits_allocated {
            1 | 8 => 1,
            16 => 2,
            _ => 4,
        };
        let stored = u32::from(layout.bits_stored.clamp(1, layout.bits_allocated.max(1))).min(32);
        Samples {
            width,
            one_bit: layout.bits_allocated == 1,
            shift: (u32::from(layout.high_bit) + 1)
                .saturating_sub(stored)
                .min(31),
            mask: (1u64 << stored) - 1,
            sign: layout.signed.then_some(1u64 << (stored - 1)),
            stored,
        }
    }

    #[inline]
    fn read(&self, sample: &[u8]) -> i64 {
        if self.one_bit {
            return i64::from(sample[0] != 0);
        }
        let mut raw = [0u8; 4];
        raw[..self.width].copy_from_slice(sample);
        let value = (u64::from(u32::from_le_bytes(raw)) >> self.shift) & self.mask;
        match self.sign {
            Some(bit) if value & bit != 0 => value as i64 - (1i64 << self.stored),
            _ => value as i64,
        }
    }

    /// The first `pixels` stored values, or `None` when the frame holds fewer samples.
    fn iter<'a>(&'a self, data: &'a [u8], pixels: usize) -> Option<impl Iterator<Item = i64> + 'a> {
        (data.len() / self.width >= pixels).then(|| {
            data.chunks_exact(self.width)
                .take(pixels)
                .map(|c| self.read(c))
        })
    }
}

/// The stored values of a decoded frame's samples.
pub(crate) fn stored_values(data: &[u8], layout: Layout) -> Vec<i64> {
    let samples = Samples::new(layout);
    data.chunks_exact(samples.width)
        .map(|c| samples.read(c))
        .collect()
}

/// The lowest and highest of the first `pixels` stored values, or `None` when the frame holds
/// fewer samples.
pub(crate) fn stored_min_max(data: &[u8], layout: Layout, pixels: usize) -> Option<(i64, i64)> {
    let samples = Samples::new(layout);
    let range = samples
        .iter(data, pixels)?
        .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    Some(if pixels == 0 { (0, 0) } else { range })
}

/// The 8-bit level of each of the first `pixels` stored values, all within `lo..=hi`, through
/// `level`. Computed once per possible value (a table of at most 2^16 entries for the usual
/// 8–16-bit data) and looked up, rather than per pixel.
pub(crate) fn gray_levels(
    data: &[u8],
    layout: Layout,
    pixels: usize,
    (lo, hi): (i64, i64),
    level: impl Fn(i64) -> u8,
) -> Vec<u8> {
    let samples = Samples::new(layout);
    let Some(values) = samples.iter(data, pixels) else {
        return Vec::new();
    };
    let span = (hi - lo).max(0) as u64 + 1;
    if span > (pixels as u64).max(1 << 16) {
        // A table larger than the frame would cost more than it saves (32-bit data).
        return values.map(level).collect();
    }
    let table: Vec<u8> = (lo..=hi).map(&level).collect();
    values
        .map(|v| table[(v.clamp(lo, hi) - lo) as usize])
        .collect()
}

/// How modality values become 8-bit levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Curve {
    /// The linear VOI window.
    Window { center: f64, width: f64 },
    /// From the frame's minimum to its maximum.
    Stretch { min: f64, max: f64 },
}

impl Curve {
    pub(crate) fn level(self, x: f64) -> u8 {
        match self {
            Curve::Window { center, width } => window(x, center, width),
            Curve::Stretch { min, max } if max <= min => 0,
            Curve::Stretch { min, max } => {
                ((x - min) * 255.0 / (max - min)).round().clamp(0.0, 255.0) as u8
            }
        }
    }
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

/// Stretches values from their minimum to their maximum (all 0 when they are equal).
#[cfg(test)]
pub(crate) fn stretch(values: &[f64]) -> Vec<u8> {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let curve = Curve::Stretch { min, max };
    values.iter().map(|&x| curve.level(x)).collect()
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
        assert_eq!(stretch(&[0.0, 1.0, 3.0]), vec![0, 85, 255]);
    }

    #[test]
    fn gray_levels_look_values_up_in_their_range() {
        let signed16 = Layout {
            bits_allocated: 16,
            bits_stored: 16,
            high_bit: 15,
            signed: true,
        };
        // -1000, 0, 1000 and a short frame.
        let data = [0x18, 0xFC, 0x00, 0x00, 0xE8, 0x03];
        assert_eq!(stored_min_max(&data, signed16, 3), Some((-1000, 1000)));
        assert_eq!(stored_min_max(&data, signed16, 4), None);
        let curve = Curve::Window {
            center: 0.0,
            width: 1000.0,
        };
        let levels = gray_levels(&data, signed16, 3, (-1000, 1000), |v| {
            255 - curve.level(v as f64 * 2.0)
        });
        assert_eq!(levels, vec![255, 127, 0]);
        // A span wider than a table is worth: computed per pixel, the same.
        let wide = Layout {
            bits_allocated: 32,
            bits_stored: 32,
            high_bit: 31,
            signed: false,
        };
        let data = [0, 0, 0, 0, 0, 0, 0, 0x80];
        let levels = gray_levels(&data, wide, 2, (0, 1 << 31), |v| (v >> 24) as u8);
        assert_eq!(levels, vec![0, 128]);
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
    }
}
