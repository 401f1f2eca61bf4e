//! The `systemctl` client: forwards its arguments to the host's init and prints the reply.

use crate::ctl::Reply;
use crate::init::{Request, SOCKET};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

/// Runs a systemctl command through the init; also used in-process by apt-get and snap.
pub fn call(argv: &[String]) -> Reply {
    let fail = |e: String| {
        Reply {
        code: 1,
        out: String::new(),
        err: format!("System has not been booted with systemd as init system (PID 1). Can't operate.\nFailed to connect to bus: {e}\n"),
    }
    };
    let mut c = match UnixStream::connect(SOCKET) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let req = Request {
        argv: argv.to_vec(),
    };
    if let Err(e) = writeln!(c, "{}", serde_json::to_string(&req).unwrap_or_default()) {
        return fail(e.to_string());
    }
    let mut line = String::new();
    if let Err(e) = BufReader::new(&c).read_line(&mut line) {
        return fail(e.to_string());
    }
    serde_json::from_str(&line).unwrap_or_else(|e| fail(format!("bad reply: {e}")))
}

pub fn main(argv: &[String]) -> i32 {
    if argv.iter().any(|a| a == "--version") {
        println!(
            "systemd 252 (252-local-model)\n+local-model: the host-runtime stand-in for systemd"
        );
        return 0;
    }
    let r = call(argv);
    print!("{}", r.out);
    eprint!("{}", r.err);
    r.code
}
