//! Gzip answers put together from pieces compressed apart.
//!
//! A deflate stream is a sequence of blocks, and a piece compressed on its
//! own (no back-references before its start) and ended with a sync flush
//! (an empty stored block: the piece ends on a byte boundary, not final)
//! can be followed by any other such piece. So the text of an answer can
//! be compressed in parts, on several cores, and the query cache can keep
//! each series' past points compressed ([`Deflated`]): a dashboard's
//! refresh then compresses only its newest steps and copies the rest.
//! The gzip trailer's CRC-32 of the whole text is combined from the
//! pieces' own.
//!
//! Short runs of text between cached pieces (a comma, a series' labels)
//! are written as stored blocks: a compressor's set-up costs more than
//! they would save.

use std::cell::RefCell;

use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress};
use rayon::prelude::*;

/// A run of text at least this long is compressed; a shorter one stored.
const COMPRESS_FROM: usize = 512;

/// Text compressed in one piece at most: a long run is cut into pieces of
/// this size compressed in parallel (each starts without history, which
/// costs little at this size).
const PIECE: usize = 128 * 1024;

// A short run fits one stored block (its length field has 16 bits).
const _: () = assert!(COMPRESS_FROM <= u16::MAX as usize);

/// A gzip member's header: deflate, no name or time, unknown system.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A final, empty block with the fixed codes: ends the deflate stream.
const LAST_BLOCK: [u8; 2] = [0x03, 0x00];

thread_local! {
    /// Compressor state is a few hundred KiB: one per thread, reset
    /// before each piece. Level 2: level 1 (static codes only) takes a
    /// third less time and leaves an answer's points two thirds larger.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(2), false));
}

/// Some text as raw deflate blocks that start with no history and end on
/// a byte boundary without a final block, with its CRC-32 and length.
#[derive(Debug, Clone)]
pub struct Deflated {
    bytes: Box<[u8]>,
    crc: Hasher,
    /// Length of the text.
    len: u64,
}

impl Deflated {
    /// Compresses `text` (a fast level).
    pub fn of(text: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(text.len() / 3 + 64);
        COMPRESSOR.with_borrow_mut(|c| {
            c.reset();
            let mut consumed = 0;
            loop {
                let before = c.total_in();
                // Only a full output buffer stops a sync flush early.
                c.compress_vec(&text[consumed..], &mut bytes, FlushCompress::Sync)
                    .expect("deflate refused its own state");
                consumed += usize::try_from(c.total_in() - before).unwrap_or(0);
                if consumed == text.len() && bytes.len() < bytes.capacity() {
                    break;
                }
                bytes.reserve(bytes.capacity().max(1024));
            }
        });
        let mut crc = Hasher::new();
        crc.update(text);
        Self {
            bytes: bytes.into_boxed_slice(),
            crc,
            len: text.len() as u64,
        }
    }

    /// Memory taken, for the cache's bound.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// A gzip member being put together from text and [`Deflated`] pieces,
/// in order.
#[derive(Debug)]
pub struct GzipWriter {
    out: Vec<u8>,
    crc: Hasher,
    /// Length of the text so far.
    len: u64,
    /// Text not yet written out.
    pending: Vec<u8>,
}

impl Default for GzipWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GzipWriter {
    /// An empty member.
    pub fn new() -> Self {
        Self {
            out: HEADER.to_vec(),
            crc: Hasher::new(),
            len: 0,
            pending: Vec::new(),
        }
    }

    /// Appends text.
    pub fn text(&mut self, text: &[u8]) {
        self.pending.extend_from_slice(text);
    }

    /// Appends text compressed before.
    pub fn deflated(&mut self, piece: &Deflated) {
        self.flush();
        self.append(piece);
    }

    fn append(&mut self, piece: &Deflated) {
        self.out.extend_from_slice(&piece.bytes);
        self.crc.combine(&piece.crc);
        self.len += piece.len;
    }

