//! `journalctl -u UNIT [-n N]` inside a host: services' stdout/stderr are kept per unit
//! under /var/log/local-model/ (no journald here).

pub fn main(argv: &[String]) -> i32 {
    let mut units = Vec::new();
    let mut lines: Option<usize> = None;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-u" | "--unit" => units.extend(it.next().cloned()),
            "-n" | "--lines" => lines = it.next().and_then(|n| n.parse().ok()),
            s if s.starts_with("--unit=") => units.push(s["--unit=".len()..].to_string()),
            s if s.starts_with("--lines=") => lines = s["--lines=".len()..].parse().ok(),
            s if s.starts_with("-u") && s.len() > 2 => units.push(s[2..].to_string()),
            _ => {}
        }
    }
    if units.is_empty() {
        eprintln!("journalctl: the local model keeps logs per unit only; use -u UNIT");
        return 1;
    }
    for u in units {
        let text = std::fs::read_to_string(crate::launch::log_path(&crate::unit::normalize(&u)))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = lines.map_or(0, |n| all.len().saturating_sub(n));
        for l in &all[from..] {
            println!("{l}");
        }
    }
    0
}
