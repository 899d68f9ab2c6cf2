//! A stored part-10 file converted to another transfer syntax, in memory: pixel data decoded
//! by dicom-pixeldata where the file is compressed. For peers and clients that take only what
//! we do not store (C-MOVE to an uncompressed-only node, WADO-RS asking for a syntax).

use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// Why a file could not be converted.
#[derive(Debug, thiserror::Error)]
#[error("cannot convert to {ts}: {reason}")]
pub struct TranscodeError {
    pub ts: String,
    pub reason: String,
}

/// `file` (a whole part-10 file) parsed and converted to `ts`.
fn convert(file: &[u8], ts: &str) -> Result<dicom_object::DefaultDicomObject, TranscodeError> {
    let failed = |reason: String| TranscodeError {
        ts: ts.to_string(),
        reason,
    };
    let target = TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| failed("unknown transfer syntax".into()))?;
    let body = file
        .get(128..)
        .ok_or_else(|| failed("not a part-10 file".into()))?;
    let mut object = dicom_object::OpenFileOptions::new()
        .from_reader(body)
        .map_err(|e| failed(e.to_string()))?;
    // Decoders panic on some corrupt input: a panic fails this file, not the server.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| object.transcode(target)))
        .map_err(|_| failed("the decoder failed".into()))?
        .map_err(|e| failed(e.to_string()))?;
    Ok(object)
}

/// The data set of `file` in `ts`, without preamble or meta group (what a C-STORE carries).
pub fn data_set(file: &[u8], ts: &str) -> Result<Vec<u8>, TranscodeError> {
    let object = convert(file, ts)?;
    let target = TransferSyntaxRegistry.get(ts).expect("checked by convert");
    let mut data = Vec::new();
    object
        .write_dataset_with_ts(&mut data, target)
        .map_err(|e| TranscodeError {
            ts: ts.to_string(),
            reason: e.to_string(),
        })?;
    Ok(data)
}

/// `file` as a whole part-10 file in `ts`, its meta group saying so.
pub fn part10(file: &[u8], ts: &str) -> Result<Vec<u8>, TranscodeError> {
    let object = convert(file, ts)?;
    let mut out = Vec::with_capacity(file.len());
    object.write_all(&mut out).map_err(|e| TranscodeError {
        ts: ts.to_string(),
        reason: e.to_string(),
    })?;
    Ok(out)
}
