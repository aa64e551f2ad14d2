//! Protocol Buffers' wire format read straight from a byte slice, for
//! decoders that borrow strings from the message instead of allocating
//! them (see [`crate::remote_write::decode_view`]).
//!
//! It accepts and refuses exactly what prost's generated decoders do (the
//! remote-write property tests compare the two on arbitrary and corrupted
//! bodies): keys above `u32::MAX`, field number 0 and wire types 6 and 7
//! are errors; a varint is at most 10 bytes and its 10th byte at most 1; a
//! known field with the wrong wire type is an error; unknown fields are
//! skipped, groups included, nested at most [`RECURSION_LIMIT`] deep
//! counting the messages around them; strings must be UTF-8; repeated
//! scalars may come packed or not.

use std::fmt;

/// Nesting allowed below the top-level message, as in prost.
pub const RECURSION_LIMIT: u32 = 100;

/// A malformed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError(&'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// How a field's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// A varint.
    Varint,
    /// 8 bytes, little-endian.
    Fixed64,
    /// A varint length, then that many bytes.
    Len,
    /// The start of a (deprecated) group.
    StartGroup,
    /// The end of a group.
    EndGroup,
    /// 4 bytes, little-endian.
    Fixed32,
}

impl WireType {
    fn from_key(key: u64) -> Result<Self, WireError> {
        Ok(match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return Err(WireError("invalid wire type")),
        })
    }
}

/// How many more levels of nesting are allowed (prost's `DecodeContext`).
#[derive(Debug, Clone, Copy)]
pub struct Depth(u32);

impl Depth {
    /// The depth of a top-level message's fields.
    pub const TOP: Depth = Depth(RECURSION_LIMIT);

    fn check(self) -> Result<(), WireError> {
        if self.0 == 0 {
            return Err(WireError("recursion limit reached"));
        }
        Ok(())
    }

    fn inner(self) -> Depth {
        Depth(self.0 - 1)
    }
}

