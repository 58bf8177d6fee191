//! Lines pagewise writes on stderr — configuration errors, `PAGEWISE_VERBOSE`, `PAGEWISE_STATS` —
//! formatted into a stack buffer and written with one `write(2)`, so that printing never
//! allocates (we may be the global allocator, called from inside `alloc`).
//!
//! This room knows lines, not what they say: the configuration's own lines are in
//! `config/print.rs`, which imports this one (never the other way round, issue #20).

use core::fmt::{self, Write};

use crate::os;

/// A fixed-size line buffer; output past its end is dropped (and marked with `...`).
pub(crate) struct Line {
    buf: [u8; 1024],
    len: usize,
    overflow: bool,
}

impl Line {
    pub(crate) const fn new() -> Line {
        Line {
            buf: [0; 1024],
            len: 0,
            overflow: false,
        }
    }

    /// Writes the line (with a trailing newline) to stderr.
    pub(crate) fn emit(self) {
        self.emit_to(2);
    }

    /// Writes the line (with a trailing newline) to `fd`.
    pub(crate) fn emit_to(mut self, fd: core::ffi::c_int) {
        if self.overflow {
            let n = self.len.min(self.buf.len() - 4);
            self.buf[n..n + 3].copy_from_slice(b"...");
            self.len = n + 3;
        }
        let n = self.len.min(self.buf.len() - 1);
        self.buf[n] = b'\n';
        os::write_fd(fd, &self.buf[..n + 1]);
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.overflow = true;
        }
        Ok(())
    }
}

/// Writes bytes as text, escaping anything that is not printable ASCII (`\xNN`).
pub(crate) fn write_escaped(f: &mut dyn Write, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            f.write_char(b as char)?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// The running program's name, from `/proc/self/comm` (at most 15 bytes by the kernel's rule).
pub(crate) fn program(buf: &mut [u8; 64]) -> &[u8] {
    match os::read_file(c"/proc/self/comm", buf) {
        Ok(n) => {
            let s = &buf[..n];
            s.strip_suffix(b"\n").unwrap_or(s)
        }
        Err(_) => b"?",
    }
}

/// Writes any `Display` value as one stderr line prefixed with `pagewise: `.
pub(crate) fn line(v: &dyn fmt::Display) {
    line_to(2, v);
}

/// [`line`] to the descriptor `fd`.
pub(crate) fn line_to(fd: core::ffi::c_int, v: &dyn fmt::Display) {
    let mut line = Line::new();
    let _ = write!(line, "pagewise: {v}");
    line.emit_to(fd);
}
