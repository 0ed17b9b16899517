//! Files: the one path by which cnnkit writes (an exclusive temporary file, fsync,
//! rename, fsync of the directory) and the checks by which it opens what it reads and
//! where it writes.
//!
//! - A temporary file is created with `O_CREAT | O_EXCL` under an unpredictable name
//!   (`.NAME.PID.RANDOM.cnnkit-tmp`, by the `tempfile` crate) in the destination's
//!   directory, so a symlink planted there is never followed; it takes the mode of the
//!   file it replaces. Temporary files of ours that a dead process left behind (its PID
//!   no longer runs, the file is ours and regular) are removed by the next write.
//! - A crash at any point leaves the old file or the new one, never a mix.
//! - [`fault`] injects a failure or a crash at any write, fsync, rename or remove, for the
//!   tests that prove the guarantees (`tests/hostile.rs`).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Injected faults, per thread, for tests: operation number `at` (counted from
/// [`fault::arm`]) fails, as a full disk would, or crashes, after which nothing more of
/// the process happens (no cleanup either).
#[doc(hidden)]
pub mod fault {
    use std::cell::Cell;
    use std::io;

    /// What happens at the armed operation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// It fails with ENOSPC; the process carries on (and cleans up).
        Fail,
        /// The process dies there: this and every later operation does nothing.
        Crash,
    }

    #[derive(Clone, Copy)]
    struct State {
        count: u64,
        armed: Option<(u64, Mode)>,
        crashed: bool,
    }

    thread_local! {
        static STATE: Cell<State> = const {
            Cell::new(State { count: 0, armed: None, crashed: false })
        };
    }

    /// Arms operation `at` (0-based, counted from now) with `mode`.
    pub fn arm(at: u64, mode: Mode) {
        STATE.with(|s| {
            s.set(State {
                count: 0,
                armed: Some((at, mode)),
                crashed: false,
            })
        });
    }

    /// Counts operations from now without failing any.
    pub fn count() {
        STATE.with(|s| {
            s.set(State {
                count: 0,
                armed: None,
                crashed: false,
            })
        });
    }

    /// Disarms; returns the operations counted since [`arm`] or [`count`].
    pub fn disarm() -> u64 {
        STATE.with(|s| {
            let st = s.get();
            s.set(State {
                count: 0,
                armed: None,
                crashed: false,
            });
            st.count
        })
    }

    /// Whether an injected crash has happened (and not been disarmed).
    pub fn crashed() -> bool {
        STATE.with(|s| s.get().crashed)
    }

    /// One operation: the error to return instead of doing it, if any.
    pub(crate) fn point(_op: &str) -> io::Result<()> {
        STATE.with(|s| {
            let mut st = s.get();
            if st.crashed {
                return Err(io::Error::other("crashed (injected)"));
            }
            let n = st.count;
            st.count += 1;
            let r = match st.armed {
                Some((at, Mode::Fail)) if at == n => Err(io::Error::from_raw_os_error(28)),
                Some((at, Mode::Crash)) if at == n => {
                    st.crashed = true;
                    Err(io::Error::other("crashed (injected)"))
                }
                _ => Ok(()),
            };
            s.set(st);
            r
        })
    }
}

/// The directory `path` is in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> Result<String> {
    let text = path.as_os_str().to_string_lossy();
    if text.ends_with('/') || text.ends_with("/.") {
        return Err(Error::invalid(format!(
            "{}: names a directory (it ends in `/`), not a file",
            path.display()
        )));
    }
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(format!("{}: not a file name", path.display())))
}

/// Writes `bytes` to `path` atomically: an exclusive temporary file in the same
/// directory, written, synced, renamed over `path`, and the directory synced. A crash
/// leaves the old file or the new one; an error leaves the old one and no temporary file.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = file_name(path)?;
    let io_err = |e: io::Error| Error::io(path, e);
    fault::point("create").map_err(io_err)?;
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{name}.{}.", std::process::id());
    builder.prefix(&prefix).suffix(".cnnkit-tmp").rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // the mode of the file replaced, else what `File::create` gives (umask applies)
        let mode = fs::metadata(path)
            .ok()
            .filter(fs::Metadata::is_file)
            .map_or(0o666, |m| m.permissions().mode() & 0o777);
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(|e| {
        Error::io(
            path,
            io::Error::new(
                e.kind(),
                format!("cannot create a file in {}: {e}", dir.display()),
            ),
        )
    })?;
    remove_stale(&dir, &name, tmp.path());
    let written = (|| -> io::Result<()> {
        fault::point("write")?;
        tmp.as_file_mut().write_all(bytes)?;
        fault::point("fsync")?;
        tmp.as_file().sync_all()?;
        Ok(())
    })();
    if let Err(e) = written {
        if fault::crashed() {
            // a crash leaves the temporary file where it is
            let _ = tmp.keep();
        }
        return Err(io_err(e));
    }
    if let Err(e) = fault::point("rename") {
        if fault::crashed() {
            let _ = tmp.keep();
        }
        return Err(io_err(e));
    }
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    sync_dir(&dir).map_err(io_err)
}

