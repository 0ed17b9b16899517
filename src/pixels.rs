//! Images from files as model input (feature `images`): PNG or PNM, converted to
//! grayscale (a model of one channel) or RGB (three) and resized to the model's input,
//! with every size bounded before it is allocated.
//!
//! - The file is read through a cap ([`MAX_FILE`]); the decoder's allocations through
//!   another ([`MAX_DECODED`], and the memory budget).
//! - An image with no pixels is refused, not resized into a prediction.
//! - The resize (`image`'s triangle filter) keeps a float RGBA buffer of the source
//!   width times the target height between its two passes; a source more than 8 times
//!   the target's size in either direction is first narrowed to 8 times by an area
//!   average, so a 10,000,000 x 1 image costs kilobytes, not gigabytes.
//!
//! ```
//! use cnnkit::{Shape, pixels};
//! let pgm = [b"P5\n2 2\n255\n".as_slice(), &[0, 64, 128, 255]].concat();
//! let px = pixels::decode_gray("x.pgm".as_ref(), &pgm, Shape::Image { c: 1, h: 2, w: 2 }).unwrap();
//! assert_eq!(px, [0, 64, 128, 255]);
//! let empty = b"P5\n0 0\n255\n";
//! assert!(pixels::decode_gray("e.pgm".as_ref(), empty, Shape::Image { c: 1, h: 2, w: 2 }).is_err());
//! ```

use std::io::Cursor;
use std::path::Path;

use image::{ImageBuffer, ImageFormat, ImageReader, Limits, Pixel};

use crate::error::{Error, Result};
use crate::layers::Shape;

/// Largest image file read (64 MiB).
pub const MAX_FILE: u64 = 64 << 20;

/// Most bytes the decoder may allocate for one image (256 MiB, or the memory budget if
/// smaller).
pub const MAX_DECODED: u64 = 256 << 20;

/// Most bytes the resize's intermediate buffer may take (16 MiB).
const MAX_RESIZE: u64 = 16 << 20;

/// Reads the image at `path` as the model's input: grayscale, resized to the input
/// size, as `u8` pixels (normalised later, as in training).
///
/// # Errors
/// [`Error::Io`]; [`Error::Data`] naming the file for anything but a decodable PNG or
/// PGM with pixels, or one too large; [`Error::Invalid`] for a model that does not take
/// grayscale images.
pub fn load_gray(path: &Path, input: Shape) -> Result<Vec<u8>> {
    let bytes = crate::fsio::read_capped(path, MAX_FILE)?;
    decode_gray(path, &bytes, input)
}

/// As [`load_gray`] on the bytes of a file already in memory; `path` is for messages.
///
/// # Errors
/// As [`load_gray`].
pub fn decode_gray(path: &Path, bytes: &[u8], input: Shape) -> Result<Vec<u8>> {
    if !matches!(input, Shape::Image { c: 1, .. }) {
        return Err(Error::Invalid(format!(
            "the model takes {input} inputs, not grayscale images"
        )));
    }
    decode(path, bytes, input)
}

/// Reads the image at `path` as the model's input: grayscale for a model of one
/// channel, RGB for one of three (channel by channel, `[3, h, w]`, as an `idx4` data
/// set holds images), resized to the input size, as `u8` pixels.
///
/// # Errors
/// [`Error::Io`]; [`Error::Data`] naming the file for anything but a decodable PNG or
/// PNM with pixels, or one too large; [`Error::Invalid`] for a model whose input is not
/// an image of one or three channels.
pub fn load(path: &Path, input: Shape) -> Result<Vec<u8>> {
    let bytes = crate::fsio::read_capped(path, MAX_FILE)?;
    decode(path, &bytes, input)
}

/// As [`load`] on the bytes of a file already in memory; `path` is for messages.
///
/// ```
/// use cnnkit::{Shape, pixels};
/// // a 1 x 2 PPM: a red pixel and a blue one, as three planes
/// let ppm = [b"P6\n2 1\n255\n".as_slice(), &[255, 0, 0, 0, 0, 255]].concat();
/// let px = pixels::decode("x.ppm".as_ref(), &ppm, Shape::Image { c: 3, h: 1, w: 2 }).unwrap();
/// assert_eq!(px, [255, 0, 0, 0, 0, 255]);
/// ```
///
/// # Errors
/// As [`load`].
pub fn decode(path: &Path, bytes: &[u8], input: Shape) -> Result<Vec<u8>> {
    let (c, h, w) = match input {
        Shape::Image {
            c: c @ (1 | 3),
            h,
            w,
        } => (c, h, w),
        _ => {
            return Err(Error::Invalid(format!(
                "the model takes {input} inputs, not grayscale or RGB images"
            )));
        }
    };
    let bad = |msg: String| Error::data(path, msg);
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let mut r = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?;
        if !matches!(r.format(), Some(ImageFormat::Png | ImageFormat::Pnm)) {
            return Err(bad("not a PNG or PGM image".into()));
        }
        let mut limits = Limits::default();
        limits.max_alloc = Some(MAX_DECODED.min(crate::budget::get()));
        r.limits(limits);
        Ok(r)
    };
    let (iw, ih) = reader()?
        .into_dimensions()
        .map_err(|e| bad(format!("not a readable PNG or PGM image: {e}")))?;
    if iw == 0 || ih == 0 {
        return Err(bad(format!("the image is {iw}x{ih}: it has no pixels")));
    }
    let img = reader()?
        .decode()
        .map_err(|e| bad(format!("not a readable PNG or PGM image: {e}")))?;
    let (w, h) = (w as u32, h as u32);
    if c == 1 {
        return Ok(fit(img.into_luma8(), w, h));
    }
    // interleaved RGB to three planes
    let rgb = fit(img.into_rgb8(), w, h);
    let n = rgb.len() / 3;
    let mut planes = vec![0u8; rgb.len()];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            planes[ch * n + i] = v;
        }
    }
    Ok(planes)
}

/// `img` resized to `w x h`, its samples interleaved.
fn fit<P: Pixel<Subpixel = u8> + 'static>(img: ImageBuffer<P, Vec<u8>>, w: u32, h: u32) -> Vec<u8> {
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (w, h) {
        return img.into_raw();
    }
    // Narrow a source more than 8x larger than the target by an area average first
    // (each source pixel feeds one output pixel, and only the output is allocated):
    // the triangle filter then reads at most 8 source pixels per output pixel in each
    // direction and its float buffer (source width x target height x 16 bytes) stays
    // small. Where even that buffer would exceed MAX_RESIZE (a huge model input), the
    // area average does the whole resize.
    let (tw, th) = (iw.min(w.saturating_mul(8)), ih.min(h.saturating_mul(8)));
    if u64::from(tw) * u64::from(h) * 16 > MAX_RESIZE {
        return image::imageops::thumbnail(&img, w, h).into_raw();
    }
    let img = if (tw, th) != (iw, ih) {
        image::imageops::thumbnail(&img, tw, th)
    } else {
        img
    };
    image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle).into_raw()
}
