//! Reading small files (`/proc`, PSI, cgroup files) without allocating, without ever blocking
//! on the file's kind, and without keeping a descriptor (issue #10).

use core::ffi::c_int;
use core::fmt;

use super::{errno, Errno};

/// Why a small file could not be read (see [`read_regular_file`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileError {
    /// `open(2)` failed with this errno (missing, permission, `EMFILE`, ...).
    Open(Errno),
    /// Not a regular file; the `S_IFMT` bits of its mode. procfs, cgroupfs and ordinary files
    /// are regular; a FIFO, socket, device or directory is not, and reading one may block forever
    /// or never end.
    NotRegular(u32),
    /// `pread(2)` failed with this errno (`EOPNOTSUPP` from a cgroup's `memory.pressure` when PSI
    /// is disabled for it, `EIO`, ...).
    Read(Errno),
}

/// [`read_regular_file`] for callers that only need the bytes (`/proc/self/...` files).
pub(crate) fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    read_regular_file(path, buf)
        .map(|(n, _)| n)
        .map_err(FileError::errno)
}

impl FileError {
    /// The error as one errno, for callers that only need the bytes (`EINVAL` for a file that
    /// is not regular).
    fn errno(self) -> Errno {
        match self {
            FileError::Open(e) | FileError::Read(e) => e,
            FileError::NotRegular(_) => Errno(libc::EINVAL),
        }
    }
}

/// A file's identity, to notice that a path now names another file (replaced by a rename).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// Reads a small regular file into `buf` without allocating and without ever blocking on the
/// file's kind: returns the bytes read and the file's identity.
///
/// The file is opened with `O_NONBLOCK` (so a FIFO without a writer cannot hang the open, see
/// fifo(7)), checked to be a regular file with `fstat` before any read, and closed before
/// returning: nothing keeps a descriptor, so a program that closes descriptors it did not open
/// (`close_range(3, ~0)`, daemons, sandboxes) can never have pagewise close or read its files
/// later (issue #10). A file that was replaced or deleted is seen at the next read.
pub(crate) fn read_regular_file(
    path: &core::ffi::CStr,
    buf: &mut [u8],
) -> Result<(usize, FileId), FileError> {
    let file = RegularFile::open(path)?;
    let n = pread_all(file.fd, buf).map_err(FileError::Read)?;
    Ok((n, file.id))
}

/// Counts the lines of a file (`/proc/self/maps`: one per mapping) with a stack buffer, never
/// allocating. Reads all of it: about 10 ms per 65,000 lines.
pub(crate) fn count_lines(path: &core::ffi::CStr) -> Result<usize, Errno> {
    let mut file = RegularFile::open(path).map_err(FileError::errno)?;
    let mut buf = [0u8; 4096];
    let mut lines = 0;
    loop {
        match file.read(&mut buf).map_err(FileError::errno)? {
            0 => return Ok(lines),
            n => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
        }
    }
}

/// One mapping (VMA) of this process, as `/proc/self/maps` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Named `[anon:pagewise]` (`os::name`; kernels with `CONFIG_ANON_VMA_NAME`).
    pub(crate) pagewise: bool,
}

/// The mapping that contains `addr`, from `/proc/self/maps` (one line per VMA, sorted by address,
/// `start-end` in hex first and the name last; proc(5)), read with a stack buffer; `None` if no
/// mapping contains it. Used only after a failed page move, to tell whether the block's untouched
/// pages are still there (`Engine::mend_hole`).
pub(crate) fn mapping_around(addr: usize) -> Result<Option<Mapping>, Errno> {
    let mut file = RegularFile::open(c"/proc/self/maps").map_err(FileError::errno)?;
    let mut buf = [0u8; 4096];
    let mut line = MapsLine::default();
    loop {
        let n = file.read(&mut buf).map_err(FileError::errno)?;
        if n == 0 {
            return Ok(None);
        }
        for &b in &buf[..n] {
            let Some(m) = line.feed(b) else {
                continue;
            };
            if m.start > addr {
                return Ok(None); // sorted: no later line contains it
            }
            if addr < m.end {
                return Ok(Some(m));
            }
        }
    }
}

/// The name `os::name` gives pagewise's mappings, as `/proc/self/maps` shows it.
const PAGEWISE_NAME: &[u8] = b"[anon:pagewise]";

/// One `/proc/self/maps` line, parsed a byte at a time (lines may cross buffer boundaries; a
/// path may make a line longer than the buffer).
#[derive(Default)]
struct MapsLine {
    start: usize,
    end: usize,
    /// 0: in `start`, 1: in `end`, 2: past the range, until the newline.
    field: u8,
    /// How many bytes of [`PAGEWISE_NAME`] the line's last bytes match.
    matched: usize,
    named: bool,
}

