//! H.264 bitstream plumbing for the smart cut: NAL units in Annex B and length-prefixed form,
//! parameter-set ids, and the `avcC` record that carries the parameter sets in MP4 and Matroska.

/// NAL unit types the smart cut looks at.
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

/// Largest SPS id H.264 allows (`seq_parameter_set_id` is 0..=31).
const MAX_SPS_ID: u32 = 31;

/// What is wrong with a bitstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    #[error("avcC record is malformed ({0})")]
    BadConfig(&'static str),
    #[error("length-prefixed NAL unit runs past the packet ({len} bytes announced, {left} left)")]
    Truncated { len: usize, left: usize },
    #[error("NAL unit of {0} bytes does not fit the stream's {1}-byte length prefix")]
    TooLong(usize, usize),
    #[error("no sequence parameter set")]
    NoSps,
    #[error("parameter set header unreadable")]
    BadParameterSet,
    #[error("all 32 SPS ids are taken by the recording")]
    NoFreeId,
}

/// Type of a NAL unit (low 5 bits of its header byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Splits Annex B data (NAL units after `00 00 01` or `00 00 00 01` start codes) into NAL units.
/// Bytes before the first start code are ignored; trailing zero bytes of a unit are dropped.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // index just past each start code
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(data.len(), |&next| next - 3);
        let mut nal = &data[start..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

/// Splits length-prefixed data (`size`-byte big-endian lengths, as in MP4/Matroska) into NAL units.
pub fn split_length_prefixed(data: &[u8], size: usize) -> Result<Vec<&[u8]>, H264Error> {
    let mut nals = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < size {
            return Err(H264Error::Truncated { len: size, left: rest.len() });
        }
        let len = rest[..size].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let body = &rest[size..];
        if body.len() < len {
            return Err(H264Error::Truncated { len, left: body.len() });
        }
        nals.push(&body[..len]);
        rest = &body[len..];
    }
    Ok(nals)
}

/// Joins NAL units with `size`-byte big-endian length prefixes.
pub fn join_length_prefixed<'a>(
    nals: impl IntoIterator<Item = &'a [u8]>,
    size: usize,
) -> Result<Vec<u8>, H264Error> {
    let mut out = Vec::new();
    for nal in nals {
        let len = nal.len();
        if size < 8 && len >> (8 * size) != 0 {
            return Err(H264Error::TooLong(len, size));
        }
        out.extend_from_slice(&len.to_be_bytes()[std::mem::size_of::<usize>() - size..]);
        out.extend_from_slice(nal);
    }
    Ok(out)
}

/// The SPS and PPS NAL units of a stream, each kept once, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl ParameterSets {
    /// Keeps `nal` if it is a parameter set not seen yet; says whether it was a parameter set.
    pub fn add(&mut self, nal: &[u8]) -> bool {
        let list = match nal_type(nal) {
            NAL_SPS => &mut self.sps,
            NAL_PPS => &mut self.pps,
            _ => return false,
        };
        if !list.iter().any(|known| known == nal) {
            list.push(nal.to_vec());
        }
        true
    }

    /// Adds every parameter set of `other` not seen yet.
    pub fn extend(&mut self, other: &ParameterSets) {
        for nal in other.sps.iter().chain(&other.pps) {
            self.add(nal);
        }
    }

    /// An id no SPS and no PPS of this stream uses (x264 numbers its PPS like its SPS).
    pub fn free_id(&self) -> Result<u32, H264Error> {
        let mut taken = Vec::new();
        for sps in &self.sps {
            taken.push(sps_id(sps)?);
        }
        for pps in &self.pps {
            taken.push(pps_ids(pps)?.0);
        }
        (0..=MAX_SPS_ID).find(|id| !taken.contains(id)).ok_or(H264Error::NoFreeId)
    }
}

/// The decoder configuration record (`avcC`) of ISO/IEC 14496-15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes of each NAL unit's length prefix in the samples (1, 2 or 4).
    pub length_size: usize,
    pub sets: ParameterSets,
    /// What follows the PPS list (the High-profile chroma and bit-depth fields), kept as is.
    pub trailer: Vec<u8>,
}

impl AvcConfig {
    /// Reads codec extradata: `Some` for an `avcC` record, `None` for Annex B or empty extradata
    /// (MPEG-TS), whose parameter sets `parse_annexb_sets` reads.
    pub fn parse(extradata: &[u8]) -> Result<Option<AvcConfig>, H264Error> {
        if extradata.first() != Some(&1) {
            return Ok(None);
        }
        let bad = H264Error::BadConfig;
        let length_size = usize::from(extradata.get(4).ok_or(bad("short header"))? & 0x03) + 1;
        if length_size == 3 {
            return Err(bad("3-byte lengths"));
        }
        let mut at = 5;
        let mut sets = ParameterSets::default();
        for mask in [0x1f, 0xff] {
            let count = extradata.get(at).ok_or(bad("missing count"))? & mask;
            at += 1;
            for _ in 0..count {
                let len_bytes = extradata.get(at..at + 2).ok_or(bad("missing length"))?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                let nal = extradata.get(at + 2..at + 2 + len).ok_or(bad("parameter set cut short"))?;
                sets.add(nal);
                at += 2 + len;
            }
        }
        Ok(Some(AvcConfig { length_size, sets, trailer: extradata[at..].to_vec() }))
    }

