//! How MAAS's Python commands fail, so callers see what MAAS shows them: Django's
//! `<Class>: <message>` for a management command's `CommandError`, a traceback for any other
//! exception, and, in the snap's `maas`, argparse's error line for whatever escaped the command.
//! The frames name MAAS's real files and functions; the paths and line numbers around them are
//! only there to give the traceback its shape (nothing reads them).

/// One frame of a traceback: file, line, function, the source line shown under it.
#[derive(Clone, Copy)]
pub struct Frame<'a>(pub &'a str, pub u32, pub &'a str, pub &'a str);

/// Python's report of an uncaught exception (`sys.excepthook`): `Traceback (most recent call
/// last):`, the frames outermost first, then `<exception class>: <message>`.
pub fn traceback(frames: &[Frame], exception: &str, message: &str) -> String {
    let mut out = String::from("Traceback (most recent call last):\n");
    for Frame(file, line, func, source) in frames {
        out.push_str(&format!(
            "  File \"{file}\", line {line}, in {func}\n    {source}\n"
        ));
    }
    out.push_str(&format!("{exception}: {message}\n"));
    out
}

/// Where MAAS's Python packages live, by packaging (illustrative).
pub fn site_packages(snap: bool) -> &'static str {
    if snap {
        "/snap/maas/current/lib/python3/dist-packages"
    } else {
        "/usr/lib/python3/dist-packages"
    }
}

/// A Django management command that raised `CommandError` (or a subclass): Django's
/// `BaseCommand.run_from_argv` writes `<Class>: <message>` on stderr and exits 1.
pub fn command_error(class: &str, message: &str) -> i32 {
    eprintln!("{class}: {message}");
    1
}

/// The snap's `maas` after an exception escaped a command: `main` in MAAS's
/// src/maascli/__init__.py catches every `Exception` and calls `parser.error(str(error))`,
/// which prints the top parser's usage and `maas: error: <message>` on stderr and exits 2.
pub fn maascli_error(message: &str) -> i32 {
    eprintln!("usage: maas [-h] COMMAND ...\nmaas: error: {message}");
    2
}

/// The snap's `maas init`, `config`, `status` and `migrate` after an exception escaped the
/// command: they are `SnapCommand`s (src/maascli/snap.py), whose `__call__` marks every
/// `Exception` `always_show` and raises it again, and `main` (src/maascli/__init__.py)
/// re-raises what is marked instead of calling `parser.error`: Python's traceback of the
/// exception, exit 1, not argparse's `maas: error:` (3.4 to master). `frames` are those below
/// `SnapCommand.__call__`'s `self.handle(options)`, innermost last.
pub fn snap_command_traceback(frames: &[Frame], exception: &str, message: &str) -> String {
    let maascli = format!("{}/maascli", site_packages(true));
    let (init, snap) = (
        format!("{maascli}/__init__.py"),
        format!("{maascli}/snap.py"),
    );
    let mut all = vec![
        Frame(
            "/snap/maas/current/bin/maas",
            8,
            "<module>",
            "sys.exit(main())",
        ),
        Frame(&init, 39, "main", "options.execute(options)"),
        // `raise exc` puts `__call__` in front of the traceback a second time.
        Frame(&snap, 433, "__call__", "raise exc"),
        Frame(&snap, 430, "__call__", "self.handle(options)"),
    ];
    all.extend_from_slice(frames);
    traceback(&all, exception, message)
}

/// A management command that raised something other than `CommandError`: the deb's
/// `maas-region` (src/maasserver/region_script.py `run` → Django's
/// `execute_from_command_line`) lets Python print the traceback, exit 1; the snap's `maas`
/// reports it through argparse ([`maascli_error`]).
pub fn uncaught(snap: bool, frames: &[Frame], exception: &str, message: &str) -> i32 {
    if snap {
        return maascli_error(message);
    }
    eprint!("{}", traceback(frames, exception, message));
    1
}

/// Python's `repr` of a `str`: single quotes unless the text has a single quote and no double
/// one, backslash escapes for the quote, backslash and control characters.
pub fn repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `str()` of the `OSError` Python raises for `errno`: `[Errno N] <strerror>`.
pub fn os_error(errno: i32) -> String {
    // SAFETY: strerror returns a pointer to a NUL-terminated string that stays valid until the
    // next call on this thread; it is copied at once.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) }
        .to_string_lossy()
        .into_owned();
    format!("[Errno {errno}] {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceback_has_pythons_shape() {
        let t = traceback(
            &[Frame(
                "/x/dbupgrade.py",
                235,
                "handle",
                "conn.ensure_connection()",
            )],
            "django.db.utils.OperationalError",
            "connection to server at \"10.0.0.5\", port 5432 failed: Connection refused",
        );
        assert_eq!(
            t,
            "Traceback (most recent call last):\n  File \"/x/dbupgrade.py\", line 235, in handle\n    conn.ensure_connection()\ndjango.db.utils.OperationalError: connection to server at \"10.0.0.5\", port 5432 failed: Connection refused\n"
        );
    }

    #[test]
    fn repr_quotes_as_python_does() {
        assert_eq!(repr("ab:cd"), "'ab:cd'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(repr("x\ty\\"), "'x\\ty\\\\'");
    }

    #[test]
    fn os_errors_read_as_pythons() {
        assert_eq!(
            os_error(libc::ECONNREFUSED),
            "[Errno 111] Connection refused"
        );
        assert_eq!(
            os_error(libc::ETIMEDOUT),
            "[Errno 110] Connection timed out"
        );
    }
}
