//! `lm`: the local model's CLI and daemon, and (when called through a symlink named after
//! a hook tool) the hook tool itself.

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if local_model::juju_exec::NAMES.contains(&name.as_str()) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(local_model::juju_exec::client_main(&name, &args));
    }
    if local_model::hooktools::TOOLS.contains(&name.as_str()) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(local_model::toolclient::main(&name, &args));
    }
    std::process::exit(local_model::cli::main());
}