    /// Writes the record. Profile and level come from the first SPS.
    pub fn to_bytes(&self) -> Result<Vec<u8>, H264Error> {
        let first = self.sets.sps.first().ok_or(H264Error::NoSps)?;
        let header = first.get(1..4).ok_or(H264Error::BadParameterSet)?;
        let too_many = H264Error::BadConfig("too many parameter sets");
        let mut out = vec![1, header[0], header[1], header[2]];
        out.push(0xfc | u8::try_from(self.length_size - 1).map_err(|_| too_many.clone())?);
        let sps_count =
            u8::try_from(self.sets.sps.len()).ok().filter(|&n| n <= 0x1f).ok_or(too_many.clone())?;
        out.push(0xe0 | sps_count);
        let put = |out: &mut Vec<u8>, nal: &[u8]| -> Result<(), H264Error> {
            let len = u16::try_from(nal.len()).map_err(|_| H264Error::TooLong(nal.len(), 2))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(nal);
            Ok(())
        };
        for sps in &self.sets.sps {
            put(&mut out, sps)?;
        }
        out.push(u8::try_from(self.sets.pps.len()).map_err(|_| too_many)?);
        for pps in &self.sets.pps {
            put(&mut out, pps)?;
        }
        out.extend_from_slice(&self.trailer);
        Ok(out)
    }
}

/// The parameter sets in Annex B data (extradata of MPEG-TS streams, or a keyframe's packet).
pub fn parse_annexb_sets(data: &[u8]) -> ParameterSets {
    let mut sets = ParameterSets::default();
    for nal in split_annexb(data) {
        sets.add(nal);
    }
    sets
}

/// `seq_parameter_set_id` of an SPS NAL unit.
pub fn sps_id(nal: &[u8]) -> Result<u32, H264Error> {
    // header byte, profile_idc, constraint flags, level_idc, then ue(v) id.
    let rbsp = unescape(nal.get(4..).ok_or(H264Error::BadParameterSet)?);
    BitReader::new(&rbsp).ue().ok_or(H264Error::BadParameterSet)
}

/// `(pic_parameter_set_id, seq_parameter_set_id)` of a PPS NAL unit.
pub fn pps_ids(nal: &[u8]) -> Result<(u32, u32), H264Error> {
    let rbsp = unescape(nal.get(1..).ok_or(H264Error::BadParameterSet)?);
    let mut bits = BitReader::new(&rbsp);
    let pps = bits.ue().ok_or(H264Error::BadParameterSet)?;
    let sps = bits.ue().ok_or(H264Error::BadParameterSet)?;
    Ok((pps, sps))
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`) from the first bytes of a NAL payload
/// (ids sit within its first few bytes).
fn unescape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len().min(32));
    let mut zeros = 0;
    for &b in payload.iter().take(32) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader with unsigned Exp-Golomb decoding.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut value: u64 = 1;
        for _ in 0..zeros {
            value = (value << 1) | u64::from(self.bit()?);
        }
        u32::try_from(value - 1).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An x264 SPS (id 0, High, level 1.3) and PPS (id 0 → SPS 0), as in a 320×180 test file.
    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0x9f, 0x9e, 0x10];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    #[test]
    fn ids_are_read() {
        assert_eq!(sps_id(SPS).unwrap(), 0);
        assert_eq!(pps_ids(PPS).unwrap(), (0, 0));
        // ue(3) = 00100 → SPS id 3; PPS "1 010" → (0, 1)
        assert_eq!(sps_id(&[0x67, 0x64, 0x00, 0x0d, 0b0010_0000]).unwrap(), 3);
        assert_eq!(pps_ids(&[0x68, 0b1010_0000]).unwrap(), (0, 1));
        assert!(sps_id(&[0x67, 0x64]).is_err());
    }

    #[test]
    fn free_id_skips_taken_ones() {
        let mut sets = ParameterSets::default();
        assert!(sets.add(SPS));
        assert!(sets.add(PPS));
        assert!(!sets.add(&[0x65, 0x88]));
        assert!(sets.add(SPS)); // once only
        assert_eq!(sets.sps.len(), 1);
        assert_eq!(sets.free_id().unwrap(), 1);
    }

    #[test]
    fn avcc_round_trips() {
        let mut sets = ParameterSets::default();
        sets.add(SPS);
        sets.add(PPS);
        let config = AvcConfig { length_size: 4, sets, trailer: vec![0xfd, 0xf8, 0xf8, 0] };
        let bytes = config.to_bytes().unwrap();
        assert_eq!(&bytes[..6], &[1, 0x64, 0x00, 0x0d, 0xff, 0xe1]);
        assert_eq!(AvcConfig::parse(&bytes).unwrap(), Some(config));
        assert_eq!(AvcConfig::parse(&[0, 0, 0, 1, 0x67]).unwrap(), None);
        assert!(AvcConfig::parse(&[1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, 50, 0x67]).is_err());
    }

    #[test]
    fn annexb_splits_on_both_start_codes() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 0];
        assert_eq!(split_annexb(&data), vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 9][..]]);
        let sets = parse_annexb_sets(&data);
        assert_eq!((sets.sps.len(), sets.pps.len()), (1, 1));
    }

    #[test]
    fn too_long_for_the_prefix_is_refused() {
        let big = vec![0x65; 300];
        assert_eq!(join_length_prefixed([&big[..]], 1), Err(H264Error::TooLong(300, 1)));
        assert!(join_length_prefixed([&big[..]], 2).is_ok());
    }

    proptest! {
        #[test]
        fn length_prefixed_round_trips(
            nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
            size in prop::sample::select(vec![2usize, 4]),
        ) {
            let joined = join_length_prefixed(nals.iter().map(Vec::as_slice), size).unwrap();
            let split = split_length_prefixed(&joined, size).unwrap();
            prop_assert_eq!(split, nals.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }

        #[test]
        fn splitting_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = split_annexb(&data);
            let _ = split_length_prefixed(&data, 4);
            let _ = AvcConfig::parse(&data);
            let _ = sps_id(&data);
            let _ = pps_ids(&data);
        }
    }
}
