//! systemd's command-line and assignment syntax: quoted word splitting, `$VAR`/`${VAR}`
//! expansion and environment files.

/// Splits on whitespace, honouring "double" and 'single' quotes and C-style escapes.
pub fn split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    out.push(w);
                }
            }
            '"' | '\'' => {
                let w = cur.get_or_insert_with(String::new);
                while let Some(q) = it.next() {
                    if q == c {
                        break;
                    }
                    if q == '\\' {
                        if let Some(e) = it.next() {
                            w.push(unescape(e));
                        }
                    } else {
                        w.push(q);
                    }
                }
            }
            '\\' => {
                let w = cur.get_or_insert_with(String::new);
                if let Some(e) = it.next() {
                    w.push(unescape(e));
                }
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = cur {
        out.push(w);
    }
    out
}

fn unescape(e: char) -> char {
    match e {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'v' => '\x0b',
        's' => ' ',
        other => other,
    }
}

/// Expands `$VAR` (a whole word: split at whitespace into zero or more words) and
/// `${VAR}` (anywhere: exactly its value) as systemd does in Exec lines; `$$` is `$`.
pub fn expand(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let mut out = Vec::new();
    for w in words {
        if let Some(name) = w.strip_prefix('$') {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.extend(get(name).unwrap_or("").split_whitespace().map(String::from));
                continue;
            }
        }
        out.push(expand_in_word(w, &get));
    }
    out
}

fn expand_in_word<'a>(w: &str, get: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let mut s = String::new();
    let b: Vec<char> = w.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '$' {
                s.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == '{' {
                if let Some(end) = b[i + 2..].iter().position(|c| *c == '}') {
                    let name: String = b[i + 2..i + 2 + end].iter().collect();
                    s.push_str(get(&name).unwrap_or(""));
                    i += end + 3;
                    continue;
                }
            }
            let n = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            if n > 0 {
                let name: String = b[i + 1..i + 1 + n].iter().collect();
                s.push_str(get(&name).unwrap_or(""));
                i += n + 1;
                continue;
            }
        }
        s.push(b[i]);
        i += 1;
    }
    s
}

/// `Environment=` value: space-separated, quotable `KEY=VALUE` assignments.
pub fn assignments(v: &str) -> Vec<(String, String)> {
    split(v)
        .into_iter()
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// An `EnvironmentFile=`: `KEY=VALUE` lines, `#`/`;` comments, optional quotes,
/// backslash continuation.
pub fn env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        if let Some(l) = line.strip_suffix('\\') {
            pending.push_str(l);
            continue;
        }
        pending.push_str(line);
        let l = std::mem::take(&mut pending);
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            split(v).join(" ")
        } else {
            v.to_string()
        };
        out.push((k.trim().to_string(), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn splits_quotes_and_escapes() {
        assert_eq!(
            split(r#"/bin/sh -c "echo a  b" 'x y' c\ d"#),
            vec!["/bin/sh", "-c", "echo a  b", "x y", "c d"]
        );
    }

    #[test]
    fn expands_like_systemd() {
        let e = env(&[("A", "1 2"), ("B", "x")]);
        let w: Vec<String> = ["p", "$A", "${A}", "-f$B", "$NOPE", "$$"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(expand(&w, &e), vec!["p", "1", "2", "1 2", "-fx", "$"]);
    }

    #[test]
    fn reads_env_files() {
        let e = env_file("# c\nA=1\nB=\"two words\"\n\nexport C='3'\nbad line\n");
        assert_eq!(e, env(&[("A", "1"), ("B", "two words"), ("C", "3")]));
    }
}
