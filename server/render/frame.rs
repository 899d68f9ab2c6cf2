//! Getting one frame's bytes out of a stored part-10 file without loading the whole file: the
//! header is read up to the pixel data (through a streaming walk of element headers), then only
//! the bytes of frame `n` are fetched — a computed range for native pixel data, the Basic Offset
//! Table's range or a walk of the fragment items for encapsulated pixel data, a streaming
//! inflate for deflated data sets. The frame is then put into a small in-memory object of its
//! own (NumberOfFrames = 1) that dicom-pixeldata decodes.

use std::cell::{Cell, RefCell};
use std::io::{BufReader, Read};
use std::ops::Range;
use std::rc::Rc;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntax;
use dicom_encoding::transfer_syntax::{Codec, Endianness};
use dicom_object::{FileDicomObject, FileMetaTable, InMemDicomObject};
use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::{RenderError, color, fragments};

const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
pub(crate) const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
/// A header (everything before the pixel data) larger than this is refused.
const MAX_HEADER: usize = 64 * 1024 * 1024;
/// A frame larger than this once decoded, or with more pixels, is refused (the pixel math
/// keeps 16 bytes a pixel).
const MAX_FRAME: u64 = 1024 * 1024 * 1024;
const MAX_PIXELS: u64 = 8192 * 8192;

/// An instance's header: its file meta group and data set up to the pixel data.
pub(crate) struct Header {
    pub meta: FileMetaTable,
    pub dataset: InMemDicomObject,
    pub ts: &'static TransferSyntax,
    pub frames: u32,
}

/// Where frame `n`'s bytes are.
#[derive(Debug, PartialEq)]
pub(crate) enum FrameSource {
    /// Native samples, already read (deflated data sets), in the file's byte order.
    Native(Vec<u8>),
    /// Native samples at this byte range of the file.
    NativeRange(Range<u64>),
    /// The frame's fragments, already read.
    Fragments(Vec<Vec<u8>>),
    /// The frame's fragment items (headers included) are at this byte range of the file,
    /// found through the Basic Offset Table.
    FragmentRange(Range<u64>),
}

/// Reads a part-10 file from its first byte up to frame `frame`'s location; reads the frame
/// itself only when it cannot be fetched by a range (deflate, encapsulated without a usable
/// offset table). `size` is the file's size.
pub(crate) fn locate<R: Read>(
    reader: R,
    size: u64,
    frame: u32,
) -> Result<(Header, FrameSource), RenderError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut start = [0u8; 144];
    reader
        .read_exact(&mut start)
        .map_err(corrupt("file meta"))?;
    if &start[128..132] != b"DICM" || start[132..134] != [2, 0] {
        return Err(RenderError::Corrupt("not a part-10 file".into()));
    }
    let group_length = u32::from_le_bytes([start[140], start[141], start[142], start[143]]);
    let mut meta_bytes = start[128..].to_vec();
    (&mut reader)
        .take(u64::from(group_length))
        .read_to_end(&mut meta_bytes)
        .map_err(corrupt("file meta"))?;
    let meta = FileMetaTable::from_reader(&meta_bytes[..])
        .map_err(|e| RenderError::Corrupt(format!("file meta group: {e}")))?;
    let data_offset = 144 + u64::from(group_length);
    let ts_uid = meta.transfer_syntax().to_string();
    let ts = decodable(&ts_uid)?;
    let deflated = matches!(ts.codec(), Codec::Dataset(Some(_)));
    let captured = Rc::new(RefCell::new(Vec::new()));
    let capturing = Rc::new(Cell::new(true));
    let source: Box<dyn Read> = match ts.codec() {
        Codec::Dataset(Some(adapter)) => adapter.adapt_reader(Box::new(reader)),
        _ => Box::new(reader),
    };
    let tee = Tee {
        inner: source,
        captured: captured.clone(),
        capturing: capturing.clone(),
    };
    let mut decoder = StatefulDecoder::new_with_ts(tee, ts, 0)
        .map_err(|e| RenderError::Corrupt(e.to_string()))?;
    let pixel = walk_to_pixel_data(&mut decoder)?;
    capturing.set(false);
    let header_bytes = captured.take();
    let parse_ts = if deflated {
        decodable(uids::EXPLICIT_VR_LITTLE_ENDIAN)?
    } else {
        ts
    };
    let dataset =
        InMemDicomObject::read_dataset_with_ts(&header_bytes[..pixel.element_start], parse_ts)
            .map_err(|e| RenderError::Corrupt(format!("data set: {e}")))?;
    let frames = int(&dataset, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32;
    if frame >= frames {
        return Err(RenderError::NoFrame { frame, frames });
    }
    check_dimensions(&dataset)?;
    let header = Header {
        meta,
        dataset,
        ts,
        frames,
    };
    let value_start = data_offset + decoder.position();
    let source = if let Some(length) = pixel.length {
        let frame_size = frame_size(&header.dataset)?;
        let range = native_range(frame, frame_size, length)?;
        if deflated {
            decoder
                .skip_bytes(range.start as u32)
                .map_err(|e| RenderError::Corrupt(e.to_string()))?;
            let mut data = Vec::with_capacity(frame_size as usize);
            decoder
                .read_to_vec(frame_size as u32, &mut data)
                .map_err(|e| RenderError::Corrupt(e.to_string()))?;
            if data.len() as u64 != frame_size {
                return Err(RenderError::Corrupt("the pixel data is cut short".into()));
            }
            FrameSource::Native(data)
        } else {
            FrameSource::NativeRange(value_start + range.start..value_start + range.end)
        }
    } else {
        fragments::find(&mut decoder, data_offset, size, frame, &header)?
    };
    Ok((header, source))
}

