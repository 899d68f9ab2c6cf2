//! The structure check of a spooled data set: one pass over every element header, sequences and
//! items included, skipping values, that refuses a data set cut short or one whose headers a
//! reader cannot make sense of. Constant memory, whatever the size of the data set.

use std::cell::Cell;
use std::io::{Read, Seek, SeekFrom};
use std::rc::Rc;

use dicom_core::header::{DataElementHeader, Header};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntax};
use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry, entries};

use super::inspect::InspectError;
use super::source::Source;
use crate::dicomweb::json::PixelData;

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
/// Pixel Data, Float Pixel Data and Double Float Pixel Data.
const PIXEL_DATA_TAGS: [Tag; 3] = [tags::PIXEL_DATA, Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)];
/// The longest element header: tag, VR, reserved bytes and a 32-bit length.
const LONGEST_HEADER: usize = 12;

/// What the walk has read: how many bytes really came out of the reader (the decoder's own
/// position advances by the requested length even when a skip hits the end of the file), and
/// the last bytes, which hold the raw VR of the header just decoded (the decoder turns an
/// unknown VR into UN).
#[derive(Default)]
struct Tapped {
    count: Cell<u64>,
    tail: Cell<[u8; LONGEST_HEADER]>,
}

struct Tap<R> {
    inner: R,
    tapped: Rc<Tapped>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let tapped = &self.tapped;
        tapped.count.set(tapped.count.get() + n as u64);
        let mut tail = tapped.tail.get();
        if n >= LONGEST_HEADER {
            tail.copy_from_slice(&buf[n - LONGEST_HEADER..n]);
        } else {
            tail.copy_within(n.., 0);
            tail[LONGEST_HEADER - n..].copy_from_slice(&buf[..n]);
        }
        tapped.tail.set(tail);
        Ok(n)
    }
}

/// A sequence, an item or encapsulated pixel data the walk is inside.
#[derive(PartialEq)]
enum Kind {
    Sequence,
    Item,
    /// Its items are fragments of compressed pixel data, skipped whole.
    Fragments,
}

struct Open {
    kind: Kind,
    /// Where a defined-length one ends; undefined-length ones end at their delimiter.
    end: Option<u64>,
}

/// Walks the data set of `source` from `data_offset`, in transfer syntax `ts_uid`: checks that
/// the last element ends exactly at the end of the data, that every sequence and item is
/// closed, in explicit VR that every element names a known VR, and that an element of a
/// fixed-size VR (the one sent, or in implicit VR the dictionary's) holds whole values.
/// Returns the root data set's pixel data element, if it has one.
pub(super) fn walk<S: Source>(
    source: &S,
    data_offset: u64,
    ts_uid: &str,
) -> Result<Option<PixelData>, InspectError> {
    let ts = transfer_syntax(ts_uid)?;
    let mut file = source.open()?;
    file.seek(SeekFrom::Start(data_offset))?;
    walk_reader(Box::new(file), ts, data_offset, &|| {
        deflate_stream_ends(source.open()?, data_offset)
    })
}

/// The same walk over a data set held in memory (a C-FIND identifier, read before the parser
/// sees it).
pub(crate) fn walk_bytes(bytes: &[u8], ts_uid: &str) -> Result<bool, InspectError> {
    // In memory, the inflater has had every byte there is.
    walk_reader(Box::new(bytes), transfer_syntax(ts_uid)?, 0, &|| Ok(true)).map(|p| p.is_some())
}

fn transfer_syntax(ts_uid: &str) -> Result<&'static TransferSyntax, InspectError> {
    TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| InspectError::UnknownTransferSyntax(ts_uid.into()))
}