impl MapsLine {
    /// Takes the next byte; at a newline, returns the line's mapping and starts the next line.
    fn feed(&mut self, b: u8) -> Option<Mapping> {
        if b == b'\n' {
            let m = Mapping {
                start: self.start,
                end: self.end,
                pagewise: self.named,
            };
            *self = MapsLine::default();
            return Some(m);
        }
        let digit = (b as char).to_digit(16).map(|d| d as usize);
        match (self.field, digit) {
            (0, Some(d)) => self.start = self.start.wrapping_mul(16) | d,
            (0, None) => self.field = 1, // the '-'
            (1, Some(d)) => self.end = self.end.wrapping_mul(16) | d,
            (1, None) => self.field = 2,
            _ => {
                // The name is the line's last field and starts with '[', which occurs once in it.
                self.matched = match b {
                    b'[' => 1,
                    _ if self.matched > 0 && PAGEWISE_NAME.get(self.matched) == Some(&b) => {
                        self.matched + 1
                    }
                    _ => 0,
                };
                self.named |= self.matched == PAGEWISE_NAME.len();
            }
        }
        None
    }
}

/// `pread` from offset 0 until `buf` is full or the file ends.
pub(crate) fn pread_all(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: the destination is the unfilled tail of buf.
        let r = unsafe {
            libc::pread(
                fd,
                buf[n..].as_mut_ptr().cast(),
                buf.len() - n,
                n as libc::off_t,
            )
        };
        if r < 0 {
            let e = errno();
            if e == Errno(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            break;
        }
        n += r as usize;
    }
    Ok(n)
}

// ---- The one way a file is opened here (whole-file reads above, sequential reads below). ----

/// A regular file opened for one pass from start to end, with the guarantees of
/// [`read_regular_file`] (an `O_NONBLOCK` open, an `fstat` check that it is a regular file before
/// any read), for files that may not fit in one stack buffer: `/proc/self/mountinfo` runs to
/// several KiB on a container host. The descriptor lives only as long as the value (one call of
/// the caller) and is closed on drop, so nothing is kept between calls (issue #10).
#[derive(Debug)]
pub(crate) struct RegularFile {
    fd: c_int,
    /// What `fstat` said the file is, to notice a replacement between two reads.
    id: FileId,
}

impl RegularFile {
    /// Opens `path` and checks that it is a regular file.
    pub(crate) fn open(path: &core::ffi::CStr) -> Result<RegularFile, FileError> {
        // SAFETY: path is NUL-terminated; O_CLOEXEC keeps the fd out of exec'd children; O_NOCTTY
        // keeps a terminal from becoming our controlling one; O_NONBLOCK keeps a FIFO without a
        // writer from hanging the open (fifo(7)).
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            return Err(FileError::Open(errno()));
        }
        // Owned from here: dropped (closed) on every return below.
        let mut file = RegularFile {
            fd,
            id: FileId { dev: 0, ino: 0 },
        };
        // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fd is open and st is a valid stat to fill.
        if unsafe { libc::fstat(file.fd, &mut st) } != 0 {
            return Err(FileError::Read(errno()));
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG {
            return Err(FileError::NotRegular(kind));
        }
        file.id = FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        };
        Ok(file)
    }

    /// Reads the next bytes into `buf`; 0 at the end of the file (or if `buf` is empty).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        loop {
            // SAFETY: buf is a valid writable buffer of its length; fd is open.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = errno();
            if e != Errno(libc::EINTR) {
                return Err(FileError::Read(e));
            }
        }
    }
}

impl Drop for RegularFile {
    fn drop(&mut self) {
        // SAFETY: fd was opened by RegularFile::open, is ours alone, and is closed once, here.
        unsafe { libc::close(self.fd) };
    }
}

/// This process's resident memory in bytes (`/proc/self/statm`, second field, in pages; proc(5)):
/// the usage a soft limit in bytes is measured against when there is no cgroup. `None` if the
/// file cannot be read.
pub(crate) fn resident_bytes() -> Option<u64> {
    let mut buf = [0u8; 128];
    let n = read_file(c"/proc/self/statm", &mut buf).ok()?;
    let pages = buf[..n]
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(crate::decimal::parse_u64)?;
    Some(pages.saturating_mul(super::PAGE as u64))
}

/// Why a file could not be read, in words (for `PAGEWISE_VERBOSE`).
impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FileError::Open(e) => write!(f, "cannot be opened ({e})"),
            FileError::NotRegular(mode) => {
                let kind = match mode {
                    libc::S_IFIFO => "a FIFO",
                    libc::S_IFDIR => "a directory",
                    libc::S_IFCHR => "a character device",
                    libc::S_IFBLK => "a block device",
                    libc::S_IFSOCK => "a socket",
                    _ => "of another kind",
                };
                write!(f, "is {kind}, not a regular file")
            }
            FileError::Read(e) => write!(f, "cannot be read ({e})"),
        }
    }
}

/// The errors met reading files, by name (`strerror` may allocate).
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::ENOENT => "ENOENT, no such file",
            libc::EACCES => "EACCES, permission denied",
            libc::EPERM => "EPERM, not permitted",
            libc::ENOTDIR => "ENOTDIR, a path component is not a directory",
            libc::ELOOP => "ELOOP",
            libc::EMFILE => "EMFILE, too many open files",
            libc::ENFILE => "ENFILE, too many open files in the system",
            libc::EOPNOTSUPP => "EOPNOTSUPP, PSI disabled here",
            libc::ENODEV => "ENODEV",
            libc::ENXIO => "ENXIO",
            libc::EIO => "EIO",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            e => return write!(f, "errno {e}"),
        };
        f.write_str(name)
    }
}