/// The transfer syntax, if this build can decode its pixel data.
pub(crate) fn decodable(uid: &str) -> Result<&'static TransferSyntax, RenderError> {
    let uid = uid.trim_end_matches(['\0', ' ']);
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() || matches!(ts.codec(), Codec::Dataset(Some(_))) => Ok(ts),
        Some(ts) => Err(RenderError::Unsupported(format!(
            "this server cannot decode pixel data in transfer syntax {uid} ({})",
            ts.name()
        ))),
        None => Err(RenderError::Unsupported(format!(
            "unknown transfer syntax {uid}"
        ))),
    }
}

struct PixelDataStart {
    /// Where the pixel data element starts in the data set (the header's length).
    element_start: usize,
    /// Its length; `None` when undefined (encapsulated).
    length: Option<u32>,
}

/// Walks element headers at the root of the data set until the pixel data element.
fn walk_to_pixel_data<D: StatefulDecode>(decoder: &mut D) -> Result<PixelDataStart, RenderError> {
    let mut depth = 0usize;
    loop {
        let before = decoder.position();
        let header = decoder
            .decode_header()
            .map_err(|_| RenderError::NoPixelData)?;
        if before as usize > MAX_HEADER {
            return Err(RenderError::Unsupported(
                "the data set before the pixel data is too large to render".into(),
            ));
        }
        if depth == 0 && header.tag == tags::PIXEL_DATA {
            return Ok(PixelDataStart {
                element_start: before as usize,
                length: (!header.len.is_undefined()).then_some(header.len.0),
            });
        }
        if depth == 0 && header.tag > tags::PIXEL_DATA {
            return Err(RenderError::NoPixelData);
        }
        if header.tag == ITEM_DELIMITER || header.tag == SEQUENCE_DELIMITER {
            depth = depth
                .checked_sub(1)
                .ok_or_else(|| RenderError::Corrupt("unexpected delimiter".into()))?;
        } else if header.len.is_undefined() {
            depth += 1;
        } else {
            decoder
                .skip_bytes(header.len.0)
                .map_err(|e| RenderError::Corrupt(e.to_string()))?;
        }
    }
}

/// Refuses frames too large to render (a header is peer-controlled).
fn check_dimensions(dataset: &InMemDicomObject) -> Result<(), RenderError> {
    let rows = int(dataset, tags::ROWS).unwrap_or(0).max(0) as u64;
    let columns = int(dataset, tags::COLUMNS).unwrap_or(0).max(0) as u64;
    let samples = int(dataset, tags::SAMPLES_PER_PIXEL)
        .unwrap_or(1)
        .clamp(1, 4) as u64;
    let bytes = (int(dataset, tags::BITS_ALLOCATED).unwrap_or(8).clamp(8, 64) as u64) / 8;
    if rows * columns > MAX_PIXELS || rows * columns * samples * bytes > MAX_FRAME {
        return Err(RenderError::Unsupported(format!(
            "a frame of {rows}×{columns} pixels is too large to render"
        )));
    }
    Ok(())
}

