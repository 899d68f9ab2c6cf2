//! Reading PDUs on an established association. A P-DATA-TF is read from the socket straight into
//! one buffer per PDV, which the spool then keeps as it is; every other PDU is decoded by
//! dicom-ul. (dicom-ul's reader copies each P-DATA twice — the whole PDU into a `Bytes`, then
//! each PDV into a `Vec` — and reparses the buffered bytes on every read: a tenth of the CPU
//! a 512 KB instance cost. Its PDU types are kept, so the rest of the handler is unchanged.)

use std::io::Cursor;

use bytes::{Buf, BufMut, BytesMut};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, read_pdu};
use tokio::io::{AsyncRead, AsyncReadExt};

/// PDU type of P-DATA-TF (PS3.8 9.3.5).
const P_DATA_TF: u8 = 0x04;
/// PDU header: type, reserved, 4-byte length.
const PDU_HEADER: usize = 6;
/// PDV item header: 4-byte length, presentation context ID, message control header.
const PDV_HEADER: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("reading from the peer: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("a PDU of {length} bytes, above the maximum of {max}")]
    TooLarge { length: u32, max: u32 },
    #[error("malformed P-DATA-TF: {0}")]
    Malformed(&'static str),
    #[error("malformed PDU: {0}")]
    Pdu(#[from] dicom_ul::pdu::ReadError),
}

/// Reads the next PDU of at most `max_pdu_length` bytes (the length we announced). `buffer`
/// holds bytes already read from `stream` (dicom-ul's read buffer, after the negotiation) and
/// is left holding nothing of a later PDU: reads stop where the current structure ends.
pub async fn receive_pdu<S>(
    stream: &mut S,
    buffer: &mut BytesMut,
    max_pdu_length: u32,
) -> Result<Pdu, ReceiveError>
where
    S: AsyncRead + Unpin,
{
    fill(stream, buffer, PDU_HEADER).await?;
    let pdu_type = buffer[0];
    let length = pdu_length(buffer, max_pdu_length)?;
    if pdu_type != P_DATA_TF {
        fill(stream, buffer, PDU_HEADER + length as usize).await?;
        let mut cursor = Cursor::new(&buffer[..]);
        let pdu = read_pdu(&mut cursor, max_pdu_length, true)?
            .ok_or(ReceiveError::Malformed("a PDU shorter than its length"))?;
        let used = cursor.position() as usize;
        buffer.advance(used);
        return Ok(pdu);
    }
    buffer.advance(PDU_HEADER);
    let mut remaining = length as usize;
    let mut values = Vec::new();
    while remaining > 0 {
        if remaining < PDV_HEADER {
            return Err(ReceiveError::Malformed("an item header beyond the PDU"));
        }
        fill(stream, buffer, PDV_HEADER).await?;
        let item_length = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
        let presentation_context_id = buffer[4];
        let control = buffer[5];
        buffer.advance(PDV_HEADER);
        remaining -= PDV_HEADER;
        if item_length < 2 {
            return Err(ReceiveError::Malformed("an item shorter than its header"));
        }
        let size = item_length - 2;
        if size > remaining {
            return Err(ReceiveError::Malformed("an item longer than the PDU"));
        }
        values.push(PDataValue {
            presentation_context_id,
            value_type: if control & 0x01 != 0 {
                PDataValueType::Command
            } else {
                PDataValueType::Data
            },
            is_last: control & 0x02 != 0,
            data: read_value(stream, buffer, size).await?,
        });
        remaining -= size;
    }
    Ok(Pdu::PData { data: values })
}

/// A PDU that has already arrived, read without waiting; `None` when none has (yet) in whole.
/// What arrived of a later one stays in `buffer` for `receive_pdu`.
pub fn ready_pdu<S>(
    stream: &mut S,
    buffer: &mut BytesMut,
    max_pdu_length: u32,
) -> Result<Option<Pdu>, ReceiveError>
where
    S: AsyncRead + Unpin,
{
    use futures::FutureExt;
    // Reads into `buffer` are cancel-safe: what a read took stays there.
    loop {
        let needed = if buffer.len() < PDU_HEADER {
            PDU_HEADER
        } else {
            PDU_HEADER + pdu_length(buffer, max_pdu_length)? as usize
        };
        let Some(wanted) = needed.checked_sub(buffer.len()).filter(|n| *n > 0) else {
            break;
        };
        buffer.reserve(wanted);
        match stream
            .read_buf(&mut (&mut *buffer).limit(wanted))
            .now_or_never()
        {
            None => return Ok(None),
            Some(Ok(0)) => return Err(ReceiveError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
    receive_pdu(stream, buffer, max_pdu_length)
        .now_or_never()
        .expect("a PDU already in the buffer is read without waiting")
        .map(Some)
}

/// The length field of the PDU header at the start of `buffer`, refused above `max`.
fn pdu_length(buffer: &[u8], max: u32) -> Result<u32, ReceiveError> {
    let length = u32::from_be_bytes([buffer[2], buffer[3], buffer[4], buffer[5]]);
    if length > max {
        return Err(ReceiveError::TooLarge { length, max });
    }
    Ok(length)
}

/// Reads until `buffer` holds at least `needed` bytes, never more than that from the stream.
async fn fill<S>(stream: &mut S, buffer: &mut BytesMut, needed: usize) -> Result<(), ReceiveError>
where
    S: AsyncRead + Unpin,
{
    while buffer.len() < needed {
        let missing = needed - buffer.len();
        buffer.reserve(missing);
        if stream.read_buf(&mut (&mut *buffer).limit(missing)).await? == 0 {
            return Err(ReceiveError::Closed);
        }
    }
    Ok(())
}

/// A PDV's `size` bytes: what `buffer` already holds, then the rest read from the stream into
/// the value's own allocation.
async fn read_value<S>(
    stream: &mut S,
    buffer: &mut BytesMut,
    size: usize,
) -> Result<Vec<u8>, ReceiveError>
where
    S: AsyncRead + Unpin,
{
    let mut value = Vec::with_capacity(size);
    let buffered = size.min(buffer.len());
    value.extend_from_slice(&buffer[..buffered]);
    buffer.advance(buffered);
    while value.len() < size {
        let missing = size - value.len();
        if stream.read_buf(&mut (&mut value).limit(missing)).await? == 0 {
            return Err(ReceiveError::Closed);
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::write_pdu;

    fn encode(pdu: &Pdu) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_pdu(&mut bytes, pdu).unwrap();
        bytes
    }

    fn pdata(values: &[(u8, PDataValueType, bool, usize)]) -> Pdu {
        Pdu::PData {
            data: values
                .iter()
                .map(|(id, value_type, is_last, size)| PDataValue {
                    presentation_context_id: *id,
                    value_type: value_type.clone(),
                    is_last: *is_last,
                    data: (0..*size)
                        .map(|i| (i * 7 + usize::from(*id)) as u8)
                        .collect(),
                })
                .collect(),
        }
    }

    /// Reads every PDU of `wire`, delivered `step` bytes at a time.
    fn read_all(wire: &[u8], step: usize) -> Vec<Pdu> {
        futures::executor::block_on(async {
            let mut stream = Chunked { wire, step };
            let mut buffer = BytesMut::new();
            let mut pdus = Vec::new();
            loop {
                match receive_pdu(&mut stream, &mut buffer, 131_072).await {
                    Ok(pdu) => pdus.push(pdu),
                    Err(ReceiveError::Closed) => return pdus,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    }

    /// A reader that hands out at most `step` bytes per read, as a socket may.
    struct Chunked<'a> {
        wire: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Chunked<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.step.min(self.wire.len()).min(buf.remaining());
            buf.put_slice(&self.wire[..n]);
            self.wire = &self.wire[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn reads_what_dicom_ul_writes_whatever_the_read_sizes() {
        let pdus = vec![
            pdata(&[(1, PDataValueType::Command, true, 90)]),
            pdata(&[
                (1, PDataValueType::Data, false, 40_000),
                (3, PDataValueType::Data, true, 0),
            ]),
            Pdu::ReleaseRQ,
            pdata(&[(5, PDataValueType::Data, true, 3)]),
        ];
        let wire: Vec<u8> = pdus.iter().flat_map(encode).collect();
        for step in [1, 5, 6, 7, 4096, usize::MAX] {
            assert_eq!(read_all(&wire, step), pdus, "reads of {step} bytes");
        }
    }

    #[test]
    fn refuses_pdus_above_the_maximum_and_items_that_do_not_fit() {
        let read = |wire: Vec<u8>| {
            futures::executor::block_on(receive_pdu(&mut &wire[..], &mut BytesMut::new(), 65_536))
        };
        let big = encode(&pdata(&[(1, PDataValueType::Data, true, 70_000)]));
        assert!(matches!(read(big), Err(ReceiveError::TooLarge { .. })));
        // One PDV item claiming more bytes than its PDU holds.
        let mut overlong = encode(&pdata(&[(1, PDataValueType::Data, true, 10)]));
        overlong[6..10].copy_from_slice(&100u32.to_be_bytes());
        assert!(matches!(read(overlong), Err(ReceiveError::Malformed(_))));
        // An item length below its own two header bytes.
        let mut short = encode(&pdata(&[(1, PDataValueType::Data, true, 10)]));
        short[6..10].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(read(short), Err(ReceiveError::Malformed(_))));
        // The connection ends inside a PDV.
        let whole = encode(&pdata(&[(1, PDataValueType::Data, true, 100)]));
        let cut = whole[..50].to_vec();
        assert!(matches!(read(cut), Err(ReceiveError::Closed)));
    }
}
