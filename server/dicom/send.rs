//! Sending stored instances with C-STORE over an association, ours (C-MOVE, "send to") or the
//! peer's (C-GET): the presentation contexts to propose, the one each instance goes on, and its
//! data set streamed from the blob store a PDU at a time, or transcoded first when the peer
//! does not take the stored syntax.

use std::collections::{BTreeSet, VecDeque};
use std::io::IoSlice;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use dicom_ul::association::{Association, AsyncAssociation};
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::dimse;
use crate::index::RetrieveItem;
use crate::storage::{BlobStore, BlobStream, StorageError};

pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// Most presentation contexts one association can propose (odd IDs 1 to 255).
pub const MAX_CONTEXTS: usize = 128;

/// Bytes of a data set read from its blob at a time.
const CHUNK: usize = 1 << 20;

/// Largest instance we transcode in memory; larger ones go as stored or not at all.
const MAX_TRANSCODE: u64 = 1 << 30;

/// Why one instance was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The peer accepted no context for its SOP class and syntax (or one we can convert to).
    #[error("the peer accepted no presentation context for SOP class {0} in {1}")]
    NoContext(String, String),
    #[error("cannot read the stored file: {0}")]
    Blob(#[from] StorageError),
    #[error("the stored file is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot convert to {0}: {1}")]
    Transcode(String, String),
    /// The association is gone: nothing more can be sent on it.
    #[error("network: {0}")]
    Network(#[from] std::io::Error),
}

impl SendError {
    /// Whether the association can still carry the next instance.
    pub fn association_lost(&self) -> bool {
        matches!(self, SendError::Network(_))
    }
}

/// The presentation contexts to propose for `items`: each SOP class in each stored syntax, and
/// each SOP class in the uncompressed syntaxes we can convert to. At most `MAX_CONTEXTS`;
/// classes past that have no context and fail.
pub fn proposals<'a>(
    items: impl IntoIterator<Item = &'a RetrieveItem>,
) -> Vec<(String, Vec<String>)> {
    let mut as_stored = BTreeSet::new();
    let mut classes = BTreeSet::new();
    for item in items {
        as_stored.insert((item.sop_class_uid.clone(), item.transfer_syntax_uid.clone()));
        classes.insert(item.sop_class_uid.clone());
    }
    let mut proposals: Vec<(String, Vec<String>)> = Vec::new();
    for (class, ts) in as_stored {
        if ts != EXPLICIT_LE && ts != IMPLICIT_LE {
            proposals.push((class, vec![ts]));
        }
    }
    // Explicit first: it keeps the VRs. Every peer takes Implicit (PS3.5 10.1).
    for class in classes {
        proposals.push((class, vec![EXPLICIT_LE.into(), IMPLICIT_LE.into()]));
    }
    proposals.truncate(MAX_CONTEXTS);
    proposals
}

/// How an instance goes: on which accepted context, and in which syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub context_id: u8,
    pub transfer_syntax: String,
    pub transcode: bool,
}

/// The context for `item`: one taking its stored syntax, else one taking an uncompressed
/// syntax to convert it to.
pub fn choose(contexts: &[PresentationContextNegotiated], item: &RetrieveItem) -> Option<Choice> {
    let accepted = || {
        contexts.iter().filter(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && pc.abstract_syntax.trim_end_matches('\0') == item.sop_class_uid
        })
    };
    let ts =
        |pc: &PresentationContextNegotiated| pc.transfer_syntax.trim_end_matches('\0').to_string();
    if let Some(pc) = accepted().find(|pc| ts(pc) == item.transfer_syntax_uid) {
        return Some(Choice {
            context_id: pc.id,
            transfer_syntax: ts(pc),
            transcode: false,
        });
    }
    accepted()
        .find(|pc| matches!(ts(pc).as_str(), EXPLICIT_LE | IMPLICIT_LE))
        .map(|pc| Choice {
            context_id: pc.id,
            transfer_syntax: ts(pc),
            transcode: true,
        })
}

/// A stored file opened for reading, as chunks, with its size.
pub type Opened = (BlobStream, u64);

/// Opens each instance's file while those before are being sent: on S3 the wait for the next
/// objects' first bytes then overlaps the transfer instead of adding to it. A few at a time:
/// each open one holds a connection and its first chunk, not the object.
pub struct Prefetch {
    blobs: Arc<dyn BlobStore>,
    ahead:
        std::collections::VecDeque<(usize, tokio::task::JoinHandle<Result<Opened, StorageError>>)>,
}

/// Files opened ahead of the one being sent.
const AHEAD: usize = 4;

impl Prefetch {
    pub fn new(blobs: Arc<dyn BlobStore>) -> Prefetch {
        Prefetch {
            blobs,
            ahead: Default::default(),
        }
    }

