//! The compiled site (the WebAssembly, its JavaScript, the stylesheet) as the browser
//! gets it: read once at start, from the copy built into the binary (cargo feature
//! `embed-site`, which `.ci/release` turns on) or from a directory on disk (`site_root`,
//! for development), and kept in memory.
//!
//! Pages ask for each file under a name that carries a hash of the whole bundle
//! (`/pkg/portcullis.<hash>.wasm`): those answers may be cached for a year, because a new
//! build has a new name. The plain names (`/pkg/portcullis.css`, which the plain pages
//! use) are revalidated (`no-cache` with an `ETag`). A file built with a `.br` or `.gz`
//! beside it (`cargo leptos build --release --precompress`) goes out compressed to a
//! browser that accepts it, with `Content-Encoding` and `Vary: Accept-Encoding`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name cargo-leptos gives the bundle (`output-name` in `Cargo.toml`).
const STEM: &str = "portcullis";
const A_YEAR: &str = "public, max-age=31536000, immutable";

#[cfg(feature = "embed-site")]
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_site.rs"));
}

/// One file, with the compressed copies built beside it.
struct Asset {
    body: Bytes,
    br: Option<Bytes>,
    gzip: Option<Bytes>,
    /// Of the uncompressed content; each encoding adds its suffix.
    etag: String,
}

pub struct Site {
    /// Paths under the site root, `pkg/portcullis.wasm`.
    files: BTreeMap<String, Asset>,
    /// Of every file's content: part of the names pages use.
    hash: String,
    /// Where the files came from, for the log.
    pub origin: String,
}

impl Site {
    /// The site built into this binary if it has one, unless `site_root` overrides it;
    /// else the directory `site_root`, `LEPTOS_SITE_ROOT` or `target/site`. A directory
    /// that is missing gives an empty site (pages work, without styles or WebAssembly).
    pub fn load(site_root: Option<&str>) -> std::io::Result<Site> {
        if let (None, Some(site)) = (site_root, Site::embedded()) {
            return Ok(site);
        }
        let dir = site_root
            .map(str::to_owned)
            .or_else(|| std::env::var("LEPTOS_SITE_ROOT").ok())
            .unwrap_or_else(|| "target/site".into());
        let mut files = Vec::new();
        read_dir(std::path::Path::new(&dir), "", &mut files)?;
        Ok(Site::from_files(files, dir))
    }

    /// A site of the given files (path under the root, content): `x.br` and `x.gz` are
    /// taken as `x` compressed.
    pub fn from_files(files: impl IntoIterator<Item = (String, Bytes)>, origin: String) -> Site {
        let mut plain = BTreeMap::new();
        let mut compressed = Vec::new();
        for (path, body) in files {
            if let Some(base) = path.strip_suffix(".br") {
                compressed.push((base.to_owned(), true, body));
            } else if let Some(base) = path.strip_suffix(".gz") {
                compressed.push((base.to_owned(), false, body));
            } else if !path.ends_with(".d.ts") {
                plain.insert(path, body);
            }
        }
        let mut bundle = Sha256::new();
        let mut files = BTreeMap::new();
        for (path, body) in plain {
            let digest = hex::encode(Sha256::digest(&body));
            bundle.update(path.as_bytes());
            bundle.update(digest.as_bytes());
            let etag = format!("\"{}\"", &digest[..20]);
            files.insert(
                path,
                Asset {
                    body,
                    br: None,
                    gzip: None,
                    etag,
                },
            );
        }
        for (base, br, body) in compressed {
            if let Some(asset) = files.get_mut(&base) {
                if br {
                    asset.br = Some(body);
                } else {
                    asset.gzip = Some(body);
                }
            }
        }
        let hash = hex::encode(bundle.finalize())[..16].to_owned();
        Site {
            files,
            hash,
            origin,
        }
    }

    /// The site built into this binary (`embed-site`), if it has one.
    pub fn embedded() -> Option<Site> {
        #[cfg(feature = "embed-site")]
        {
            let files = embedded::FILES
                .iter()
                .map(|(path, body)| (path.to_string(), Bytes::from_static(body)));
            Some(Site::from_files(files, "built into the binary".into()))
        }
        #[cfg(not(feature = "embed-site"))]
        None
    }

    /// One line for `portcullis version`: the bundle's name and its WebAssembly's sizes.
    pub fn describe(&self) -> String {
        let wasm = self.find(&format!("pkg/{STEM}.wasm"));
        let size = |b: &Option<Bytes>, what: &str| {
            b.as_ref()
                .map(|b| format!(", {} {what}", b.len()))
                .unwrap_or_default()
        };
        match wasm {
            Some(w) => format!(
                "{}: {} files, WebAssembly {} bytes{}{}",
                self.output_name(),
                self.files.len(),
                w.body.len(),
                size(&w.br, "with brotli"),
                size(&w.gzip, "with gzip"),
            ),
            None => "no WebAssembly".into(),
        }
    }

    pub fn empty() -> Site {
        Site::from_files([], "none".into())
    }

    /// The bundle's name as pages ask for it: `portcullis.<hash>` (the output name given
    /// to Leptos), or `portcullis` for a site with no files.
    pub fn output_name(&self) -> String {
        if self.has_bundle() {
            format!("{STEM}.{}", self.hash)
        } else {
            STEM.to_owned()
        }
    }

