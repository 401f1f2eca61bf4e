//! `--key value` / `--key=value` argument lists of the runtime's internal subcommands.

pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    pub fn parse(argv: &[String]) -> Args {
        let mut pairs = Vec::new();
        let mut i = 0;
        while i < argv.len() {
            if let Some(k) = argv[i].strip_prefix("--") {
                if let Some((k, v)) = k.split_once('=') {
                    pairs.push((k.to_string(), v.to_string()));
                } else if let Some(v) = argv.get(i + 1) {
                    pairs.push((k.to_string(), v.clone()));
                    i += 1;
                }
            }
            i += 1;
        }
        Args { pairs }
    }

    /// Every value of a key given more than once, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