/// Renames `from` over `to` and syncs the directory.
///
/// # Errors
/// [`Error::Io`] naming `to`.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fault::point("rename").map_err(|e| Error::io(to, e))?;
    fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_dir(&parent_dir(to)).map_err(|e| Error::io(to, e))
}

/// Removes `path` if it is there.
///
/// # Errors
/// [`Error::Io`] naming it, for anything but its absence.
pub fn remove(path: &Path) -> Result<()> {
    fault::point("remove").map_err(|e| Error::io(path, e))?;
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Makes a rename in `dir` durable (where the platform opens directories).
fn sync_dir(dir: &Path) -> io::Result<()> {
    fault::point("fsync-dir")?;
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        d.sync_all()?;
    }
    Ok(())
}

/// Removes the temporary files for `name` in `dir` that a dead process of this user left
/// behind: `.NAME.PID.RANDOM.cnnkit-tmp` (and the `.NAME.tmpPID` of cnnkit 0.1) whose
/// PID no longer runs, that are regular files (not links) owned by the owner of `ours`.
/// Best effort: only where `/proc` tells which processes run.
fn remove_stale(dir: &Path, name: &str, ours: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(me) = fs::metadata(ours).map(|m| m.uid()) else {
            return;
        };
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let head = format!(".{name}.");
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&head)) else {
                continue;
            };
            let pid = if let Some(r) = rest.strip_suffix(".cnnkit-tmp") {
                r.split('.').next()
            } else {
                rest.strip_prefix("tmp")
            };
            let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let p = entry.path();
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_file() && m.uid() == me => {
                    if fault::point("remove").is_err() {
                        return;
                    }
                    let _ = fs::remove_file(&p);
                }
                _ => {}
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (dir, name, ours);
}

/// What kind of thing is at `path`, for messages: "a directory", "a device"...
fn kind_of(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_file() { "a file" } else { "not a file" }
}

/// Checks that `path` names a regular file (following links) and returns its length.
///
/// # Errors
/// [`Error::Io`] when it is missing or unreadable; [`Error::Data`] saying what it is
/// when it is a directory, a device, a pipe or a socket.
pub fn regular_file(path: &Path) -> Result<u64> {
    let m = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !m.is_file() {
        return Err(Error::data(
            path,
            format!("is {}, not a regular file", kind_of(&m)),
        ));
    }
    Ok(m.len())
}

/// Reads `path` whole, at most `cap` bytes: a regular file larger than that is refused
/// before reading, and anything else (a pipe, a device such as `/dev/zero`) is read up
/// to the cap and refused past it. A directory is refused as one.
///
/// # Errors
/// [`Error::Io`]; [`Error::Data`] for a directory or more than `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let f = open_readable(path)?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > cap {
        return Err(too_large(path, cap));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len as usize)
        .map_err(|_| Error::data(path, "out of memory"))?;
    f.take(cap + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::io(path, e))?;
    if v.len() as u64 > cap {
        return Err(too_large(path, cap));
    }
    Ok(v)
}

/// Opens `path` for reading, refusing a directory with a message that says so.
///
/// # Errors
/// [`Error::Io`]; [`Error::Data`] for a directory.
pub fn open_readable(path: &Path) -> Result<File> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
    if m.is_dir() {
        return Err(Error::data(path, "is a directory, not a file"));
    }
    Ok(f)
}

fn too_large(path: &Path, cap: u64) -> Error {
    Error::data(
        path,
        format!(
            "more than {}: larger than cnnkit reads (or not a regular file)",
            crate::budget::human(cap)
        ),
    )
}

/// Checks, before any work, that `path` can be written with [`write_atomic`]: it names a
/// file (no trailing `/`) in a directory that exists and takes new files, and is either
/// absent or a regular file that `is_ours` recognises from its first bytes (at most
/// 64 KiB are read) — unless `overwrite`. `flag` names the option in messages.
///
/// # Errors
/// [`Error::Invalid`] naming `flag` and the path as given, and what is wrong.
pub fn check_destination(
    path: &Path,
    flag: &str,
    what: &str,
    overwrite: bool,
    is_ours: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    let shown = path.display();
    let bad = |msg: String| Error::invalid(format!("{flag} {shown}: {msg}"));
    file_name(path).map_err(|_| bad("names a directory, not a file".into()))?;
    let dir = parent_dir(path);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad(format!("{} is not a directory", dir.display()))),
        Err(_) => {
            return Err(bad(format!(
                "the directory {} does not exist",
                dir.display()
            )));
        }
    }
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(bad(format!(
                "is {}; cnnkit only replaces regular files",
                kind_of(&m)
            )));
        }
        Ok(_) if !overwrite => {
            let mut head = Vec::new();
            File::open(path)
                .and_then(|f| f.take(64 << 10).read_to_end(&mut head))
                .map_err(|e| bad(e.to_string()))?;
            if !is_ours(&head) {
                return Err(bad(format!(
                    "exists and is not {what}; refusing to replace it \
                     (pass --overwrite to replace it anyway)"
                )));
            }
        }
        _ => {}
    }
    // can a file be created there? (a read-only directory, /proc, a full quota...)
    tempfile::Builder::new()
        .prefix(".cnnkit-probe.")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| bad(format!("cannot create files in {}: {e}", dir.display())))
}