/// A cursor over an encoded message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` as one message.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether every field has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        if len > self.buf.len() as u64 {
            return Err(WireError("buffer underflow"));
        }
        let (head, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        Ok(head)
    }

    /// A varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // The 10th byte holds bit 63 only.
                if i == 9 && byte > 1 {
                    break;
                }
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError("invalid varint"))
    }

    /// The next field's number and wire type.
    pub fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError("invalid key value"));
        }
        let wire_type = WireType::from_key(key)?;
        let tag = (key >> 3) as u32;
        if tag == 0 {
            return Err(WireError("invalid tag value: 0"));
        }
        Ok((tag, wire_type))
    }

    fn expect(wire_type: WireType, expected: WireType) -> Result<(), WireError> {
        if wire_type != expected {
            return Err(WireError("invalid wire type for a known field"));
        }
        Ok(())
    }

    /// A `double` field's value.
    pub fn double(&mut self, wire_type: WireType) -> Result<f64, WireError> {
        Self::expect(wire_type, WireType::Fixed64)?;
        let bytes = self.take(8)?;
        Ok(f64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// An `int64` field's value.
    pub fn int64(&mut self, wire_type: WireType) -> Result<i64, WireError> {
        Self::expect(wire_type, WireType::Varint)?;
        Ok(self.varint()? as i64)
    }

    /// An `int32` (or enum) field's value: the varint truncated, as prost does.
    pub fn int32(&mut self, wire_type: WireType) -> Result<i32, WireError> {
        Self::expect(wire_type, WireType::Varint)?;
        Ok(self.varint()? as i32)
    }

    /// A `uint32` field's value: the varint truncated, as prost does.
    pub fn uint32(&mut self, wire_type: WireType) -> Result<u32, WireError> {
        Self::expect(wire_type, WireType::Varint)?;
        Ok(self.varint()? as u32)
    }

    /// A `bytes` field's value.
    pub fn bytes(&mut self, wire_type: WireType) -> Result<&'a [u8], WireError> {
        Self::expect(wire_type, WireType::Len)?;
        let len = self.varint()?;
        self.take(len)
    }

    /// A `string` field's value.
    pub fn str(&mut self, wire_type: WireType) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes(wire_type)?)
            .map_err(|_| WireError("invalid string value: data is not UTF-8 encoded"))
    }

    /// An embedded message: a reader over its bytes and the depth of its
    /// fields.
    pub fn message(
        &mut self,
        wire_type: WireType,
        depth: Depth,
    ) -> Result<(Reader<'a>, Depth), WireError> {
        Self::expect(wire_type, WireType::Len)?;
        depth.check()?;
        let len = self.varint()?;
        Ok((Reader::new(self.take(len)?), depth.inner()))
    }

    /// A repeated `uint32` field's value(s), packed or not.
    pub fn uint32s(&mut self, wire_type: WireType, out: &mut Vec<u32>) -> Result<(), WireError> {
        if wire_type == WireType::Len {
            let len = self.varint()?;
            let mut packed = Reader::new(self.take(len)?);
            while !packed.is_empty() {
                out.push(packed.varint()? as u32);
            }
            Ok(())
        } else {
            out.push(self.uint32(wire_type)?);
            Ok(())
        }
    }

    /// Skips an unknown field's value.
    pub fn skip(&mut self, wire_type: WireType, tag: u32, depth: Depth) -> Result<(), WireError> {
        depth.check()?;
        match wire_type {
            WireType::Varint => {
                self.varint()?;
            }
            WireType::Fixed64 => {
                self.take(8)?;
            }
            WireType::Fixed32 => {
                self.take(4)?;
            }
            WireType::Len => {
                let len = self.varint()?;
                self.take(len)?;
            }
            WireType::StartGroup => loop {
                let (inner_tag, inner_type) = self.key()?;
                if inner_type == WireType::EndGroup {
                    if inner_tag != tag {
                        return Err(WireError("unexpected end group tag"));
                    }
                    break;
                }
                self.skip(inner_type, inner_tag, depth.inner())?;
            },
            WireType::EndGroup => return Err(WireError("unexpected end group tag")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &[u8]) -> Result<u64, WireError> {
        Reader::new(bytes).varint()
    }

    #[test]
    fn varints_follow_the_ten_byte_rule() {
        assert_eq!(varint(&[0x00]), Ok(0));
        assert_eq!(varint(&[0x96, 0x01]), Ok(150));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&max), Ok(u64::MAX));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(varint(&overflow).is_err());
        assert!(varint(&[0x80; 11]).is_err());
        assert!(varint(&[0x80]).is_err());
        assert!(varint(&[]).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Reader::new(&[0x00]).key().is_err(), "field 0");
        assert!(Reader::new(&[0x0e]).key().is_err(), "wire type 6");
        assert!(Reader::new(&[0x0f]).key().is_err(), "wire type 7");
        assert_eq!(Reader::new(&[0x0a]).key(), Ok((1, WireType::Len)));
        let too_big = [0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(Reader::new(&too_big).key().is_err());
    }

    #[test]
    fn groups_are_skipped_when_matched_and_refused_otherwise() {
        // field 2 start group, field 1 varint 5, field 2 end group.
        let mut ok = Reader::new(&[0x08, 0x05, 0x14]);
        assert_eq!(ok.skip(WireType::StartGroup, 2, Depth::TOP), Ok(()));
        assert!(ok.is_empty());
        let mut wrong_end = Reader::new(&[0x1c]);
        assert!(wrong_end.skip(WireType::StartGroup, 2, Depth::TOP).is_err());
        assert!(
            Reader::new(&[])
                .skip(WireType::EndGroup, 2, Depth::TOP)
                .is_err()
        );
    }

    #[test]
    fn nesting_is_limited() {
        let mut body = vec![0x0b; 120]; // field 1 start group, over and over
        body.extend(std::iter::repeat_n(0x0c, 120));
        assert!(
            Reader::new(&body[1..])
                .skip(WireType::StartGroup, 1, Depth::TOP)
                .is_err()
        );
        let mut shallow = vec![0x0b; 10];
        shallow.extend(std::iter::repeat_n(0x0c, 10));
        let mut reader = Reader::new(&shallow[1..]);
        assert_eq!(reader.skip(WireType::StartGroup, 1, Depth::TOP), Ok(()));
        assert!(reader.is_empty());
    }

    #[test]
    fn known_fields_must_have_their_wire_type() {
        assert!(Reader::new(&[1; 8]).double(WireType::Varint).is_err());
        assert!(Reader::new(&[1]).int64(WireType::Len).is_err());
        assert!(Reader::new(&[1, b'a']).str(WireType::Fixed64).is_err());
        assert!(
            Reader::new(&[1, 0xff]).str(WireType::Len).is_err(),
            "not UTF-8"
        );
        assert_eq!(Reader::new(&[1, b'a']).str(WireType::Len), Ok("a"));
    }

    #[test]
    fn repeated_uint32_comes_packed_or_not() {
        let mut out = Vec::new();
        Reader::new(&[3, 1, 0x96, 0x01])
            .uint32s(WireType::Len, &mut out)
            .unwrap();
        Reader::new(&[7])
            .uint32s(WireType::Varint, &mut out)
            .unwrap();
        assert_eq!(out, [1, 150, 7]);
        assert!(
            Reader::new(&[2, 1, 0x80])
                .uint32s(WireType::Len, &mut out)
                .is_err(),
            "a varint cut by the packed length"
        );
    }
}
