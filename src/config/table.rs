//! The `settings!` macro, which turns the settings table in the module root into everything
//! that is written once per setting: the [`Setting`](super::Setting) enum with each variable's
//! name (as `&str` and as C string), accepted values and verbose form; the
//! [`Config`](super::Config) fields, default, const setters and getters, and `Debug`; the parser
//! run on the variable; and the word the parsed environment is published as.
//!
//! A table row is one of two kinds, by the key that names its reader:
//!
//! - `parse: f`, with `f(&[u8]) -> Option<T>`: the variable's value overrides the code's;
//! - `check: f`, with `f(&[u8]) -> bool`: the variable is only validated here (reported if
//!   malformed, marked as from the environment) and its consumer reads it itself. That is the
//!   pressure file: a path must outlive `setenv`, so it is copied once (`env_pressure_path`)
//!   rather than carried in a [`Config`](super::Config).

use core::ffi::CStr;

/// A variable's name as a C string, for `getenv`; only ever evaluated at compile time (in a
/// `const` block), where a NUL inside the name stops the build.
pub(super) const fn c_str(nul_terminated: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(nul_terminated.as_bytes()) {
        Ok(name) => name,
        Err(_) => panic!("a variable name must not contain NUL"),
    }
}

macro_rules! settings {
    // What each kind of row does with the variable's value: store it, or only check it.
    (@apply parse $parse:path, $field:expr, $value:ident, $invalid:ident) => {
        $field = $parse($value).ok_or_else($invalid)?
    };
    (@apply check $check:path, $field:expr, $value:ident, $invalid:ident) => {
        if !$check($value) {
            return Err($invalid());
        }
    };
    // A checked row publishes nothing: its `Config` field is the code's, never the environment's.
    (@word parse $field:expr) => {
        env::Word::to_word($field)
    };
    (@word check $field:expr) => {
        0
    };
    (@set_word parse $field:expr, $word:ident) => {
        $field = env::Word::from_word($word)
    };
    (@set_word check $field:expr, $word:ident) => {
        ()
    };
    // `Debug` shows what the getter returns where there is one (`None` rather than `u64::MAX`).
    (@debug $field:expr) => {
        $field
    };
    (@debug $field:expr, $getter:expr) => {
        $getter
    };

    (
        $(#[$config_doc:meta])*
        pub struct Config;

        $(#[$default_doc:meta])*
        pub const DEFAULT;

        $(
            $(#[$doc:meta])*
            $name:ident {
                var: $var:literal,
                accepted: $accepted:literal,
                field: $field:ident: $ty:ty = $default:expr,
                $kind:ident: $read:path,
                show: $show:path,
                set: $set:ident($arg:ident: $arg_ty:ty) $(=> $set_conv:path)?,
                $(
                    $(#[$get_doc:meta])*
                    get: $get:ident -> $get_ty:ty $(=> $get_conv:path)?,
                )?
            }
        )*
    ) => {
        /// One variant per row of the settings table, in its order (the README's).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum Setting {
            $( $name, )*
        }

        impl Setting {
            pub(crate) const ALL: &'static [Setting] = &[$( Setting::$name, )*];

            /// The environment variable that sets it.
            pub(crate) const fn var(self) -> &'static str {
                match self {
                    $( Setting::$name => $var, )*
                }
            }

            pub(crate) const fn var_c(self) -> &'static CStr {
                match self {
                    $( Setting::$name => const { table::c_str(concat!($var, "\0")) }, )*
                }
            }

            /// What the variable accepts, for error messages.
            pub(crate) const fn accepted(self) -> &'static str {
                match self {
                    $( Setting::$name => $accepted, )*
                }
            }

            const fn bit(self) -> u16 {
                1 << self as u8
            }

            /// Writes `config`'s value in a form the variable accepts.
            pub(crate) fn show(self, f: &mut dyn fmt::Write, config: &Config) -> fmt::Result {
                match self {
                    $( Setting::$name => $show(f, config.$field), )*
                }
            }

            /// `config`'s value as published by the environment layer.
            fn word(self, config: &Config) -> u64 {
                match self {
                    $( Setting::$name => settings!(@word $kind config.$field), )*
                }
            }

            fn set_word(self, config: &mut Config, word: u64) {
                match self {
                    $( Setting::$name => settings!(@set_word $kind config.$field, word), )*
                }
            }
        }

        $(#[$config_doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct Config {
            $( $(#[$doc])* pub(crate) $field: $ty, )*
            /// Whether the environment overrides the code (see [`Config::ignore_env`]).
            pub(crate) use_env: bool,
            /// Settings given in code (bits of [`Setting`]).
            pub(crate) set: u16,
            /// Settings taken from the environment (bits of [`Setting`]); filled by resolution.
            pub(crate) from_env: u16,
        }

        impl Config {
            $(#[$default_doc])*
            pub const DEFAULT: Config = Config {
                $( $field: $default, )*
                use_env: true,
                set: 0,
                from_env: 0,
            };

            $(
                $(#[$doc])*
                #[doc = ""]
                #[doc = concat!("Environment variable: `", $var, "` (", $accepted, ").")]
                pub const fn $set(mut self, $arg: $arg_ty) -> Config {
                    self.$field = $( $set_conv )? ($arg);
                    self.set |= Setting::$name.bit();
                    self
                }

                $(
                    $(#[$get_doc])*
                    pub const fn $get(&self) -> $get_ty {
                        $( $get_conv )? (self.$field)
                    }
                )?
            )*

            /// Reads `value` for `setting` into `self`, marking it as from the environment.
            fn apply(&mut self, setting: Setting, value: &[u8]) -> Result<(), ConfigError> {
                let invalid = || ConfigError::new(setting, value);
                match setting {
                    $( Setting::$name => settings!(@apply $kind $read, self.$field, value, invalid), )*
                }
                self.from_env |= setting.bit();
                Ok(())
            }
        }

        impl fmt::Debug for Config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("Config")
                    $( .field(stringify!($set), &settings!(@debug self.$field $(, self.$get())?)) )*
                    .field("use_env", &self.use_env)
                    .finish()
            }
        }
    };
}
