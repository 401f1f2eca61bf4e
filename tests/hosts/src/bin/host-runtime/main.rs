//! `host-runtime`: the one binary the hosts run. Dispatched on `argv[0]`:
//! `systemctl`, `apt-get`, `apt`, `snap`, `dpkg-query`, `journalctl` (symlinked into every host's /usr/bin); as
//! `host-runtime` it takes a subcommand: `boot`/`init` (start a host), `enter` (run a
//! program in a host), or any of the tool names.

mod apt;
mod args;
mod boot;
mod calendar;
mod catalog;
mod conditions;
mod ctl;
mod dpkg_query;
mod enable;
mod enter;
mod init;
mod journalctl;
mod launch;
mod members;
mod snap;
mod snapd;
mod specifiers;
mod sup;
mod sys;
mod systemctl;
mod tmpfiles;
mod unit;
mod unitfile;
mod users;
mod words;

/// Every process of a lab carries this variable (value: the lab prefix), so a crashed
/// lab's processes can be found. Must match the library's `layout::LAB_MARKER`.
pub const LAB_MARKER: &str = "HOSTS_LAB";

fn dispatch(prog: &str, rest: &[String]) -> i32 {
    match prog {
        "systemctl" => systemctl::main(rest),
        "apt-get" => apt::main(rest, false),
        "apt" => apt::main(rest, true),
        "snap" => snap::main(rest),
        "dpkg-query" => dpkg_query::main(rest),
        "journalctl" => journalctl::main(rest),
        app if app != "host-runtime" && snap::is_app_command(app) => {
            match snap::run_app(app, rest) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        _ => match rest.split_first() {
            Some((sub, more)) => match sub.as_str() {
                "boot" => boot::main(more),
                "init" => init::main(more),
                "enter" => enter::main(more),
                "systemctl" | "apt-get" | "apt" | "snap" | "dpkg-query" | "journalctl" => {
                    dispatch(sub, more)
                }
                other => {
                    eprintln!("host-runtime: unknown subcommand {other}");
                    2
                }
            },
            None => {
                eprintln!("usage: host-runtime boot|init|enter|systemctl|apt-get|apt|snap ...");
                2
            }
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prog = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let code = dispatch(&prog, args.get(1..).unwrap_or(&[]));
    std::process::exit(code);
}
