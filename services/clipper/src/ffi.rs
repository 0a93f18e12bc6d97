//! The libav fields `ffmpeg-next` has no safe accessor for: codec extradata (the `avcC` record the
//! smart cut rewrites) and the codec tag (MPEG-TS stream types the MP4 muxer refuses). The only
//! `unsafe` code in Dropline.
#![allow(unsafe_code)]

use std::ptr;

use ffmpeg::codec::Parameters;
use ffmpeg_next as ffmpeg;

/// libav's `AV_INPUT_BUFFER_PADDING_SIZE`: extradata buffers must have this many zeroed bytes
/// past their end (bitstream readers may over-read).
const PADDING: usize = 64;

/// `ENOMEM` on Linux.
const ENOMEM: i32 = 12;

/// A copy of the codec extradata of `parameters` (empty if there is none).
pub(crate) fn extradata(parameters: &Parameters) -> Vec<u8> {
    // SAFETY: `as_ptr` is the `AVCodecParameters` that `parameters` owns or keeps alive through its
    // owner for as long as the borrow lasts, and nothing else writes it meanwhile (`Parameters` is
    // not `Sync` and we hold `&`). libav keeps `extradata` either null or pointing at
    // `extradata_size` initialised bytes; we check null and the size before building the slice
    // and copy the bytes out before the borrow ends.
    unsafe {
        let raw = parameters.as_ptr();
        let data = (*raw).extradata;
        let size = usize::try_from((*raw).extradata_size).unwrap_or(0);
        if data.is_null() || size == 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(data, size).to_vec()
    }
}

/// Replaces the codec extradata of `parameters` with `bytes`.
///
/// Fails only if libav cannot allocate the buffer or `bytes` is larger than an `int`.
pub(crate) fn set_extradata(parameters: &mut Parameters, bytes: &[u8]) -> Result<(), ffmpeg::Error> {
    let size = i32::try_from(bytes.len()).map_err(|_| ffmpeg::Error::InvalidData)?;
    // SAFETY: `as_mut_ptr` is a live `AVCodecParameters` that only we use during the `&mut` borrow.
    // The new buffer comes from `av_mallocz` (the allocator libav frees extradata with) with
    // `PADDING` zeroed bytes after the copied data, as libav requires; `copy_nonoverlapping` writes
    // `bytes.len()` bytes into a fresh allocation at least that large. The old buffer (or null) is
    // released with `av_freep`, which also nulls the field, before the new one is stored with its
    // size, so the struct never points at freed memory or holds a wrong size.
    unsafe {
        let buffer = ffmpeg::ffi::av_mallocz(bytes.len() + PADDING).cast::<u8>();
        if buffer.is_null() {
            return Err(ffmpeg::Error::Other { errno: ENOMEM });
        }
        ptr::copy_nonoverlapping(bytes.as_ptr(), buffer, bytes.len());
        let raw = parameters.as_mut_ptr();
        ffmpeg::ffi::av_freep(ptr::addr_of_mut!((*raw).extradata).cast());
        (*raw).extradata = buffer;
        (*raw).extradata_size = size;
    }
    Ok(())
}

/// Clears the codec tag of `parameters`, so the muxer picks its own (`avc1`, `mp4a`, …) instead of
/// refusing the input container's (MPEG-TS stream types such as 27 for H.264).
pub(crate) fn clear_codec_tag(parameters: &mut Parameters) {
    // SAFETY: `as_mut_ptr` is a live `AVCodecParameters` that only we use during the `&mut` borrow;
    // `codec_tag` is a plain integer field.
    unsafe {
        (*parameters.as_mut_ptr()).codec_tag = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extradata_is_replaced_and_read_back() {
        let mut parameters = Parameters::new();
        assert!(extradata(&parameters).is_empty());
        set_extradata(&mut parameters, &[1, 2, 3]).unwrap();
        assert_eq!(extradata(&parameters), vec![1, 2, 3]);
        set_extradata(&mut parameters, &[9; 300]).unwrap();
        assert_eq!(extradata(&parameters), vec![9; 300]);
        // Copies carry it (avcodec_parameters_copy).
        assert_eq!(extradata(&parameters.clone()), vec![9; 300]);
    }
}
