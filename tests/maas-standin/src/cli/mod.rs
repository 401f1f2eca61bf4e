//! The command-line tools, one module per tool: `maas` (snap CLI and API client), `maas-region`
//! and `maas-rack` (deb CLIs). Each `main` returns the exit status.

pub mod admin;
pub mod client;
pub mod maas;
pub mod python;
pub mod rack;
pub mod region;

use crate::argparse::{Exit, Parsed, Parser};

/// Parses with `p`; on refusal prints as argparse does and gives the exit status to return.
pub fn parse<S: AsRef<str>>(p: &Parser, args: &[S]) -> Result<Parsed, i32> {
    p.parse(args).map_err(report)
}

/// Prints an argparse exit (help on stdout, errors on stderr).
pub fn report(e: Exit) -> i32 {
    if e.code == 0 {
        print!("{}", e.text);
    } else {
        eprint!("{}", e.text);
    }
    e.code
}

/// Prints `msg` on stderr and returns 1: Python's `SystemExit(msg)`, which is how MAAS's CLIs
/// refuse in their own words (maascli's `CommandError` is `SystemExit`, src/maascli/command.py).
/// A failure MAAS reports otherwise (argparse, a traceback) goes through [`python`].
pub fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("{msg}");
    1
}

/// Refuses when not root, with MAAS's wording.
pub fn require_root(what: &str) -> Result<(), i32> {
    if crate::util::is_root() {
        Ok(())
    } else {
        Err(fail(format!("The '{what}' command must be run by root.")))
    }
}
