//! A small command-line parser that fails the way Python's argparse does, because MAAS's CLIs
//! are argparse programs and the charms see their exit codes and messages (`usage:` line,
//! `error: unrecognized arguments: ...`, exit status 2).

use std::collections::HashMap;

/// One `--option`.
#[derive(Clone, Debug)]
pub struct Opt {
    /// Long name with dashes, e.g. `--maas-url`.
    pub name: &'static str,
    /// Whether it takes a value.
    pub takes_value: bool,
    /// Whether argparse would insist on it.
    pub required: bool,
    /// Help line.
    pub help: &'static str,
    /// Accepted but not shown in usage (argparse.SUPPRESS).
    pub hidden: bool,
}

impl Opt {
    /// An option that takes a value.
    pub const fn value(name: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            takes_value: true,
            required: false,
            help,
            hidden: false,
        }
    }
    /// A flag.
    pub const fn flag(name: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            takes_value: false,
            required: false,
            help,
            hidden: false,
        }
    }
    /// Hides the option from usage and help.
    pub const fn hidden(mut self) -> Opt {
        self.hidden = true;
        self
    }
    /// Marks the option required.
    pub const fn required(mut self) -> Opt {
        self.required = true;
        self
    }
}

/// One positional argument.
#[derive(Clone, Debug)]
pub struct Pos {
    /// Name shown in messages.
    pub name: &'static str,
    /// Allowed values, if restricted.
    pub choices: Option<&'static [&'static str]>,
    /// Whether it may be left out.
    pub optional: bool,
}

/// A parser for one command.
#[derive(Clone, Debug)]
pub struct Parser {
    /// Program name as shown in `usage:` (e.g. `maas init`).
    pub prog: String,
    /// Options.
    pub opts: Vec<Opt>,
    /// Positionals, in order.
    pub positionals: Vec<Pos>,
    /// Pairs of options that may not be given together.
    pub exclusive: Vec<(&'static str, &'static str)>,
    /// Accept any number of trailing positionals (for `key=value` API parameters).
    pub rest: bool,
}

/// What a command line said.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    values: HashMap<&'static str, String>,
    flags: Vec<&'static str>,
    /// Positional values, in order.
    pub positionals: Vec<String>,
}

impl Parsed {
    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    /// Whether flag `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }
    /// Whether `--name` was given at all (value or flag).
    pub fn has(&self, name: &str) -> bool {
        self.flag(name) || self.values.contains_key(name)
    }
}

/// A refusal: what to print on stderr and the exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit status (2 for usage errors, 0 for `--help`).
    pub code: i32,
    /// Text for stdout (help) or stderr (errors).
    pub text: String,
}

