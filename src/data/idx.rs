//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (two zero bytes, a type
//! code, the number of dimensions, each dimension as `u32`), then the data. Plain or
//! gzipped (recognised by its magic bytes, not by the file name).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// Largest data section accepted (1 GiB): anything larger is taken for a corrupt header.
pub const MAX_BYTES: usize = 1 << 30;

/// An unsigned-byte IDX array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<u8>,
}

/// Reads an unsigned-byte IDX file (type code `0x08`) of `ndims` dimensions.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Data`] for a wrong magic number,
/// another element type or dimension count, a zero or absurd dimension, truncated data,
/// bytes after the data, or a corrupt gzip stream.
pub fn read_idx(path: &Path, ndims: usize) -> Result<IdxArray> {
    read_idx_of(path, &[ndims])
}

/// As [`read_idx`], for an array of any of the dimension counts `ndims` (images: 3 for
/// `[n, rows, cols]`, 4 for `[n, channels, rows, cols]`).
///
/// # Errors
/// As [`read_idx`].
pub fn read_idx_of(path: &Path, ndims: &[usize]) -> Result<IdxArray> {
    let len = crate::fsio::regular_file(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    read_stream(
        path,
        BufReader::with_capacity(1 << 16, file),
        ndims,
        Some(len),
    )
}

/// As [`read_idx`] on the bytes of a file already in memory; `name` is for messages.
///
/// # Errors
/// As [`read_idx`].
pub fn parse_idx(name: &Path, bytes: &[u8], ndims: usize) -> Result<IdxArray> {
    read_stream(name, bytes, &[ndims], Some(bytes.len() as u64))
}

/// `len`: the length of the (plain) stream when known, to check the header against it
/// before allocating.
fn read_stream(
    path: &Path,
    mut raw: impl Read,
    ndims: &[usize],
    len: Option<u64>,
) -> Result<IdxArray> {
    let mut magic = [0u8; 2];
    let n = read_full(&mut raw, &mut magic).map_err(|e| Error::io(path, e))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        #[cfg(feature = "gzip")]
        {
            let chained = std::io::Cursor::new(magic).chain(raw);
            return read_body(
                path,
                flate2::read::MultiGzDecoder::new(chained),
                ndims,
                None,
            );
        }
        #[cfg(not(feature = "gzip"))]
        return Err(Error::data(
            path,
            "gzip-compressed, and cnnkit was built without the `gzip` feature",
        ));
    }
    read_body(
        path,
        std::io::Cursor::new(magic[..n].to_vec()).chain(raw),
        ndims,
        len,
    )
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_err(path: &Path, e: std::io::Error, gz: bool) -> Error {
    if gz && e.raw_os_error().is_none() {
        Error::data(path, format!("corrupt or truncated gzip stream: {e}"))
    } else {
        Error::io(path, e)
    }
}

/// `len`: the plain stream's length when known (`None` for a gzip stream, whose
/// length shows only as it is read).
fn read_body(path: &Path, mut r: impl Read, ndims: &[usize], len: Option<u64>) -> Result<IdxArray> {
    let gz = len.is_none();
    let mut head = [0u8; 4];
    let n = read_full(&mut r, &mut head).map_err(|e| read_err(path, e, gz))?;
    if n < 4 {
        return Err(Error::data(
            path,
            format!("truncated: {n} bytes, no IDX header"),
        ));
    }
    if head[0] != 0 || head[1] != 0 {
        return Err(Error::data(
            path,
            format!(
                "wrong magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file",
                head[0], head[1], head[2], head[3]
            ),
        ));
    }
    if head[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "element type 0x{:02x}; only unsigned bytes (0x08) are supported",
                head[2]
            ),
        ));
    }
    if !ndims.contains(&usize::from(head[3])) {
        let want: Vec<String> = ndims.iter().map(usize::to_string).collect();
        return Err(Error::data(
            path,
            format!("{} dimensions, expected {}", head[3], want.join(" or ")),
        ));
    }
    let ndims = usize::from(head[3]);
    let mut dims = Vec::with_capacity(ndims);
    let mut total = 1usize;
    for i in 0..ndims {
        let mut d = [0u8; 4];
        if read_full(&mut r, &mut d).map_err(|e| read_err(path, e, gz))? < 4 {
            return Err(Error::data(path, "truncated in the header"));
        }
        let d = u32::from_be_bytes(d) as usize;
        if d == 0 {
            return Err(Error::data(path, format!("dimension {i} is 0")));
        }
        total = total.saturating_mul(d);
        dims.push(d);
    }
    if total > MAX_BYTES {
        return Err(Error::data(
            path,
            format!("dimensions {dims:?} describe more than 1 GiB of data: corrupt header?"),
        ));
    }
    crate::budget::check(&format!("{}", path.display()), total as u64)?;
    let header = 4 + 4 * ndims as u64;
    if let Some(len) = len
        && len != header + total as u64
    {
        let found = len.saturating_sub(header);
        return Err(Error::data(
            path,
            if found < total as u64 {
                format!("truncated: dimensions {dims:?} need {total} bytes of data, found {found}")
            } else {
                format!("more data than dimensions {dims:?} describe ({total} bytes)")
            },
        ));
    }
    // a plain file holds what it says (checked above); a gzip stream's claim is believed
    // only as far as it delivers: the buffer grows as the data comes
    let mut data = Vec::new();
    data.try_reserve_exact(if gz { total.min(64 << 20) } else { total })
        .map_err(|_| Error::data(path, "out of memory"))?;
    r.take(total as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_err(path, e, gz))?;
    if data.len() < total {
        return Err(Error::data(
            path,
            format!(
                "truncated: dimensions {dims:?} need {total} bytes of data, found {}",
                data.len()
            ),
        ));
    }
    if data.len() > total {
        return Err(Error::data(
            path,
            format!("more data than dimensions {dims:?} describe ({total} bytes)"),
        ));
    }
    Ok(IdxArray { dims, data })
}
