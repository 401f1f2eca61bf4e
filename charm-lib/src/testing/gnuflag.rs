//! Boolean flags of the hook tools, read as Juju reads them.
//!
//! Juju's hook tools parse their argv with github.com/juju/gnuflag: a boolean flag given bare
//! (`--application`) is true; given as `--application=<v>`, `<v>` goes through Go's
//! `strconv.ParseBool` (gnuflag `flag.go`, `parseGnuFlagArg` and `boolValue.Set`), so ops'
//! `status-set --application=False` is the unit's status, not an error.
//!
//! One source for both of our Juju stand-ins: charm-lib's `FakeJuju` uses this module, and the
//! local model's hook tools compile this same file in (`#[path]` in
//! tests/local-model/src/hooktools/mod.rs), so the two cannot disagree. Keep it self-contained:
//! no `crate::` paths.

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`; anything
/// else is Go's error text.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// The value of boolean flag `flag` (as written, `--application`) given bare (`inline` =
/// `None`: true) or as `flag=<inline>`; the error is gnuflag's
/// `invalid value "<v>" for flag --<name>: <ParseBool's error>`.
pub fn bool_flag(flag: &str, inline: Option<&str>) -> Result<bool, String> {
    match inline {
        None => Ok(true),
        Some(v) => {
            parse_bool(v).map_err(|e| format!("invalid value {} for flag {flag}: {e}", go_quote(v)))
        }
    }
}

/// Go's `%q` for the plain strings flags carry (Rust's `{:?}` differs only in how it escapes
/// unprintable characters).
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_go_accepts_and_nothing_else() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "no", "tRUE", "fALSE", "2", " true", "on"] {
            assert!(parse_bool(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_bool("yes").unwrap_err(),
            r#"strconv.ParseBool: parsing "yes": invalid syntax"#
        );
    }

    #[test]
    fn a_bare_flag_is_true_and_a_bad_value_is_worded_as_gnuflag_does() {
        assert_eq!(bool_flag("--application", None), Ok(true));
        assert_eq!(bool_flag("--application", Some("False")), Ok(false));
        assert_eq!(bool_flag("--application", Some("True")), Ok(true));
        assert_eq!(
            bool_flag("--application", Some("maybe")).unwrap_err(),
            r#"invalid value "maybe" for flag --application: strconv.ParseBool: parsing "maybe": invalid syntax"#
        );
    }
}