impl Parser {
    /// A parser with no arguments yet.
    pub fn new(prog: impl Into<String>) -> Parser {
        Parser {
            prog: prog.into(),
            opts: vec![],
            positionals: vec![],
            exclusive: vec![],
            rest: false,
        }
    }
    /// Adds options.
    pub fn opts(mut self, opts: &[Opt]) -> Parser {
        self.opts.extend_from_slice(opts);
        self
    }
    /// Adds a positional.
    pub fn pos(mut self, name: &'static str, choices: Option<&'static [&'static str]>) -> Parser {
        self.positionals.push(Pos {
            name,
            choices,
            optional: false,
        });
        self
    }
    /// Declares two options mutually exclusive.
    pub fn exclusive(mut self, a: &'static str, b: &'static str) -> Parser {
        self.exclusive.push((a, b));
        self
    }
    /// Accepts extra positionals.
    pub fn rest(mut self) -> Parser {
        self.rest = true;
        self
    }

    /// The `usage:` line.
    pub fn usage(&self) -> String {
        let mut u = format!("usage: {} [-h]", self.prog);
        for o in self.opts.iter().filter(|o| !o.hidden) {
            let meta = o
                .name
                .trim_start_matches('-')
                .replace('-', "_")
                .to_uppercase();
            let body = if o.takes_value {
                format!("{} {meta}", o.name)
            } else {
                o.name.to_string()
            };
            if o.required {
                u.push_str(&format!(" {body}"));
            } else {
                u.push_str(&format!(" [{body}]"));
            }
        }
        for p in &self.positionals {
            match p.choices {
                Some(c) => u.push_str(&format!(" {{{}}}", c.join(","))),
                None => u.push_str(&format!(" {}", p.name)),
            }
        }
        if self.rest {
            u.push_str(" ...");
        }
        u
    }

    fn help(&self) -> String {
        let mut h = format!(
            "{}\n\noptions:\n  -h, --help            show this help message and exit\n",
            self.usage()
        );
        for o in self.opts.iter().filter(|o| !o.hidden) {
            h.push_str(&format!("  {:<22}{}\n", o.name, o.help));
        }
        h
    }

    /// argparse's refusal of a value outside `choices`.
    pub fn invalid_choice(&self, arg: &str, value: &str, choices: &[&str]) -> Exit {
        let quoted: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
        self.error(&format!(
            "argument {arg}: invalid choice: '{value}' (choose from {})",
            quoted.join(", ")
        ))
    }

    /// An argparse-style error.
    pub fn error(&self, msg: &str) -> Exit {
        Exit {
            code: 2,
            text: format!("{}\n{}: error: {msg}\n", self.usage(), self.prog),
        }
    }

    fn find(&self, name: &str) -> Result<Option<&Opt>, Exit> {
        if let Some(o) = self.opts.iter().find(|o| o.name == name) {
            return Ok(Some(o));
        }
        // argparse accepts unambiguous prefixes of long options.
        let matches: Vec<&Opt> = self
            .opts
            .iter()
            .filter(|o| o.name.starts_with(name))
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(Some(matches[0])),
            _ => Err(self.error(&format!(
                "ambiguous option: {name} could match {}",
                matches
                    .iter()
                    .map(|o| o.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Parses `args` (without the program name).
    pub fn parse<S: AsRef<str>>(&self, args: &[S]) -> Result<Parsed, Exit> {
        let mut out = Parsed::default();
        let mut unrecognized: Vec<String> = vec![];
        let mut i = 0;
        let mut only_positionals = false;
        while i < args.len() {
            let a = args[i].as_ref();
            i += 1;
            if !only_positionals && a == "--" {
                only_positionals = true;
                continue;
            }
            if !only_positionals && (a == "-h" || a == "--help") {
                return Err(Exit {
                    code: 0,
                    text: self.help(),
                });
            }
            if !only_positionals && a.starts_with('-') && a.len() > 1 {
                let (name, inline) = match a.split_once('=') {
                    Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                    _ => (a, None),
                };
                let Some(opt) = self.find(name)? else {
                    unrecognized.push(a.to_string());
                    continue;
                };
                if opt.takes_value {
                    let v = match inline {
                        Some(v) => v,
                        None => match args.get(i).map(|s| s.as_ref()) {
                            Some(v) if !(v.starts_with('-') && v.len() > 1) => {
                                i += 1;
                                v.to_string()
                            }
                            _ => {
                                return Err(self.error(&format!(
                                    "argument {}: expected one argument",
                                    opt.name
                                )))
                            }
                        },
                    };
                    out.values.insert(opt.name, v);
                } else {
                    if inline.is_some() {
                        return Err(self.error(&format!(
                            "argument {}: ignored explicit argument '{}'",
                            opt.name,
                            inline.unwrap_or_default()
                        )));
                    }
                    out.flags.push(opt.name);
                }
                continue;
            }
            if out.positionals.len() < self.positionals.len() || self.rest {
                if let Some(p) = self.positionals.get(out.positionals.len()) {
                    if let Some(choices) = p.choices {
                        if !choices.contains(&a) {
                            return Err(self.invalid_choice(p.name, a, choices));
                        }
                    }
                }
                out.positionals.push(a.to_string());
            } else {
                unrecognized.push(a.to_string());
            }
        }
        let mut missing: Vec<&str> = self
            .positionals
            .iter()
            .skip(out.positionals.len())
            .filter(|p| !p.optional)
            .map(|p| p.name)
            .collect();
        missing.extend(
            self.opts
                .iter()
                .filter(|o| o.required && !out.has(o.name))
                .map(|o| o.name),
        );
        if !missing.is_empty() {
            return Err(self.error(&format!(
                "the following arguments are required: {}",
                missing.join(", ")
            )));
        }
        for (a, b) in &self.exclusive {
            if out.has(a) && out.has(b) {
                return Err(self.error(&format!("argument {b}: not allowed with argument {a}")));
            }
        }
        if !unrecognized.is_empty() {
            return Err(self.error(&format!(
                "unrecognized arguments: {}",
                unrecognized.join(" ")
            )));
        }
        Ok(out)
    }
}

/// What `argparse.FileType` says of a file it cannot open (the message after `error: `).
pub fn cannot_open(arg: &str, file: &str, e: &std::io::Error) -> String {
    let errno = e.raw_os_error().unwrap_or(0);
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory",
        std::io::ErrorKind::PermissionDenied => "Permission denied",
        _ => "Is a directory",
    };
    format!("argument {arg}: can't open '{file}': [Errno {errno}] {what}: '{file}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Parser {
        Parser::new("maas init")
            .pos("run_mode", Some(&["region+rack", "region", "rack"]))
            .opts(&[
                Opt::value("--maas-url", "url"),
                Opt::flag("--force", "force"),
                Opt::flag("--enable-debug", ""),
                Opt::flag("--disable-debug", ""),
            ])
            .exclusive("--enable-debug", "--disable-debug")
    }

    #[test]
    fn parses_values_flags_and_prefixes() {
        let r = p()
            .parse(&["region", "--maas-url=http://x/MAAS", "--for"])
            .unwrap();
        assert_eq!(r.get("--maas-url"), Some("http://x/MAAS"));
        assert!(r.flag("--force"));
        assert_eq!(r.positionals, vec!["region"]);
    }

    #[test]
    fn refuses_like_argparse() {
        let e = p().parse(&["region", "--bogus", "x"]).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.text.starts_with("usage: maas init"));
        assert!(
            e.text
                .contains("maas init: error: unrecognized arguments: --bogus x"),
            "{}",
            e.text
        );
        let e = p().parse(&["regoin"]).unwrap_err();
        assert!(e.text.contains("invalid choice: 'regoin'"));
        let e = p().parse::<&str>(&[]).unwrap_err();
        assert!(e
            .text
            .contains("the following arguments are required: run_mode"));
        let e = p().parse(&["rack", "--maas-url"]).unwrap_err();
        assert!(e
            .text
            .contains("argument --maas-url: expected one argument"));
        let e = p()
            .parse(&["rack", "--enable-debug", "--disable-debug"])
            .unwrap_err();
        assert!(e.text.contains("not allowed with argument"));
        let e = p().parse(&["rack", "--help"]).unwrap_err();
        assert_eq!(e.code, 0);
    }
}
