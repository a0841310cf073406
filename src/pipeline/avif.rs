//! AVIF encode with libaom through libavif (the `libavif-sys` crate's static build of
//! libavif 1.0.4 and libaom 3.11): 10-bit 4:4:4 from our 8-bit sRGB pixels. libheif 1.15
//! (our decoder) aborts on 10-bit 4:4:4, and at equal SSIMULACRA2 the extra precision saves
//! ~3 % of the bytes (README "What works", `scripts/avif-sweep`).
//! Rate control is libaom's constant quality (`end-usage=q`, `cq-level`), as avifenc's
//! recommended form and libheif's encoder use it.
#![allow(unsafe_code)] // FFI into libavif; every call is wrapped here with its SAFETY note

use std::ffi::{CStr, CString};

use super::PipelineError;

use libavif_sys as ffi;

/// AV1 bit depth of the output: 10 bits take fewer bytes than 8 at the same score (the extra
/// precision keeps the encoder from spending bits on rounding noise) for ~1.4× the time.
const DEPTH: u32 = 10;

/// Owns a libavif object and frees it with its destroy function.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T)) -> Result<Self, PipelineError> {
        if ptr.is_null() {
            return Err(fail("out of memory"));
        }
        Ok(Owned { ptr, free })
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the matching libavif create call, is non-null and is freed
        // once, here.
        unsafe { (self.free)(self.ptr) }
    }
}

fn fail(what: &str) -> PipelineError {
    PipelineError::Encode(format!("failed to encode AVIF: {what}"))
}

fn check(result: ffi::avifResult) -> Result<(), PipelineError> {
    if result == ffi::AVIF_RESULT_OK {
        return Ok(());
    }
    // SAFETY: avifResultToString returns a static NUL-terminated string for any value.
    let msg = unsafe { CStr::from_ptr(ffi::avifResultToString(result)) };
    Err(fail(&msg.to_string_lossy()))
}

/// Encodes tightly packed 8-bit RGB or RGBA rows (`alpha`) of `w`×`h` pixels at libaom's
/// `cq_level` (0 best .. 63) and `speed` (libaom's cpu-used, 0..=9), one thread.
pub(crate) fn encode(
    pixels: &[u8],
    w: u32,
    h: u32,
    alpha: bool,
    cq_level: u8,
    speed: u8,
) -> Result<Vec<u8>, PipelineError> {
    let channels: u32 = if alpha { 4 } else { 3 };
    let row_bytes = w.checked_mul(channels).ok_or_else(|| fail("too wide"))?;
    if pixels.len() as u64 != u64::from(row_bytes) * u64::from(h) {
        return Err(fail("pixel buffer does not match its size"));
    }
    // SAFETY: plain constructor; the result is checked for null by `Owned::new`.
    let image = unsafe { ffi::avifImageCreate(w, h, DEPTH, ffi::AVIF_PIXEL_FORMAT_YUV444) };
    let image = Owned::new(image, ffi::avifImageDestroy)?;
    // SAFETY: `image.ptr` is a valid avifImage we own; the fields are plain integers.
    unsafe {
        let img = &mut *image.ptr;
        // The sRGB signal, as libheif writes it: BT.709 primaries, sRGB transfer, BT.601
        // matrix, full range.
        img.colorPrimaries = ffi::AVIF_COLOR_PRIMARIES_BT709 as _;
        img.transferCharacteristics = ffi::AVIF_TRANSFER_CHARACTERISTICS_SRGB as _;
        img.matrixCoefficients = ffi::AVIF_MATRIX_COEFFICIENTS_BT601 as _;
        img.yuvRange = ffi::AVIF_RANGE_FULL as _;
    }
    // SAFETY: all-zero is a valid avifRGBImage (integers and a null pointer); SetDefaults
    // then fills it from the image.
    let mut rgb: ffi::avifRGBImage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    unsafe { ffi::avifRGBImageSetDefaults(&mut rgb, image.ptr) };
    rgb.depth = 8;
    rgb.format = if alpha {
        ffi::AVIF_RGB_FORMAT_RGBA
    } else {
        ffi::AVIF_RGB_FORMAT_RGB
    } as _;
    // libavif only reads the RGB pixels when converting to YUV; the pointer is mutable in
    // its struct because the same struct serves decoding.
    rgb.pixels = pixels.as_ptr().cast_mut();
    rgb.rowBytes = row_bytes;
    // SAFETY: `rgb` describes `pixels` exactly (checked above) and outlives the call, which
    // allocates the image's YUV (and alpha) planes and converts into them.
    check(unsafe { ffi::avifImageRGBToYUV(image.ptr, &rgb) })?;

    // SAFETY: plain constructor; checked for null by `Owned::new`.
    let encoder = Owned::new(unsafe { ffi::avifEncoderCreate() }, ffi::avifEncoderDestroy)?;
    // SAFETY: `encoder.ptr` is a valid avifEncoder we own; the fields are plain integers.
    unsafe {
        let enc = &mut *encoder.ptr;
        enc.codecChoice = ffi::AVIF_CODEC_CHOICE_AOM as _;
        // One encode per core runs at a time (the image pool), so one thread each.
        enc.maxThreads = 1;
        enc.speed = i32::from(speed.min(9));
        // Constant quality within the whole quantizer range, for colour and alpha alike.
        enc.minQuantizer = 0;
        enc.maxQuantizer = 63;
        enc.minQuantizerAlpha = 0;
        enc.maxQuantizerAlpha = 63;
    }
    let cq = CString::new(cq_level.min(63).to_string()).map_err(|_| fail("cq-level"))?;
    for (key, value) in [(c"end-usage", c"q"), (c"cq-level", cq.as_c_str())] {
        // SAFETY: the encoder is valid and libavif copies both strings.
        check(unsafe {
            ffi::avifEncoderSetCodecSpecificOption(encoder.ptr, key.as_ptr(), value.as_ptr())
        })?;
    }
    let mut out = ffi::avifRWData {
        data: std::ptr::null_mut(),
        size: 0,
    };
    // SAFETY: encoder and image are valid; `out` starts empty as libavif requires.
    let result = unsafe { ffi::avifEncoderWrite(encoder.ptr, image.ptr, &mut out) };
    let bytes = if result == ffi::AVIF_RESULT_OK && !out.data.is_null() {
        // SAFETY: on success `out` holds `size` bytes libavif allocated.
        unsafe { std::slice::from_raw_parts(out.data, out.size) }.to_vec()
    } else {
        Vec::new()
    };
    // SAFETY: `out` was filled by libavif (or is still empty, which avifRWDataFree accepts).
    unsafe { ffi::avifRWDataFree(&mut out) };
    check(result)?;
    Ok(bytes)
}