/// `walk` over `input`, the data set's bytes from `data_offset` on; `stream_ends` says whether
/// a deflated data set's stream ended where its last element did.
fn walk_reader<'a>(
    input: Box<dyn Read + 'a>,
    ts: &'static TransferSyntax,
    data_offset: u64,
    stream_ends: &dyn Fn() -> Result<bool, InspectError>,
) -> Result<Option<PixelData>, InspectError> {
    let deflated = matches!(ts.codec(), Codec::Dataset(Some(_)));
    // Implicit VR Little Endian is the one transfer syntax without VR fields.
    let explicit = ts.uid() != entries::IMPLICIT_VR_LITTLE_ENDIAN.uid();
    // With a deflated data set the tap sees what the inflater produced, as the decoder does.
    let reader: Box<dyn Read + 'a> = match ts.codec() {
        Codec::Dataset(Some(adapter)) => adapter.adapt_reader(input),
        _ => input,
    };
    let tapped = Rc::new(Tapped::default());
    let tap = Tap {
        inner: reader,
        tapped: tapped.clone(),
    };
    let mut decoder = StatefulDecoder::new_with_ts(tap, ts, 0)
        .map_err(|e| InspectError::Malformed(e.to_string()))?;
    let malformed = |what: String, at: u64| {
        InspectError::Malformed(format!("{what} at byte {}", data_offset + at))
    };
    let mut open: Vec<Open> = Vec::new();
    let mut pixel_data = None;
    loop {
        let before = decoder.position();
        while let Some(&Open { end: Some(end), .. }) = open.last() {
            if before < end {
                break;
            }
            if before > end {
                return Err(malformed(
                    "an element runs past the end of its sequence or item".into(),
                    before,
                ));
            }
            open.pop();
        }
        let header = match decoder.decode_header() {
            Ok(header) => header,
            Err(_) if tapped.count.get() == before => {
                // Nothing more to read at an element boundary: the end of the data set.
                let whole = open.is_empty() && (!deflated || stream_ends()?);
                return if whole {
                    Ok(pixel_data)
                } else {
                    Err(InspectError::Truncated(data_offset + before))
                };
            }
            Err(_) => return Err(InspectError::Truncated(data_offset + tapped.count.get())),
        };
        let value_at = decoder.position();
        if open.is_empty() && PIXEL_DATA_TAGS.contains(&header.tag) && pixel_data.is_none() {
            pixel_data = Some(PixelData {
                tag: header.tag,
                vr: header.vr,
            });
        }
        let end = header.len.get().map(|len| value_at + u64::from(len));
        let inside = open.last().map(|o| &o.kind);
        // Each header only where PS3.5 7.5 puts it. dicom-parser reads a misplaced one as
        // something else (a sequence delimiter inside an item as an element, its length as a
        // value's), and from there on the two would disagree on where headers are.
        match header.tag {
            // An item delimiter closes an item; a sequence delimiter, a sequence or fragments.
            ITEM_DELIMITER | SEQUENCE_DELIMITER => match open.pop() {
                Some(Open { kind, end: None })
                    if (kind == Kind::Item) == (header.tag == ITEM_DELIMITER) => {}
                _ => return Err(malformed(format!("unexpected {}", header.tag), before)),
            },
            ITEM => match inside {
                Some(Kind::Fragments) => skip(&mut decoder, &header, &tapped, data_offset)?,
                Some(Kind::Sequence) => open.push(Open {
                    kind: Kind::Item,
                    end,
                }),
                _ => return Err(malformed("an item outside a sequence".into(), before)),
            },
            tag if matches!(inside, Some(Kind::Sequence | Kind::Fragments)) => {
                return Err(malformed(
                    format!("element {tag} where a sequence's item belongs"),
                    before,
                ));
            }
            _ => {
                let vr = if explicit {
                    let raw_vr = raw_vr(tapped.tail.get(), value_at - before);
                    known_vr(&header, raw_vr).map_err(|what| malformed(what, before))?
                } else {
                    header.vr
                };
                // The root pixel data is never parsed (readers stop before it, renderers
                // fetch it by range): a length of any parity is kept as received.
                if !(open.is_empty() && header.tag == tags::PIXEL_DATA) {
                    check_length(&header, vr).map_err(|what| malformed(what, before))?;
                }
                if header.is_encapsulated_pixeldata() {
                    open.push(Open {
                        kind: Kind::Fragments,
                        end: None,
                    });
                } else if header.vr == VR::SQ || header.len.is_undefined() {
                    open.push(Open {
                        kind: Kind::Sequence,
                        end,
                    });
                } else {
                    skip(&mut decoder, &header, &tapped, data_offset)?;
                }
            }
        }
    }
}

