//! The configuration's own stderr lines: a malformed variable (what was ignored, in which
//! program) and `PAGEWISE_VERBOSE`'s list of every setting with its source. Written with
//! `report`'s allocation-free lines.

use core::fmt::Write;

use super::{Config, ConfigError, Setting};
use crate::os;
use crate::report::{program, write_escaped, Line};

/// The line for a malformed variable: what, which value, accepted values, the value used, and the
/// program, so that an operator reading a log knows which process ignored what.
pub(crate) fn config_error(e: &ConfigError) {
    let mut line = Line::new();
    let mut name = [0u8; 64];
    let _ = write!(line, "pagewise: {e}; using the default ");
    let _ = e.setting().show(&mut line, &Config::DEFAULT);
    let _ = line.write_str(" in ");
    let _ = write_escaped(&mut line, program(&mut name));
    let _ = write!(line, " (pid {})", os::pid());
    line.emit();
}

/// `PAGEWISE_VERBOSE=1`: every setting, its value and where it came from, plus the kernel
/// features in use.
/// `shown` holds the values in force, the path-valued ones included (which the engine resolved:
/// their environment copies come first).
pub(crate) fn verbose(shown: &Config, notes: &str) {
    let c = shown;
    let mut line = Line::new();
    let mut name = [0u8; 64];
    let _ = line.write_str("pagewise: config for ");
    let _ = write_escaped(&mut line, program(&mut name));
    let _ = line.write_str(":");
    for &setting in Setting::ALL {
        let _ = write!(line, " {}=", setting.var());
        let _ = setting.show(&mut line, shown);
        let _ = write!(line, " ({})", c.source(setting).name());
    }
    line.emit();
    let mut line = Line::new();
    let _ = write!(
        line,
        "pagewise: kernel: MADV_FREE {}, MADV_POPULATE_WRITE {}; {notes}",
        if os::has_free() {
            "yes"
        } else {
            "no (free -> dontneed)"
        },
        if os::has_populate_write() {
            "yes"
        } else {
            "no (MAP_POPULATE)"
        },
    );
    line.emit();
}
