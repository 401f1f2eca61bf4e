//! `dpkg-query` inside a host: packages installed from the catalog answer as installed;
//! everything else goes to the machine's real dpkg-query (hosts see the machine's dpkg
//! database, so Debian packages the machine has look installed, as on a machine image
//! that ships them).

use crate::catalog;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Where init keeps the machine's dpkg-query before shadowing it.
pub const REAL: &str = "/run/local-model/real/dpkg-query";

enum Mode {
    Show,
    Status,
    List,
}

pub fn main(argv: &[String]) -> i32 {
    let mut mode = None;
    let mut fmt: Option<String> = None;
    let mut opts: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-W" | "--show" => mode = Some(Mode::Show),
            "-s" | "--status" => mode = Some(Mode::Status),
            "-l" | "--list" => mode = Some(Mode::List),
            "-f" | "--showformat" => {
                fmt = it.next().cloned();
                continue;
            }
            s if s.starts_with("-f=") || s.starts_with("--showformat=") => {
                fmt = s.split_once('=').map(|x| x.1.to_string())
            }
            s if s.starts_with('-') => opts.push(a.clone()),
            _ => names.push(a.clone()),
        }
        if a.starts_with('-') {
            opts.push(a.clone());
        }
    }
    let ours = |n: &String| catalog::record(n).filter(|r| r.kind == "deb" && r.source == "catalog");
    let (mine, theirs): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|n| ours(n).is_some());
    let Some(mode) = mode.filter(|_| !mine.is_empty()) else {
        let e = Command::new(REAL).args(argv).exec();
        eprintln!("dpkg-query: {e}");
        return 2;
    };
    for n in &mine {
        let Some(r) = ours(n) else { continue };
        match mode {
            Mode::Show => {
                let f = fmt
                    .clone()
                    .unwrap_or_else(|| "${binary:Package}\t${Version}\n".into());
                print!("{}", format(&f, &r.name, &r.version));
            }
            Mode::Status => println!(
                "Package: {}\nStatus: install ok installed\nVersion: {}\nArchitecture: amd64\n",
                r.name, r.version
            ),
            Mode::List => println!(
                "ii  {:<30} {:<20} amd64        {} (local model catalog)",
                r.name, r.version, r.name
            ),
        }
    }
    if theirs.is_empty() {
        return 0;
    }
    let mut c = Command::new(REAL);
    c.args(&opts);
    if let Some(f) = &fmt {
        c.arg(format!("--showformat={f}"));
    }
    c.args(&theirs);
    c.status().map(|s| s.code().unwrap_or(1)).unwrap_or(2)
}

fn format(f: &str, name: &str, version: &str) -> String {
    f.replace("${binary:Package}", name)
        .replace("${Package}", name)
        .replace("${Version}", version)
        .replace("${Status}", "install ok installed")
        .replace("${db:Status-Abbrev}", "ii ")
        .replace("${db:Status-Status}", "installed")
        .replace("${Architecture}", "amd64")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
}
