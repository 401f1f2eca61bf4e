//! The hook tools, client side: the multi-call binary invoked as `relation-get` etc.
//! It forwards argv, stdin (only where a tool reads it) and JUJU_CONTEXT_ID to the daemon
//! over JUJU_AGENT_SOCKET_ADDRESS and reproduces the answer's stdout, stderr and exit code.

use crate::protocol::{call, ToolRequest, ToolResponse};
use std::io::{Read, Write};

/// Tools that may read settings from `--file` (a path or `-` for stdin).
const FILE_TOOLS: &[&str] = &[
    "relation-set",
    "state-set",
    "leader-set",
    "secret-add",
    "secret-set",
];

/// Rewrite `--file PATH` into `--file -` with the file's content as stdin: the daemon
/// may not see the unit's filesystem (it lives in another mount namespace).
fn prepare(tool: &str, args: &[String]) -> Result<(Vec<String>, String), String> {
    let mut out = Vec::new();
    let mut stdin = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let file = if a == "--file" && i + 1 < args.len() {
            i += 1;
            Some(args[i].clone())
        } else {
            a.strip_prefix("--file=").map(String::from)
        };
        i += 1;
        match file {
            Some(f) if FILE_TOOLS.contains(&tool) => {
                let mut content = String::new();
                if f == "-" {
                    std::io::stdin()
                        .read_to_string(&mut content)
                        .map_err(|e| format!("reading stdin: {e}"))?;
                } else {
                    content = std::fs::read_to_string(&f)
                        .map_err(|e| format!("cannot read {f:?}: {e}"))?;
                }
                stdin = Some(content);
                out.push("--file".into());
                out.push("-".into());
            }
            Some(f) => {
                out.push("--file".into());
                out.push(f);
            }
            // `key#file=/path` content comes from the unit's filesystem too
            None if tool.starts_with("secret-") && a.contains("#file=") && !a.starts_with('-') => {
                let (key, path) = a.split_once("#file=").unwrap();
                let content = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {path:?}: {e}"))?;
                out.push(format!("{key}={content}"));
            }
            None => out.push(a.clone()),
        }
    }
    Ok((out, stdin.unwrap_or_default()))
}

/// Run the tool called `tool` with `args`; returns the exit code.
pub fn main(tool: &str, args: &[String]) -> i32 {
    let (args, stdin) = match prepare(tool, args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ERROR {e}");
            return 1;
        }
    };
    let Ok(ctx) = std::env::var("JUJU_CONTEXT_ID") else {
        eprintln!("ERROR JUJU_CONTEXT_ID not set: {tool} only works inside a hook");
        return 1;
    };
    let Some(sock) = std::env::var_os("JUJU_AGENT_SOCKET_ADDRESS") else {
        eprintln!("ERROR JUJU_AGENT_SOCKET_ADDRESS not set");
        return 1;
    };
    let req = ToolRequest {
        context_id: ctx,
        tool: tool.to_string(),
        args,
        stdin,
    };
    forward(std::path::Path::new(&sock), &req)
}

/// Sends `req` to the daemon at `sock` and reproduces the answer's stdout and stderr; returns
/// its exit code.
pub(crate) fn forward(sock: &std::path::Path, req: &ToolRequest) -> i32 {
    match call::<_, ToolResponse>(sock, req) {
        Ok(r) => {
            let _ = std::io::stdout().write_all(r.stdout.as_bytes());
            let _ = std::io::stderr().write_all(r.stderr.as_bytes());
            r.code
        }
        Err(e) => {
            eprintln!("ERROR cannot reach the unit agent: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_become_stdin() {
        let p = std::env::temp_dir().join(format!("lm-tc-{}", std::process::id()));
        std::fs::write(&p, "a: b\n").unwrap();
        let args = vec![
            "-r".to_string(),
            "x:1".into(),
            format!("--file={}", p.display()),
            "k=v".into(),
        ];
        let (a, s) = prepare("relation-set", &args).unwrap();
        assert_eq!(a, vec!["-r", "x:1", "--file", "-", "k=v"]);
        assert_eq!(s, "a: b\n");
        std::fs::remove_file(&p).unwrap();
        assert!(prepare("relation-set", &["--file".into(), "/nonexistent/x".into()]).is_err());
        let (a, _) =
            prepare("secret-add", &[format!("tls-key#file={}", p.display())]).unwrap_or_default();
        assert!(a.is_empty(), "file removed above, so this must fail");
        std::fs::write(&p, "PEM").unwrap();
        let (a, _) = prepare("secret-add", &[format!("tls-key#file={}", p.display())]).unwrap();
        assert_eq!(a, vec!["tls-key=PEM"]);
        std::fs::remove_file(&p).unwrap();
    }
}