/// Skips the value of `header`, which must be in the file.
fn skip<D: StatefulDecode>(
    decoder: &mut D,
    header: &DataElementHeader,
    tapped: &Tapped,
    data_offset: u64,
) -> Result<(), InspectError> {
    decoder
        .skip_bytes(header.len.0)
        .map_err(|e| InspectError::Malformed(e.to_string()))?;
    if tapped.count.get() < decoder.position() {
        return Err(InspectError::Truncated(data_offset + tapped.count.get()));
    }
    Ok(())
}

/// The two VR bytes of an explicit-VR header of `header_len` bytes that ends `tail`.
fn raw_vr(tail: [u8; LONGEST_HEADER], header_len: u64) -> [u8; 2] {
    let at = LONGEST_HEADER.saturating_sub(header_len as usize) + 4;
    [tail[at], tail[at + 1]]
}

/// Refuses a VR field that names no VR: a reader cannot tell how long its length field is.
/// A VR other than the dictionary's is no fault by itself: senders use UN and OB for anything,
/// and some tags allow several VRs.
fn known_vr(header: &DataElementHeader, raw_vr: [u8; 2]) -> Result<VR, String> {
    VR::from_binary(raw_vr).ok_or_else(|| {
        format!(
            "element {} has an unknown VR {:?}",
            header.tag,
            String::from_utf8_lossy(&raw_vr)
        )
    })
}

/// Refuses a value that is not a whole number of its VR's fixed-size values (the VR as sent in
/// explicit VR, the dictionary's in implicit VR): no reader can read it, and dicom-parser
/// (0.10.1) reads the whole values only and goes on out of step with the headers, reading
/// the next one from the middle of a value, where any length can be written.
fn check_length(header: &DataElementHeader, vr: VR) -> Result<(), String> {
    if let Some(size) = value_size(vr)
        && !header.len.0.is_multiple_of(size)
    {
        return Err(format!(
            "element {} of VR {} has a length of {}, not a multiple of {size}",
            header.tag,
            vr.to_string(),
            header.len.0
        ));
    }
    Ok(())
}

/// The size of one value of the VRs whose values have a fixed size.
pub(crate) fn value_size(vr: VR) -> Option<u32> {
    match vr {
        VR::SS | VR::US | VR::OW => Some(2),
        VR::SL | VR::UL | VR::FL | VR::AT | VR::OF | VR::OL => Some(4),
        VR::FD | VR::SV | VR::UV | VR::OD | VR::OV => Some(8),
        _ => None,
    }
}

