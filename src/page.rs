//! The web page: the files of `www/`, embedded in the binary at build time
//! (see `build.rs`), or read from a folder with `--www DIR` for live editing.
//!
//! `index.html` is the chat page; `login.html` is the login form, a template
//! whose `{{name}}`, `{{next}}` and `{{error}}` are filled in (HTML-escaped)
//! by [`Page::login_form`]. `join.html`, the projector page, is one too:
//! [`Page::join_page`] puts the QR code and the address in it. Every other
//! file is served as is.
//!
//! A request path never reaches the file system unchecked: it must be a
//! plain relative path (no `..`, no `\`, no empty or hidden segment), and
//! in `--www` mode the resolved file must still be inside the folder
//! (symlinks included).

use crate::http::escape_html;
use std::borrow::Cow;
use std::path::PathBuf;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/www.rs"));
}

/// Where the page's files come from.
#[derive(Debug, Clone)]
pub enum Page {
    Embedded,
    /// A folder on disk (canonicalized at start).
    Folder(PathBuf),
}

impl Page {
    pub fn new(www: Option<PathBuf>) -> std::io::Result<Page> {
        match www {
            None => Ok(Page::Embedded),
            Some(dir) => {
                let dir = dir.canonicalize()?;
                if !dir.join("index.html").is_file() {
                    return Err(std::io::Error::other(format!(
                        "{} has no index.html",
                        dir.display()
                    )));
                }
                Ok(Page::Folder(dir))
            }
        }
    }

    /// The file at a request path like `/app.js`, with its content type.
    pub fn file(&self, path: &str) -> Option<(Cow<'static, [u8]>, &'static str)> {
        let relative = path.strip_prefix('/')?;
        let safe = !relative.is_empty()
            && !relative.contains('\\')
            && relative
                .split('/')
                .all(|seg| !seg.is_empty() && !seg.starts_with('.'));
        if !safe {
            return None;
        }
        let bytes = match self {
            Page::Embedded => embedded::FILES
                .iter()
                .find(|(name, _)| *name == relative)
                .map(|(_, b)| Cow::Borrowed(*b))?,
            Page::Folder(root) => {
                let file = root.join(relative).canonicalize().ok()?;
                if !file.starts_with(root) || !file.is_file() {
                    return None;
                }
                Cow::Owned(std::fs::read(file).ok()?)
            }
        };
        Some((bytes, content_type(relative)))
    }

    /// The login form with the name, the `next` path and a reason filled in.
    pub fn login_form(&self, name: &str, next: &str, error: &str) -> Vec<u8> {
        let template = self
            .file("/login.html")
            .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned());
        let template = template.unwrap_or_else(|| FALLBACK_LOGIN.to_string());
        template
            .replace("{{name}}", &escape_html(name))
            .replace("{{next}}", &escape_html(next))
            .replace("{{error}}", &escape_html(error))
            .into_bytes()
    }

    /// The projector page with the QR code (an SVG image, trusted: made by
    /// `qr.rs`) and the address (escaped) filled in. A `--www` folder
    /// without its own `join.html` gets the embedded one.
    pub fn join_page(&self, svg: &str, address: &str) -> Vec<u8> {
        let template = self
            .file("/join.html")
            .or_else(|| Page::Embedded.file("/join.html"))
            .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        template
            .replace("{{address}}", &escape_html(address))
            .replace("{{qr}}", svg)
            .into_bytes()
    }
}

/// Used when `www/` has no `login.html`: the server still works.
const FALLBACK_LOGIN: &str = r#"<!doctype html><meta charset="utf-8"><title>lanchat: log in</title>
<form method="post" action="/login"><p>{{error}}</p>
<input name="name" value="{{name}}" autofocus required maxlength="32">
<input type="hidden" name="next" value="{{next}}"><button>Join</button></form>"#;

fn content_type(path: &str) -> &'static str {
    match path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        let page = Page::Embedded;
        assert!(page.file("/index.html").is_some());
        for bad in [
            "/",
            "/../Cargo.toml",
            "/a/../index.html",
            "/.hidden",
            "//etc/passwd",
            "/a\\b",
            "index.html",
        ] {
            assert!(page.file(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn folder_mode_stays_inside() {
        let dir = std::env::temp_dir().join(format!("lanchat-page-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "hi").unwrap();
        std::fs::write(dir.join("sub/a.css"), "x").unwrap();
        let page = Page::new(Some(dir.clone())).unwrap();
        assert_eq!(
            page.file("/sub/a.css").unwrap().1,
            "text/css; charset=utf-8"
        );
        assert!(page.file("/sub/../index.html").is_none());
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink("/etc/hostname", dir.join("escape"));
            assert!(page.file("/escape").is_none());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn join_page_fills_in_the_code_and_escapes_the_address() {
        let html =
            String::from_utf8(Page::Embedded.join_page("<svg></svg>", "http://a<b")).unwrap();
        assert!(html.contains("<svg></svg>") && html.contains("http://a&lt;b"));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn login_form_escapes() {
        let html =
            String::from_utf8(Page::Embedded.login_form("<b>", "/x\"y", "too long")).unwrap();
        assert!(html.contains("&lt;b&gt;") && html.contains("/x&quot;y") && !html.contains("<b>"));
    }
}