/// Bytes of one native frame.
pub(crate) fn frame_size(dataset: &InMemDicomObject) -> Result<u64, RenderError> {
    let rows = int(dataset, tags::ROWS).unwrap_or(0);
    let columns = int(dataset, tags::COLUMNS).unwrap_or(0);
    let samples = int(dataset, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let allocated = int(dataset, tags::BITS_ALLOCATED).unwrap_or(0);
    let frames = int(dataset, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    // Native YBR_FULL_422 keeps two luminance and one pair of chrominance samples per two
    // pixels.
    let samples = if is_ybr_422(dataset) && samples == 3 {
        rows * columns * 2
    } else {
        rows * columns * samples
    };
    if samples <= 0 || !matches!(allocated, 1 | 8 | 16 | 32) {
        return Err(RenderError::Corrupt(format!(
            "unusable image dimensions: {rows}×{columns}, {allocated} bits allocated"
        )));
    }
    if allocated == 1 {
        if frames > 1 && samples % 8 != 0 {
            return Err(RenderError::Unsupported(
                "1-bit multi-frame pixel data whose frames do not end on a byte boundary".into(),
            ));
        }
        return Ok((samples as u64).div_ceil(8));
    }
    Ok(samples as u64 * allocated as u64 / 8)
}

/// Frame `frame`'s byte range within native pixel data of `length` bytes.
pub(crate) fn native_range(
    frame: u32,
    frame_size: u64,
    length: u32,
) -> Result<Range<u64>, RenderError> {
    let start = u64::from(frame) * frame_size;
    let end = start + frame_size;
    if end > u64::from(length) {
        return Err(RenderError::Corrupt(format!(
            "the pixel data ({length} bytes) is too short for frame {frame} of {frame_size} bytes"
        )));
    }
    Ok(start..end)
}

/// An object holding just this frame, for dicom-pixeldata: native samples become explicit VR
/// little endian, fragments keep their transfer syntax.
pub(crate) fn single_frame_object(
    header: Header,
    source: FrameSource,
) -> Result<FileDicomObject<InMemDicomObject>, RenderError> {
    let Header {
        mut meta,
        mut dataset,
        ts,
        ..
    } = header;
    dataset.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    let allocated = int(&dataset, tags::BITS_ALLOCATED).unwrap_or(8);
    match source {
        FrameSource::Native(mut data) => {
            if ts.endianness() == Endianness::Big && allocated > 8 {
                let width = allocated as usize / 8;
                data.chunks_exact_mut(width).for_each(|c| c.reverse());
            }
            if int(&dataset, tags::SAMPLES_PER_PIXEL) == Some(3) && allocated == 8 {
                data = native_color_to_rgb(&mut dataset, data);
            }
            let vr = if allocated > 8 { VR::OW } else { VR::OB };
            dataset.put(DataElement::new(
                tags::PIXEL_DATA,
                vr,
                PrimitiveValue::U8(data.into()),
            ));
            meta.transfer_syntax = uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string();
        }
        FrameSource::Fragments(fragments) => {
            dataset.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PixelFragmentSequence::new(vec![], fragments),
            ));
            meta.transfer_syntax = ts.uid().to_string();
        }
        FrameSource::NativeRange(_) | FrameSource::FragmentRange(_) => {
            unreachable!("ranges are fetched before the object is built")
        }
    }
    Ok(dataset.with_exact_meta(meta))
}

fn is_ybr_422(dataset: &InMemDicomObject) -> bool {
    photometric(dataset) == "YBR_FULL_422"
}

pub(crate) fn photometric(dataset: &InMemDicomObject) -> String {
    dataset
        .get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.to_str().ok())
        .map(|pi| pi.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

/// A native 8-bit color frame as interleaved RGB, its attributes changed to match.
fn native_color_to_rgb(dataset: &mut InMemDicomObject, data: Vec<u8>) -> Vec<u8> {
    let pi = photometric(dataset);
    let mut data = if pi == "YBR_FULL_422" {
        color::upsample_422(&data)
    } else if int(dataset, tags::PLANAR_CONFIGURATION) == Some(1) {
        color::interleave(&data)
    } else {
        data
    };
    if pi == "YBR_FULL" || pi == "YBR_FULL_422" {
        color::ybr_full_to_rgb(&mut data);
    }
    if pi == "YBR_FULL" || pi == "YBR_FULL_422" || pi == "RGB" {
        dataset.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ));
        dataset.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    data
}

/// An integer attribute.
pub(crate) fn int(dataset: &InMemDicomObject, tag: Tag) -> Option<i64> {
    dataset.get(tag)?.to_int::<i64>().ok()
}

fn corrupt(what: &'static str) -> impl Fn(std::io::Error) -> RenderError {
    move |e| RenderError::Corrupt(format!("{what}: {e}"))
}

/// Passes bytes through and keeps a copy of them while `capturing` is set.
struct Tee<R> {
    inner: R,
    captured: Rc<RefCell<Vec<u8>>>,
    capturing: Rc<Cell<bool>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.capturing.get() {
            self.captured.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}
