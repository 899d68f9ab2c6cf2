//! PALETTE COLOR frames (PS3.3 C.7.6.3.1.5): each stored value indexes three lookup tables,
//! red, green and blue. dicom-pixeldata does not apply them, so this does; ultrasound and
//! nuclear medicine images use them.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::RenderError;

/// One color's table: the first index it maps, its entries as 8-bit output values.
struct Table {
    first: i64,
    entries: Vec<u8>,
}

pub(crate) struct Palette {
    tables: [Table; 3],
}

const DESCRIPTORS: [Tag; 3] = [
    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
];
const DATA: [Tag; 3] = [
    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
];

impl Palette {
    pub(crate) fn from_dataset(dataset: &InMemDicomObject) -> Result<Palette, RenderError> {
        if dataset
            .get(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)
            .is_some()
        {
            return Err(RenderError::Unsupported(
                "this server cannot render segmented palette color lookup tables yet".into(),
            ));
        }
        let table = |i: usize| -> Result<Table, RenderError> {
            let missing = || RenderError::Corrupt("a palette color lookup table is missing".into());
            let descriptor: Vec<i64> = dataset
                .get(DESCRIPTORS[i])
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .filter(|d| d.len() == 3)
                .ok_or_else(missing)?;
            // 0 entries means 65536; the first mapped value is unsigned unless the data are
            // signed (then US/SS was read as written).
            let count = if descriptor[0] == 0 {
                65536
            } else {
                descriptor[0] as usize & 0xFFFF
            };
            let words: Vec<u16> = dataset
                .get(DATA[i])
                .and_then(|e| e.to_multi_int::<u16>().ok())
                .ok_or_else(missing)?;
            let entries: Vec<u8> = match descriptor[2] {
                // 16-bit entries: the high byte is the 8-bit output.
                16 => words.iter().map(|w| (w >> 8) as u8).collect(),
                // 8-bit entries, two to a 16-bit word, the first in the low byte.
                8 if words.len() * 2 >= count => words
                    .iter()
                    .flat_map(|w| [*w as u8, (w >> 8) as u8])
                    .collect(),
                // Some writers put each 8-bit entry in a word of its own.
                8 => words.iter().map(|w| *w as u8).collect(),
                bits => {
                    return Err(RenderError::Corrupt(format!(
                        "palette entries of {bits} bits (8 or 16 expected)"
                    )));
                }
            };
            if entries.len() < count || count == 0 {
                return Err(RenderError::Corrupt(format!(
                    "a palette table holds {} entries where its descriptor says {count}",
                    entries.len()
                )));
            }
            Ok(Table {
                first: descriptor[1],
                entries: entries[..count].to_vec(),
            })
        };
        Ok(Palette {
            tables: [table(0)?, table(1)?, table(2)?],
        })
    }

    /// Interleaved RGB for stored values; values outside a table take its first or last entry.
    pub(crate) fn apply(&self, values: &[i64]) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(values.len() * 3);
        for &value in values {
            for table in &self.tables {
                let last = table.entries.len() as i64 - 1;
                rgb.push(table.entries[(value - table.first).clamp(0, last) as usize]);
            }
        }
        rgb
    }
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, VR};

    use super::*;

    fn dataset(descriptor: [u16; 3], data: [Vec<u16>; 3]) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        for i in 0..3 {
            o.put(DataElement::new(
                DESCRIPTORS[i],
                VR::US,
                PrimitiveValue::U16(descriptor.to_vec().into()),
            ));
            o.put(DataElement::new(
                DATA[i],
                VR::OW,
                PrimitiveValue::U16(data[i].clone().into()),
            ));
        }
        o
    }

    #[test]
    fn sixteen_bit_tables_map_and_clamp() {
        // Three entries from index 10: red rises, green falls, blue stays.
        let palette = Palette::from_dataset(&dataset(
            [3, 10, 16],
            [
                vec![0x0000, 0x8000, 0xFFFF],
                vec![0xFFFF, 0x8000, 0x0000],
                vec![0x4000, 0x4000, 0x4000],
            ],
        ))
        .unwrap();
        assert_eq!(
            palette.apply(&[9, 10, 11, 12, 13]),
            vec![0, 255, 64, 0, 255, 64, 128, 128, 64, 255, 0, 64, 255, 0, 64]
        );
    }

    #[test]
    fn eight_bit_tables_come_two_to_a_word() {
        let palette = Palette::from_dataset(&dataset(
            [4, 0, 8],
            [
                vec![0x0201, 0x0403],
                vec![0x0605, 0x0807],
                vec![0x0A09, 0x0C0B],
            ],
        ))
        .unwrap();
        assert_eq!(palette.apply(&[0, 3]), vec![1, 5, 9, 4, 8, 12]);
    }

    #[test]
    fn missing_or_short_tables_are_errors() {
        assert!(Palette::from_dataset(&InMemDicomObject::new_empty()).is_err());
        let short = dataset([8, 0, 16], [vec![0; 4], vec![0; 8], vec![0; 8]]);
        assert!(Palette::from_dataset(&short).is_err());
    }
}