    /// The file of `items[i]`, with the opening of the next few begun.
    pub async fn open(&mut self, items: &[RetrieveItem], i: usize) -> Result<Opened, SendError> {
        // Skipped items (a failure before) leave stale entries at the front.
        while self.ahead.front().is_some_and(|(j, _)| *j < i) {
            self.ahead.pop_front();
        }
        let opened = match self.ahead.front() {
            Some((j, _)) if *j == i => {
                let (_, handle) = self.ahead.pop_front().expect("just looked");
                handle
                    .await
                    .map_err(|e| SendError::Blob(StorageError::Io(std::io::Error::other(e))))?
            }
            _ => self.blobs.stream(&items[i].blob_key, None).await,
        };
        let mut next = self.ahead.back().map_or(i + 1, |(j, _)| j + 1);
        while self.ahead.len() < AHEAD && next < items.len() {
            let (blobs, key) = (self.blobs.clone(), items[next].blob_key.clone());
            let handle = tokio::spawn(async move { blobs.stream(&key, None).await });
            self.ahead.push_back((next, handle));
            next += 1;
        }
        Ok(opened?)
    }
}

/// Sends the C-STORE-RQ for `item` and its data set on `choice`'s context; the response is
/// the caller's to read. Nothing is sent when the stored file cannot be opened or converted.
pub async fn store_request<A, S>(
    association: &mut A,
    choice: &Choice,
    message_id: u16,
    item: &RetrieveItem,
    originator: Option<(&str, u16)>,
    opened: Opened,
) -> Result<(), SendError>
where
    A: AsyncAssociation<S> + Association,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let room = match association.peer_max_pdu_length() {
        // No limit announced: PDUs of a size that keeps memory small.
        0 => 1 << 20,
        max => (max as usize).saturating_sub(6).clamp(1, 1 << 24),
    };
    let (chunks, size) = opened;
    let mut file = Queue::new(chunks);
    let command = dimse::store_request(
        message_id,
        &item.sop_class_uid,
        &item.sop_instance_uid,
        originator,
    );
    if choice.transcode {
        if size > MAX_TRANSCODE {
            return Err(SendError::Transcode(
                choice.transfer_syntax.clone(),
                format!("{size} bytes is too large to convert"),
            ));
        }
        // The meta group is part of what dicom-rs parses: the whole file, from its start.
        file.fill(size as usize).await.map_err(StorageError::Io)?;
        let file = file.copy_prefix(size as usize);
        let target = choice.transfer_syntax.clone();
        let data = tokio::task::spawn_blocking(move || crate::transcode::data_set(&file, &target))
            .await
            .map_err(|e| SendError::Transcode(choice.transfer_syntax.clone(), e.to_string()))?
            .map_err(|e| SendError::Transcode(e.ts, e.reason))?;
        let stream = AsyncAssociation::inner_stream(association);
        write_pdv(stream, choice.context_id, true, true, &command).await?;
        let mut pieces = data.chunks(room).peekable();
        while let Some(piece) = pieces.next() {
            write_pdv(
                stream,
                choice.context_id,
                false,
                pieces.peek().is_none(),
                piece,
            )
            .await?;
        }
        return Ok(());
    }
    let offset = skip_meta_group(&mut file).await?;
    let length = size
        .checked_sub(offset)
        .ok_or_else(|| SendError::Corrupt("shorter than its meta group".into()))?;
    let stream = AsyncAssociation::inner_stream(association);
    write_pdv(stream, choice.context_id, true, true, &command).await?;
    // The file's chunks are framed where they lie: each PDU is its header and slices of the
    // chunks, a MiB of PDUs written with one `writev`. No byte is copied in user space, and
    // memory stays at about two chunks whatever the instance's size.
    let mut parts: Vec<Bytes> = Vec::new();
    let mut batched = 0;
    let mut left = length;
    while left > 0 {
        let take = (left as usize).min(room);
        file.fill(take).await.map_err(|e| {
            // Part of the data set is on the wire: the association cannot go on.
            SendError::Network(std::io::Error::other(format!(
                "the stored file could not be read to its end: {e}"
            )))
        })?;
        left -= take as u64;
        let mut header = [0u8; HEADERS];
        pdata_header(&mut header, choice.context_id, false, left == 0, take);
        parts.push(Bytes::copy_from_slice(&header));
        file.split_into(take, &mut parts);
        batched += take;
        if batched >= CHUNK || left == 0 {
            write_all_vectored(stream, &parts).await?;
            parts.clear();
            batched = 0;
        }
    }
    stream.flush().await?;
    Ok(())
}

/// A blob's chunks as they arrive, taken from the front a given number of bytes at a time.
struct Queue {
    chunks: BlobStream,
    held: VecDeque<Bytes>,
    len: usize,
}

impl Queue {
    fn new(chunks: BlobStream) -> Queue {
        Queue {
            chunks,
            held: VecDeque::new(),
            len: 0,
        }
    }