    /// Whether the WebAssembly is there (else pages load without it and without CSS).
    pub fn has_bundle(&self) -> bool {
        self.find(&format!("pkg/{STEM}.wasm")).is_some()
    }

    fn find(&self, path: &str) -> Option<&Asset> {
        self.files.get(path).or_else(|| {
            // wasm-bindgen's own name, or cargo-leptos' one: either is the bundle's.
            let other = match path.strip_suffix("_bg.wasm") {
                Some(stem) => format!("{stem}.wasm"),
                None => format!("{}_bg.wasm", path.strip_suffix(".wasm")?),
            };
            self.files.get(&other)
        })
    }

    /// The file a `/pkg/...` path names, and whether the name carried this build's hash.
    /// A hash of another build is not this build's file: not found.
    fn resolve(&self, path: &str) -> Option<(&Asset, bool)> {
        let marked = format!("{STEM}.{}", self.hash);
        let name = path.rsplit('/').next().unwrap_or(path);
        if let Some(rest) = name.strip_prefix(&marked) {
            let dir = &path[..path.len() - name.len()];
            return self.find(&format!("{dir}{STEM}{rest}")).map(|a| (a, true));
        }
        if is_hashed_elsewhere(name) {
            return None;
        }
        self.find(path).map(|a| (a, false))
    }
}

/// `portcullis.<16 hex>.<ext>` of some other build.
fn is_hashed_elsewhere(name: &str) -> bool {
    name.strip_prefix(STEM)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.get(..16).zip(r.get(16..)))
        .is_some_and(|(h, rest)| {
            h.bytes().all(|b| b.is_ascii_hexdigit())
                && (rest.starts_with('.') || rest.starts_with('_'))
        })
}

fn read_dir(
    dir: &std::path::Path,
    prefix: &str,
    out: &mut Vec<(String, Bytes)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        if entry.file_type()?.is_dir() {
            read_dir(&entry.path(), &format!("{path}/"), out)?;
        } else {
            out.push((path, std::fs::read(entry.path())?.into()));
        }
    }
    Ok(())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "ico" => "image/x-icon",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

/// Which of `br` and `gzip` the request accepts (`q=0` refuses).
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
}

/// `GET /pkg/{*file}` (and `/favicon.ico`).
pub(super) async fn site_file(
    State(site): State<Arc<Site>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer(&site, &format!("pkg/{file}"), &headers)
}

pub(super) async fn favicon(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    answer(&site, "favicon.ico", &headers)
}

fn answer(site: &Site, path: &str, headers: &HeaderMap) -> Response {
    let Some((asset, hashed)) = site.resolve(path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let (body, encoding) = match (&asset.br, &asset.gzip) {
        (Some(br), _) if accepts(headers, "br") => (br.clone(), Some("br")),
        (_, Some(gz)) if accepts(headers, "gzip") => (gz.clone(), Some("gzip")),
        _ => (asset.body.clone(), None),
    };
    let etag = match encoding {
        Some(e) => format!("{}-{e}\"", asset.etag.trim_end_matches('"')),
        None => asset.etag.clone(),
    };
    let cache = if hashed { A_YEAR } else { "no-cache" };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(Body::from(body));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        if let Some(e) = encoding {
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        res
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site::from_files(
            [
                (
                    "pkg/portcullis.wasm".to_owned(),
                    Bytes::from_static(b"wasm"),
                ),
                (
                    "pkg/portcullis.wasm.br".to_owned(),
                    Bytes::from_static(b"br"),
                ),
                ("pkg/portcullis.js".to_owned(), Bytes::from_static(b"js")),
                ("pkg/portcullis.d.ts".to_owned(), Bytes::from_static(b"ts")),
            ],
            "test".into(),
        )
    }

    #[test]
    fn hashed_names_resolve_to_this_build_only() {
        let s = site();
        let name = s.output_name();
        assert!(name.starts_with("portcullis.") && name.len() == "portcullis.".len() + 16);
        assert!(s.resolve(&format!("pkg/{name}.wasm")).unwrap().1);
        assert!(
            s.resolve(&format!("pkg/{name}_bg.wasm")).unwrap().1,
            "wasm-bindgen's name"
        );
        assert!(!s.resolve("pkg/portcullis.js").unwrap().1);
        assert!(
            s.resolve("pkg/portcullis.0123456789abcdef.js").is_none(),
            "another build"
        );
        assert!(s.resolve("pkg/portcullis.d.ts").is_none());
        assert!(s.resolve("pkg/portcullis.css").is_none());
        let other = Site::from_files(
            [(
                "pkg/portcullis.wasm".to_owned(),
                Bytes::from_static(b"wasm2"),
            )],
            "test".into(),
        );
        assert_ne!(other.output_name(), name, "new content, new name");
        assert_eq!(Site::empty().output_name(), "portcullis");
    }

    #[test]
    fn encodings_follow_accept_encoding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br;q=0.9"),
        );
        assert!(accepts(&h, "br") && accepts(&h, "gzip") && !accepts(&h, "zstd"));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=0, gzip"),
        );
        assert!(!accepts(&h, "br"));
    }
}
