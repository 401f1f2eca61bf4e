//! The newest `GLIBC_x.y` symbol version an x86-64 ELF binary needs, read from its
//! `.gnu.version_r` section, so packing refuses a binary Ubuntu 22.04 could not run.

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

fn u16_at(b: &[u8], off: usize) -> Result<u16, String> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated at {off}"))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, String> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| format!("truncated at {off}"))
}

fn u64_at(b: &[u8], off: usize) -> Result<usize, String> {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()) as usize)
        .ok_or_else(|| format!("truncated at {off}"))
}

fn c_str(b: &[u8], off: usize) -> Result<&str, String> {
    let rest = b
        .get(off..)
        .ok_or_else(|| format!("string offset {off} out of range"))?;
    let end = rest
        .iter()
        .position(|c| *c == 0)
        .ok_or("unterminated string")?;
    std::str::from_utf8(&rest[..end]).map_err(|e| e.to_string())
}

/// `Some((major, minor))` of the newest GLIBC version required, `None` for a binary that
/// needs none (static). Errors for anything that is not a 64-bit little-endian ELF.
pub fn max_glibc_version(elf: &[u8]) -> Result<Option<(u32, u32)>, String> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let shoff = u64_at(elf, 0x28)?;
    let shentsize = u16_at(elf, 0x3A)? as usize;
    let shnum = u16_at(elf, 0x3C)? as usize;
    let section = |i: usize| shoff + i * shentsize;
    let mut best: Option<(u32, u32)> = None;
    for i in 0..shnum {
        let sh = section(i);
        if u32_at(elf, sh + 4)? != SHT_GNU_VERNEED {
            continue;
        }
        let strtab = u64_at(elf, section(u32_at(elf, sh + 0x28)? as usize) + 0x18)?;
        let mut need = u64_at(elf, sh + 0x18)?;
        for _ in 0..u32_at(elf, sh + 0x2C)? {
            let mut aux = need + u32_at(elf, need + 8)? as usize;
            for _ in 0..u16_at(elf, need + 2)? {
                let name = c_str(elf, strtab + u32_at(elf, aux + 8)? as usize)?;
                if let Some(v) = name.strip_prefix("GLIBC_") {
                    let mut parts = v.split('.').map(|p| p.parse::<u32>());
                    if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
                        best = best.max(Some((major, minor)));
                    }
                }
                aux += u32_at(elf, aux + 12)? as usize;
            }
            let next = u32_at(elf, need + 12)? as usize;
            if next == 0 {
                break;
            }
            need += next;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let v = max_glibc_version(&me).unwrap();
        // A Rust test binary on a glibc system links against glibc; the version is at least 2.2.5.
        assert!(v.is_some_and(|v| v >= (2, 2)), "{v:?}");
    }

    #[test]
    fn refuses_non_elf() {
        assert!(max_glibc_version(b"#!/bin/sh\necho hi\n").is_err());
        assert!(max_glibc_version(b"\x7fELF\x02\x01").is_err());
    }
}