    /// The whole member.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out.extend_from_slice(&LAST_BLOCK);
        let crc = self.crc.clone().finalize();
        self.out.extend_from_slice(&crc.to_le_bytes());
        // ISIZE: the length modulo 2^32.
        self.out.extend_from_slice(&(self.len as u32).to_le_bytes());
        self.out
    }

    /// Writes out the pending text: compressed (long runs in parallel
    /// pieces) or, when short, stored.
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.pending);
        if text.is_empty() {
            return;
        }
        if text.len() < COMPRESS_FROM {
            // A stored block: type 0 (the pieces before end on a byte
            // boundary), the length and its complement, the text.
            let len = text.len() as u16;
            self.out.push(0);
            self.out.extend_from_slice(&len.to_le_bytes());
            self.out.extend_from_slice(&(!len).to_le_bytes());
            self.out.extend_from_slice(&text);
            self.crc.update(&text);
            self.len += text.len() as u64;
        } else {
            let pieces: Vec<Deflated> = text.par_chunks(PIECE).map(Deflated::of).collect();
            for piece in &pieces {
                self.append(piece);
            }
        }
        // The buffer is kept for the next run.
        self.pending = text;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(member: &[u8]) -> Result<Vec<u8>, std::io::Error> {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(member).read_to_end(&mut text)?;
        Ok(text)
    }

    /// Text that compresses somewhat, like an answer's points.
    fn points(from: usize, count: usize) -> Vec<u8> {
        (from..from + count)
            .map(|i| format!("[{},\"{}\"]", 1_700_000_000 + i * 61, (i * 7919) % 1000))
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes()
    }

    #[test]
    fn pieces_and_text_make_one_member() {
        let parts: Vec<Vec<u8>> = vec![
            b"{\"a\":[".to_vec(),
            points(0, 300),
            b",".to_vec(),
            points(300, 5),
            points(305, 4000),
            Vec::new(),
            b"]}".to_vec(),
        ];
        // Every way of sending each part: as text, or compressed before.
        for mask in 0..1u32 << parts.len() {
            let mut gz = GzipWriter::new();
            for (i, part) in parts.iter().enumerate() {
                if mask & 1 << i == 0 {
                    gz.text(part);
                } else {
                    gz.deflated(&Deflated::of(part));
                }
            }
            let member = gz.finish();
            assert_eq!(gunzip(&member).unwrap(), parts.concat(), "mask {mask:b}");
        }
    }

    #[test]
    fn long_text_is_compressed_in_pieces() {
        let text = points(0, 30_000);
        assert!(text.len() > 3 * PIECE);
        let mut gz = GzipWriter::new();
        gz.text(&text);
        let member = gz.finish();
        assert!(
            member.len() < text.len() / 2,
            "{} of {}",
            member.len(),
            text.len()
        );
        assert_eq!(gunzip(&member).unwrap(), text);
        // Short runs stored, on either side of an empty piece.
        let short: Vec<u8> = vec![b'x'; COMPRESS_FROM - 1];
        let mut gz = GzipWriter::new();
        gz.text(&short);
        gz.deflated(&Deflated::of(b""));
        gz.text(&short);
        assert_eq!(
            gunzip(&gz.finish()).unwrap(),
            [short.clone(), short].concat()
        );
    }

    #[test]
    fn an_empty_member_is_valid() {
        assert_eq!(gunzip(&GzipWriter::new().finish()).unwrap(), b"");
    }

    #[test]
    fn a_wrong_checksum_is_caught() {
        // The trailer is what the decoder checks: the CRC combined from
        // the pieces must be the text's.
        let mut gz = GzipWriter::new();
        gz.deflated(&Deflated::of(&points(0, 100)));
        gz.text(b"tail");
        let mut member = gz.finish();
        let at = member.len() - 8;
        member[at] ^= 1;
        assert!(gunzip(&member).is_err());
    }
}
