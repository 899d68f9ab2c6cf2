//! Encapsulated pixel data: which fragments make frame `n`. With a Basic Offset Table that
//! has one entry per frame, the frame's byte range (fetched by the caller); otherwise a walk of
//! the fragment items that reads only the frame's fragments (and the first bytes of the
//! others). One frame: every fragment. Several without a table: a fragment that opens a
//! codestream starts a frame (every fragment for RLE).

use dicom_core::Tag;
use dicom_dictionary_std::uids;
use dicom_parser::stateful::decode::StatefulDecode;

use super::RenderError;
use super::frame::{FrameSource, Header, SEQUENCE_DELIMITER};

const ITEM: Tag = Tag(0xFFFE, 0xE000);

/// Finds frame `frame` in encapsulated pixel data: a range through the Basic Offset Table when
/// it has one entry per frame, otherwise a walk of the fragment items.
pub(crate) fn find<D: StatefulDecode>(
    decoder: &mut D,
    data_offset: u64,
    size: u64,
    frame: u32,
    header: &Header,
) -> Result<FrameSource, RenderError> {
    let table = item(decoder)?.ok_or_else(|| RenderError::Corrupt("no offset table".into()))?;
    let mut table_bytes = Vec::new();
    read_exact(decoder, table, &mut table_bytes)?;
    let offsets: Vec<u64> = table_bytes
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let first = data_offset + decoder.position();
    if header.frames > 1 && offsets.len() == header.frames as usize {
        let start = first + offsets[frame as usize];
        let end = match offsets.get(frame as usize + 1) {
            Some(next) => first + next,
            None => size,
        };
        if start >= end || end > size {
            return Err(RenderError::Corrupt(
                "the Basic Offset Table is wrong".into(),
            ));
        }
        return Ok(FrameSource::FragmentRange(start..end));
    }
    // One frame: every fragment. Several: a fragment that opens a codestream (or, for RLE and
    // codestreams we cannot see, every fragment) starts a frame.
    let rle = header.ts.uid() == uids::RLE_LOSSLESS;
    let mut current: i64 = -1;
    let mut kept = Vec::new();
    while let Some(length) = item(decoder)? {
        let mut head = Vec::new();
        let peek = length.min(12);
        read_exact(decoder, peek, &mut head)?;
        if header.frames == 1 {
            current = 0;
        } else if current < 0 || rle || starts_codestream(&head) {
            current += 1;
        }
        if current > i64::from(frame) {
            break;
        }
        if current == i64::from(frame) {
            read_exact(decoder, length - peek, &mut head)?;
            kept.push(head);
        } else {
            decoder
                .skip_bytes(length - peek)
                .map_err(|e| RenderError::Corrupt(e.to_string()))?;
        }
    }
    if kept.is_empty() {
        return Err(RenderError::Corrupt(format!(
            "frame {frame} has no fragment in the pixel data"
        )));
    }
    Ok(FrameSource::Fragments(kept))
}

/// Whether a fragment opens a JPEG (SOI), JPEG 2000 codestream (SOC) or JP2 file.
fn starts_codestream(head: &[u8]) -> bool {
    head.starts_with(&[0xFF, 0xD8, 0xFF])
        || head.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
        || head.starts_with(&[0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20])
}

/// The next item's length, or `None` at the sequence delimiter.
fn item<D: StatefulDecode>(decoder: &mut D) -> Result<Option<u32>, RenderError> {
    let header = decoder
        .decode_item_header()
        .map_err(|e| RenderError::Corrupt(format!("pixel data items: {e}")))?;
    use dicom_core::header::SequenceItemHeader::*;
    match header {
        Item { len } if !len.is_undefined() => Ok(Some(len.0)),
        SequenceDelimiter => Ok(None),
        _ => Err(RenderError::Corrupt(
            "unexpected item in the pixel data".into(),
        )),
    }
}

fn read_exact<D: StatefulDecode>(
    decoder: &mut D,
    length: u32,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let wanted = out.len() + length as usize;
    decoder
        .read_to_vec(length, out)
        .map_err(|e| RenderError::Corrupt(e.to_string()))?;
    if out.len() != wanted {
        return Err(RenderError::Corrupt("the pixel data is cut short".into()));
    }
    Ok(())
}

/// The fragments in a run of fragment items read by range (stopping at the sequence
/// delimiter or the end of the bytes).
pub(crate) fn parse_items(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, RenderError> {
    let mut fragments = Vec::new();
    while bytes.len() >= 8 {
        let tag = Tag(
            u16::from_le_bytes([bytes[0], bytes[1]]),
            u16::from_le_bytes([bytes[2], bytes[3]]),
        );
        let length = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if tag == SEQUENCE_DELIMITER {
            break;
        }
        if tag != ITEM || bytes.len() < 8 + length {
            return Err(RenderError::Corrupt(
                "bad fragment item in the pixel data".into(),
            ));
        }
        fragments.push(bytes[8..8 + length].to_vec());
        bytes = &bytes[8 + length..];
    }
    if fragments.is_empty() {
        return Err(RenderError::Corrupt("no fragment for this frame".into()));
    }
    Ok(fragments)
}