    /// Reads chunks until at least `want` bytes are held; the file ending first is an error.
    async fn fill(&mut self, want: usize) -> std::io::Result<()> {
        while self.len < want {
            match self.chunks.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.len += chunk.len();
                    self.held.push_back(chunk);
                }
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the file ends {} bytes short", want - self.len),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Moves the first `n` held bytes (`n` ≤ held) to `out`, as slices of the chunks.
    fn split_into(&mut self, mut n: usize, out: &mut Vec<Bytes>) {
        self.len -= n;
        while n > 0 {
            let front = self.held.front_mut().expect("fill counted these bytes");
            if front.len() <= n {
                n -= front.len();
                out.push(self.held.pop_front().expect("just looked"));
            } else {
                out.push(front.split_to(n));
                n = 0;
            }
        }
    }

    /// The first `n` held bytes (`n` ≤ held) in one buffer, taken off the queue.
    fn copy_prefix(&mut self, n: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        self.split_into(n, &mut parts);
        parts.concat()
    }
}

/// Takes the preamble and meta group off the front of `file`; returns the data set's offset.
async fn skip_meta_group(file: &mut Queue) -> Result<u64, SendError> {
    let corrupt = |e: std::io::Error| SendError::Corrupt(format!("file meta: {e}"));
    file.fill(144).await.map_err(corrupt)?;
    let start = file.copy_prefix(144);
    if &start[128..132] != b"DICM" || start[132..140] != [2, 0, 0, 0, b'U', b'L', 4, 0] {
        return Err(SendError::Corrupt(
            "not a part-10 file with a group length".into(),
        ));
    }
    let group_length = u32::from_le_bytes([start[140], start[141], start[142], start[143]]);
    file.fill(group_length as usize).await.map_err(corrupt)?;
    file.split_into(group_length as usize, &mut Vec::new());
    Ok(144 + u64::from(group_length))
}

/// Writes every byte of `parts`, in as few `writev` calls as the socket takes.
async fn write_all_vectored<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parts: &[Bytes],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice> = parts.iter().map(|part| IoSlice::new(part)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let written = stream.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// PDU header (6 bytes) and PDV item header (6 bytes).
const HEADERS: usize = 12;

/// Fills in the headers of a P-DATA-TF holding one PDV of `length` bytes (PS3.8 9.3.5).
fn pdata_header(header: &mut [u8], context_id: u8, command: bool, last: bool, length: usize) {
    let item_length = (length + 2) as u32;
    header[0] = 0x04;
    header[1] = 0;
    header[2..6].copy_from_slice(&(item_length + 4).to_be_bytes());
    header[6..10].copy_from_slice(&item_length.to_be_bytes());
    header[10] = context_id;
    header[11] = u8::from(command) | (u8::from(last) << 1);
}

/// One PDV in a P-DATA-TF of its own, in one write.
pub async fn write_pdv<S: AsyncWrite + Unpin>(
    stream: &mut S,
    context_id: u8,
    command: bool,
    last: bool,
    data: &[u8],
) -> std::io::Result<()> {
    let mut pdu = vec![0u8; HEADERS + data.len()];
    pdata_header(&mut pdu[..HEADERS], context_id, command, last, data.len());
    pdu[HEADERS..].copy_from_slice(data);
    stream.write_all(&pdu).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(class: &str, ts: &str) -> RetrieveItem {
        RetrieveItem {
            id: "x".into(),
            sop_class_uid: class.into(),
            sop_instance_uid: "1.2".into(),
            transfer_syntax_uid: ts.into(),
            blob_key: "k".into(),
            size: 0,
        }
    }

    fn negotiated(id: u8, class: &str, ts: &str, ok: bool) -> PresentationContextNegotiated {
        PresentationContextNegotiated {
            id,
            reason: if ok {
                PresentationContextResultReason::Acceptance
            } else {
                PresentationContextResultReason::TransferSyntaxesNotSupported
            },
            transfer_syntax: ts.into(),
            abstract_syntax: class.into(),
        }
    }

    #[test]
    fn stored_syntax_first_then_uncompressed() {
        const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
        const JPEG: &str = "1.2.840.10008.1.2.4.70";
        let items = [item(CT, JPEG), item(CT, EXPLICIT_LE)];
        let proposed = proposals(&items);
        assert_eq!(
            proposed,
            vec![
                (CT.to_string(), vec![JPEG.to_string()]),
                (
                    CT.to_string(),
                    vec![EXPLICIT_LE.to_string(), IMPLICIT_LE.to_string()]
                ),
            ]
        );
        let both = [
            negotiated(1, CT, JPEG, true),
            negotiated(3, CT, IMPLICIT_LE, true),
        ];
        assert_eq!(choose(&both, &items[0]).unwrap().context_id, 1);
        let converted = choose(&both, &items[1]).unwrap();
        assert_eq!((converted.context_id, converted.transcode), (3, true));
        let refused = [negotiated(1, CT, JPEG, false)];
        assert!(choose(&refused, &items[0]).is_none());
    }

    #[test]
    fn pdv_headers_count_what_follows() {
        let mut header = [0u8; HEADERS];
        pdata_header(&mut header, 5, false, true, 100);
        assert_eq!(header, [4, 0, 0, 0, 0, 106, 0, 0, 0, 102, 5, 2]);
    }
}
