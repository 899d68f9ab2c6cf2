//! Reading a spooled part-10 file back: check that it is whole and well formed, and pull out
//! the attributes the index keeps. Pixel data is never loaded.

use std::cell::Cell;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Codec;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use crate::main_tags::{self, InstanceTags};

const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
/// Pixel Data, Float Pixel Data and Double Float Pixel Data.
const PIXEL_DATA_TAGS: [Tag; 3] = [tags::PIXEL_DATA, Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)];

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot parse the data set: {0}")]
    Malformed(String),
    #[error("the data set is truncated at byte {0}")]
    Truncated(u64),
    #[error("the data set has no {0}")]
    MissingUid(&'static str),
    #[error("the data set's SOP Instance UID {found:?} differs from the command's {expected:?}")]
    UidMismatch { expected: String, found: String },
    #[error("unknown transfer syntax {0}")]
    UnknownTransferSyntax(String),
    #[error("I/O error reading the spooled file: {0}")]
    Io(#[from] std::io::Error),
}

/// What the index needs from one file.
#[derive(Debug)]
pub struct Inspected {
    pub tags: InstanceTags,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Whether the root data set has pixel data (integer, float or double).
    pub has_pixel_data: bool,
}

/// Parses the file at `path` up to its pixel data and checks that its data set is complete.
/// `expected_sop_instance_uid` is the UID the DIMSE command announced, if any.
pub fn inspect(
    path: &Path,
    expected_sop_instance_uid: Option<&str>,
) -> Result<Inspected, InspectError> {
    // The structure check comes first: it only skips values, while the parser below reserves
    // whatever length an element header claims. Once every length is known to fit in the
    // file, parsing costs at most the file's own size.
    let (data_offset, ts_uid) = read_meta(path)?;
    let has_pixel_data = check_complete(path, data_offset, &ts_uid)?;
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| InspectError::Malformed(e.to_string()))?;
    let meta = object.meta();

    let dataset: &InMemDicomObject = &object;
    let sop_instance_uid = required(dataset, tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    if let Some(expected) = expected_sop_instance_uid
        && trim(expected) != sop_instance_uid
    {
        return Err(InspectError::UidMismatch {
            expected: trim(expected).into(),
            found: sop_instance_uid,
        });
    }
    required(dataset, tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
    required(dataset, tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
    let sop_class_uid = main_tags::text(dataset, tags::SOP_CLASS_UID)
        .unwrap_or_else(|| trim(meta.media_storage_sop_class_uid()).to_string());
    Ok(Inspected {
        tags: main_tags::extract(dataset),
        sop_class_uid,
        sop_instance_uid,
        transfer_syntax_uid: ts_uid,
        has_pixel_data,
    })
}

/// Where the data set starts (after preamble, magic and meta group) and its transfer syntax.
fn read_meta(path: &Path) -> Result<(u64, String), InspectError> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    file.seek(SeekFrom::Start(128))?;
    let meta = dicom_object::FileMetaTable::from_reader(&mut file)
        .map_err(|e| InspectError::Malformed(format!("file meta group: {e}")))?;
    // Preamble, magic, the group length element itself, then the group.
    let offset = 128 + 4 + 12 + u64::from(meta.information_group_length);
    Ok((offset, trim(meta.transfer_syntax()).to_string()))
}

/// Whether the deflate stream after `offset` reaches its end marker. An inflater reading a
/// stream cut short just stops, so a data set missing its last bytes would otherwise look
/// whole when the cut falls between elements.
fn deflate_stream_ends(path: &Path, offset: u64) -> Result<bool, InspectError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut file = std::fs::File::open(path)?;
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

fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

fn required(
    dataset: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<String, InspectError> {
    main_tags::text(dataset, tag)
        .filter(|v| !v.is_empty())
        .ok_or(InspectError::MissingUid(name))
}

/// Counts the bytes that really came out of the underlying reader: the decoder's own position
/// advances by the requested length even when a skip hits the end of the file.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Walks every element header of the data set, skipping values, and checks that the last one
/// ends exactly at the end of the data and that every undefined-length sequence and item is
/// closed. This finds data sets cut short anywhere, including inside pixel data, in one pass
/// with constant memory.
/// Returns whether the root data set holds pixel data.
fn check_complete(path: &Path, data_offset: u64, ts_uid: &str) -> Result<bool, InspectError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| InspectError::UnknownTransferSyntax(ts_uid.into()))?;
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(data_offset))?;
    let count = Rc::new(Cell::new(0));
    let counting = Counting {
        inner: BufReader::with_capacity(64 * 1024, file),
        count: count.clone(),
    };
    let reader: Box<dyn Read> = match ts.codec() {
        Codec::Dataset(Some(adapter)) => adapter.adapt_reader(Box::new(counting)),
        _ => Box::new(counting),
    };
    // With a deflated data set the counter sees compressed bytes, so compare against what the
    // inflater produced instead.
    let (reader, produced): (Box<dyn Read>, Rc<Cell<u64>>) =
        if matches!(ts.codec(), Codec::Dataset(Some(_))) {
            let produced = Rc::new(Cell::new(0));
            (
                Box::new(Counting {
                    inner: reader,
                    count: produced.clone(),
                }),
                produced,
            )
        } else {
            (reader, count)
        };
    let mut decoder = StatefulDecoder::new_with_ts(reader, ts, 0)
        .map_err(|e| InspectError::Malformed(e.to_string()))?;
    let mut open_containers = 0usize;
    let mut has_pixel_data = false;
    loop {
        let before = decoder.position();
        let header = match decoder.decode_header() {
            Ok(header) => header,
            Err(_) if produced.get() == before => {
                // Nothing more to read at an element boundary: the end of the data set.
                let deflated = matches!(ts.codec(), Codec::Dataset(Some(_)));
                let whole =
                    open_containers == 0 && (!deflated || deflate_stream_ends(path, data_offset)?);
                return if whole {
                    Ok(has_pixel_data)
                } else {
                    Err(InspectError::Truncated(data_offset + before))
                };
            }
            Err(_) => return Err(InspectError::Truncated(data_offset + produced.get())),
        };
        let undefined = header.len.is_undefined();
        if open_containers == 0 && PIXEL_DATA_TAGS.contains(&header.tag) {
            has_pixel_data = true;
        }
        if header.tag == ITEM_DELIMITER || header.tag == SEQUENCE_DELIMITER {
            open_containers = open_containers.checked_sub(1).ok_or_else(|| {
                InspectError::Malformed(format!(
                    "unexpected delimiter at byte {}",
                    data_offset + before
                ))
            })?;
        } else if undefined {
            open_containers += 1;
        } else {
            let length = header.len.0;
            decoder
                .skip_bytes(length)
                .map_err(|e| InspectError::Malformed(e.to_string()))?;
            if produced.get() < decoder.position() {
                return Err(InspectError::Truncated(data_offset + produced.get()));
            }
        }
    }
}
