//! Packing a charm crate into a `.charm` file, and checking a `.charm` the way Juju and
//! charmcraft would before deploying it.
//!
//! A `.charm` is a zip (reference/juju-runtime.md §4.1): metadata.yaml, config.yaml,
//! actions.yaml, manifest.yaml with the Ubuntu bases, `dispatch` (here: the compiled charm
//! binary itself, mode 0755 inside the zip), README.md, icon.svg, LICENSE and a version file.

mod bundle;
mod check;
mod elf;

pub use bundle::check_bundle;
pub use check::{check_archive, check_spec, Finding, Severity};
pub use elf::max_glibc_version;

use crate::spec::CharmSpec;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

/// The Ubuntu bases every charm of this project runs on.
pub const BASES: [&str; 2] = ["22.04", "24.04"];

/// The newest glibc the binary may need: Ubuntu 22.04 ships 2.35.
pub const MAX_GLIBC: (u32, u32) = (2, 35);

/// What to put in the `.charm` besides the charm directory's own files.
#[derive(Debug, Clone)]
pub struct PackInput {
    /// The charm's directory (metadata.yaml, config.yaml, actions.yaml, README.md, icon.svg).
    pub charm_dir: PathBuf,
    /// The compiled charm binary, packed as `dispatch`.
    pub binary: PathBuf,
    /// The LICENSE file to include.
    pub license: PathBuf,
    /// The version string for the `version` file.
    pub version: String,
}

/// Renders manifest.yaml: the bases Juju selects from, and charmcraft's analysis attributes.
pub fn manifest_yaml() -> String {
    let mut s = String::from(
        "charmcraft-version: 3.0.0\ncharmcraft-started-at: '1970-01-01T00:00:00+00:00'\nbases:\n",
    );
    for b in BASES {
        s.push_str(&format!(
            "- name: ubuntu\n  channel: '{b}'\n  architectures:\n  - amd64\n"
        ));
    }
    s.push_str("analysis:\n  attributes:\n  - name: language\n    result: unknown\n  - name: framework\n    result: unknown\n");
    s
}

/// Packs `input` into the `.charm` at `out`, after checking the charm's declarations and the
/// binary's glibc needs. Returns the findings that did not stop packing (warnings).
pub fn pack(input: &PackInput, out: &Path) -> Result<Vec<Finding>, String> {
    let spec = CharmSpec::load(&input.charm_dir)?;
    let mut findings = check_spec(&spec);
    let binary =
        std::fs::read(&input.binary).map_err(|e| format!("{}: {e}", input.binary.display()))?;
    match max_glibc_version(&binary) {
        Ok(Some(v)) if v > MAX_GLIBC => findings.push(Finding::error(format!(
            "dispatch needs GLIBC_{}.{}, newer than Ubuntu 22.04's {}.{}",
            v.0, v.1, MAX_GLIBC.0, MAX_GLIBC.1
        ))),
        Ok(_) => {}
        Err(e) => findings.push(Finding::error(format!(
            "dispatch is not a readable ELF binary: {e}"
        ))),
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        return Err(findings
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n"));
    }
    let read = |name: &str| std::fs::read(input.charm_dir.join(name)).ok();
    let mut entries: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for name in [
        "metadata.yaml",
        "config.yaml",
        "actions.yaml",
        "README.md",
        "icon.svg",
    ] {
        if let Some(content) = read(name) {
            entries.push((name.to_string(), content, 0o644));
        }
    }
    let license =
        std::fs::read(&input.license).map_err(|e| format!("{}: {e}", input.license.display()))?;
    entries.push(("LICENSE".into(), license, 0o644));
    entries.push(("manifest.yaml".into(), manifest_yaml().into_bytes(), 0o644));
    entries.push((
        "version".into(),
        format!("{}\n", input.version).into_bytes(),
        0o644,
    ));
    entries.push(("dispatch".into(), binary, 0o755));
    write_zip(out, &entries)?;
    Ok(findings)
}

fn write_zip(out: &Path, entries: &[(String, Vec<u8>, u32)]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    let tmp = out.with_extension("charm.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| err(&e))?;
    let mut zip = zip::ZipWriter::new(file);
    for (name, content, mode) in entries {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        zip.start_file(name.as_str(), opts).map_err(|e| err(&e))?;
        zip.write_all(content).map_err(|e| err(&e))?;
    }
    zip.finish().map_err(|e| err(&e))?;
    std::fs::rename(&tmp, out).map_err(|e| err(&e))
}

/// The files of a `.charm`: name → (content, unix mode).
pub type ArchiveFiles = std::collections::BTreeMap<String, (Vec<u8>, Option<u32>)>;

/// Reads every file of a `.charm`.
pub fn read_archive(path: &Path) -> Result<ArchiveFiles, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| err(&e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| err(&e))?;
    let mut out = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| err(&e))?;
        let mode = f.unix_mode();
        let name = f.name().map_err(|e| err(&e))?.to_string();
        let mut content = Vec::new();
        f.read_to_end(&mut content).map_err(|e| err(&e))?;
        out.insert(name, (content, mode));
    }
    Ok(out)
}
