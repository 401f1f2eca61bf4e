//! Unit-file specifiers (`%i`, `%I`, `%H`, `%p`, ...) and systemd's unit-name unescaping.

use crate::unitfile::split_name;

pub struct Specifiers {
    name: String,
    prefix: String,
    instance: String,
    hostname: String,
}

impl Specifiers {
    pub fn new(name: &str, hostname: &str) -> Specifiers {
        let (prefix, instance, _) = split_name(name);
        Specifiers {
            name: name.to_string(),
            prefix,
            instance: instance.unwrap_or_default(),
            hostname: hostname.to_string(),
        }
    }

    pub fn resolve(&self, v: &str) -> String {
        let mut s = String::new();
        let mut it = v.chars();
        while let Some(c) = it.next() {
            if c != '%' {
                s.push(c);
                continue;
            }
            let Some(k) = it.next() else {
                s.push('%');
                break;
            };
            let stem = self
                .name
                .rsplit_once('.')
                .map(|(a, _)| a)
                .unwrap_or(&self.name);
            match k {
                'n' => s.push_str(&self.name),
                'N' => s.push_str(stem),
                'p' => s.push_str(&self.prefix),
                'P' => s.push_str(&unescape_name(&self.prefix)),
                'i' => s.push_str(&self.instance),
                'I' => s.push_str(&unescape_name(&self.instance)),
                'j' => s.push_str(self.prefix.rsplit('-').next().unwrap_or("")),
                'H' => s.push_str(&self.hostname),
                'l' => s.push_str(self.hostname.split('.').next().unwrap_or("")),
                'm' => s.push_str(
                    std::fs::read_to_string("/etc/machine-id")
                        .unwrap_or_default()
                        .trim(),
                ),
                't' => s.push_str("/run"),
                'S' => s.push_str("/var/lib"),
                'C' => s.push_str("/var/cache"),
                'L' => s.push_str("/var/log"),
                'E' => s.push_str("/etc"),
                'T' => s.push_str("/tmp"),
                'V' => s.push_str("/var/tmp"),
                'h' => s.push_str("/root"),
                'u' => s.push_str("root"),
                'U' => s.push('0'),
                '%' => s.push('%'),
                other => {
                    s.push('%');
                    s.push(other);
                }
            }
        }
        s
    }
}

/// systemd's unit-name unescaping: `-` is `/`, `\xNN` is a byte.
pub fn unescape_name(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            out.push(b'/');
            i += 1;
        } else if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            match std::str::from_utf8(&b[i + 2..i + 4])
                .map_err(|_| ())
                .and_then(|h| u8::from_str_radix(h, 16).map_err(|_| ()))
            {
                Ok(v) => {
                    out.push(v);
                    i += 4;
                }
                Err(_) => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_and_templates() {
        let sp = Specifiers::new("postgresql@15-main.service", "db1");
        assert_eq!(
            sp.resolve("%i %I %p %H %n %%"),
            "15-main 15/main postgresql db1 postgresql@15-main.service %"
        );
        assert_eq!(unescape_name("a\\x2db-c"), "a-b/c");
        assert_eq!(
            unescape_name("\\xé1"),
            "\\xé1",
            "non-ASCII after \\x must not panic"
        );
    }
}