/// Whether the deflate stream after `offset` reaches its end marker. An inflater reading a
/// stream cut short just stops, so a data set missing its last bytes would otherwise look
/// whole when the cut falls between elements.
fn deflate_stream_ends(mut file: impl Read + Seek, offset: u64) -> Result<bool, InspectError> {
    use flate2::{Decompress, FlushDecompress, Status};
    file.seek(SeekFrom::Start(offset))?;
    let mut inflater = Decompress::new(false);
    let mut input = vec![0u8; 64 * 1024];
    let mut output = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut input)?;
        if n == 0 {
            return Ok(false);
        }
        let mut consumed = 0;
        while consumed < n {
            let before = inflater.total_in();
            let status = inflater
                .decompress(&input[consumed..n], &mut output, FlushDecompress::None)
                .map_err(|e| InspectError::Malformed(format!("deflate: {e}")))?;
            consumed += (inflater.total_in() - before) as usize;
            if status == Status::StreamEnd {
                return Ok(true);
            }
            if status == Status::BufError && inflater.total_in() == before {
                break; // needs more input
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn implicit(tag: Tag, value: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&tag.group().to_le_bytes());
        bytes.extend_from_slice(&tag.element().to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    fn explicit(tag: Tag, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&tag.group().to_le_bytes());
        bytes.extend_from_slice(&tag.element().to_le_bytes());
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    fn walked(data: &[u8], ts: &str) -> Result<bool, InspectError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), data).unwrap();
        walk(&file.path(), 0, ts).map(|p| p.is_some())
    }

    #[test]
    fn implicit_vr_values_must_be_whole_values_of_the_dictionary_vr() {
        let ts = entries::IMPLICIT_VR_LITTLE_ENDIAN.uid();
        let whole = implicit(tags::ROWS, &[4, 0]);
        assert!(!walked(&whole, ts).unwrap(), "no pixel data");
        // Rows (US) of 3 bytes: dicom-parser would read one value and the next header a byte
        // early, from wherever the sender wanted.
        let odd = [implicit(tags::ROWS, &[4, 0, 0]), whole.clone()].concat();
        match walked(&odd, ts) {
            Err(InspectError::Malformed(message)) => {
                assert!(message.contains("not a multiple of 2"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn items_and_delimiters_only_where_they_belong() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.uid();
        let tag = |tag: Tag| [tag.group().to_le_bytes(), tag.element().to_le_bytes()].concat();
        // Item and delimiter headers: a tag and a 32-bit length, no VR.
        let marker = |t: Tag, len: u32| [tag(t), len.to_le_bytes().to_vec()].concat();
        let undefined = u32::MAX.to_le_bytes();
        let sequence = [
            &tag(tags::REFERENCED_IMAGE_SEQUENCE)[..],
            b"SQ\0\0",
            &undefined,
        ]
        .concat();
        // UI has a 16-bit length.
        let element = [
            &tag(tags::REFERENCED_SOP_CLASS_UID)[..],
            b"UI",
            &[8, 0],
            b"1.2.3.4\0",
        ]
        .concat();
        let item = marker(ITEM, u32::MAX);
        let item_end = marker(ITEM_DELIMITER, 0);
        let sequence_end = marker(SEQUENCE_DELIMITER, 0);
        let good = [&sequence[..], &item, &element, &item_end, &sequence_end].concat();
        assert!(!walked(&good, ts).unwrap());
        let refused = |parts: &[&[u8]]| match walked(&parts.concat(), ts) {
            Err(InspectError::Malformed(message)) => message,
            other => panic!("{other:?}"),
        };
        // Found by the part10 fuzz target: a sequence delimiter (of length 64) closing an
        // item, which dicom-parser reads as an element of 64 bytes, and then a header from
        // the middle of a value, claiming 808 MB.
        let odd_end = marker(SEQUENCE_DELIMITER, 64);
        let message = refused(&[&sequence, &item, &element, &odd_end, &sequence_end]);
        assert!(message.contains("unexpected (FFFE,E0DD)"), "{message}");
        let message = refused(&[&sequence, &element, &sequence_end]);
        assert!(
            message.contains("where a sequence's item belongs"),
            "{message}"
        );
        let message = refused(&[&item, &element, &item_end]);
        assert!(message.contains("an item outside a sequence"), "{message}");
        let message = refused(&[&sequence, &item, &element, &sequence_end, &sequence_end]);
        assert!(message.contains("unexpected"), "{message}");
    }

    #[test]
    fn other_word_values_must_be_whole_but_not_the_root_pixel_data() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.uid();
        let lut = explicit(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA, b"OW", &[1, 2, 3]);
        assert!(matches!(walked(&lut, ts), Err(InspectError::Malformed(_))));
        let pixels = explicit(tags::PIXEL_DATA, b"OW", &[1, 2, 3]);
        assert!(walked(&pixels, ts).unwrap());
    }
}
