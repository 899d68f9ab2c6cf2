//! Where an instance being inspected is read from: its spooled file, or the pieces it arrived
//! in while they are still in memory (an instance that fits in one write batch), so that the
//! check before the acknowledgement reads no file back.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A part-10 file, opened anew for each pass over it.
pub(super) trait Source {
    type Reader: Read + Seek;
    fn open(&self) -> std::io::Result<Self::Reader>;
}

impl Source for &Path {
    type Reader = BufReader<std::fs::File>;
    fn open(&self) -> std::io::Result<Self::Reader> {
        Ok(BufReader::with_capacity(
            64 * 1024,
            std::fs::File::open(self)?,
        ))
    }
}

/// The file's bytes as pieces, in order.
pub(super) struct InMemory<'a>(pub &'a [Vec<u8>]);

impl<'a> Source for InMemory<'a> {
    type Reader = Pieces<'a>;
    fn open(&self) -> std::io::Result<Self::Reader> {
        Ok(Pieces {
            pieces: self.0,
            piece: 0,
            offset: 0,
        })
    }
}

/// A reader over pieces: where it is, as the index of a piece and an offset into it. (The
/// standard library chains readers but cannot seek in a chain; `bytes::Buf::chain` neither.)
pub(super) struct Pieces<'a> {
    pieces: &'a [Vec<u8>],
    piece: usize,
    offset: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(piece) = self.pieces.get(self.piece) {
            let left = &piece[self.offset.min(piece.len())..];
            if left.is_empty() {
                self.piece += 1;
                self.offset = 0;
                continue;
            }
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }
}

impl Seek for Pieces<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let total: u64 = self.pieces.iter().map(|p| p.len() as u64).sum();
        let here = self.pieces[..self.piece.min(self.pieces.len())]
            .iter()
            .map(|p| p.len() as u64)
            .sum::<u64>()
            + self.offset as u64;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => total.checked_add_signed(d),
            SeekFrom::Current(d) => here.checked_add_signed(d),
        }
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // Past the end reads nothing, as with a file.
        let mut rest = target;
        self.piece = 0;
        self.offset = 0;
        for piece in self.pieces {
            if rest < piece.len() as u64 {
                self.offset = rest as usize;
                return Ok(target);
            }
            rest -= piece.len() as u64;
            self.piece += 1;
        }
        self.offset = rest as usize;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_seeks_across_pieces_as_a_file_would() {
        let pieces = vec![
            b"abc".to_vec(),
            Vec::new(),
            b"defgh".to_vec(),
            b"ij".to_vec(),
        ];
        let mut r = InMemory(&pieces).open().unwrap();
        let mut all = String::new();
        r.read_to_string(&mut all).unwrap();
        assert_eq!(all, "abcdefghij");
        assert_eq!(r.seek(SeekFrom::Start(2)).unwrap(), 2);
        let mut four = [0u8; 4];
        r.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"cdef");
        assert_eq!(r.seek(SeekFrom::Current(3)).unwrap(), 9);
        assert_eq!(r.seek(SeekFrom::End(-3)).unwrap(), 7);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"hij");
        assert_eq!(r.seek(SeekFrom::Start(20)).unwrap(), 20);
        assert_eq!(r.read(&mut four).unwrap(), 0);
        assert!(r.seek(SeekFrom::Current(-30)).is_err());
    }
}
