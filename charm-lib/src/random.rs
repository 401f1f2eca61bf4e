//! Random secrets (passwords, tokens) from the kernel's random source, without a crate.

use std::io::Read;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random letters and digits from `/dev/urandom`, every character equally likely.
pub fn alphanumeric(len: usize) -> std::io::Result<String> {
    let mut f = std::fs::File::open("/dev/urandom")?;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        f.read_exact(&mut buf)?;
        // Rejection sampling: 248 = 4 × 62, so keeping only bytes below it maps evenly.
        out.extend(
            buf.iter()
                .filter(|b| **b < 248)
                .map(|b| ALPHABET[(*b % 62) as usize] as char)
                .take(len - out.len()),
        );
    }
    Ok(out)
}

/// `len` random bytes from `/dev/urandom`.
pub fn bytes(len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_alphabet_and_no_repeats() {
        for len in [0, 1, 8, 32, 100] {
            let a = alphanumeric(len).unwrap();
            assert_eq!(a.len(), len);
            assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(alphanumeric(32).unwrap(), alphanumeric(32).unwrap());
    }
}
