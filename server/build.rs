//! With the `embed-site` feature, writes `embedded_site.rs`: every file of the compiled
//! site (`PORTCULLIS_SITE_DIR`, else `LEPTOS_SITE_ROOT` as cargo-leptos passes it, else
//! `target/site-release` in the workspace) as `include_bytes!`, so the binary carries
//! it. Without the feature it does nothing (and never runs again).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_EMBED_SITE").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=PORTCULLIS_SITE_DIR");
    println!("cargo:rerun-if-env-changed=LEPTOS_SITE_ROOT");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("PORTCULLIS_SITE_DIR")
        .or_else(|| std::env::var_os("LEPTOS_SITE_ROOT"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/site-release"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        workspace.join(dir)
    };
    let mut files = Vec::new();
    walk(&dir, "", &mut files);
    files.sort();
    if !files.iter().any(|(name, _)| name.ends_with(".wasm")) {
        panic!(
            "embed-site: no compiled site (no .wasm) in {}: build it first (`.ci/release` does)",
            dir.display()
        );
    }
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut out = String::from("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        out.push_str(&format!("    ({name:?}, include_bytes!({path:?})),\n"));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_site.rs");
    std::fs::write(target, out).expect("write embedded_site.rs");
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if path.is_dir() {
            walk(&path, &format!("{name}/"), out);
        } else if !name.ends_with(".d.ts") {
            let abs = path.canonicalize().unwrap_or(path);
            out.push((name, abs.to_string_lossy().into_owned()));
        }
    }
}
