//! Files and photos: `POST /files` and `GET /files/FID[/NAME]`.
//!
//! An upload is the request body itself (not multipart), read here rather
//! than by `http.rs`: it may be megabytes, so it gets its own cap
//! (`--max-upload`, `413` before a byte of body is read when
//! `Content-Length` says more) and its own deadline ([`UPLOAD_GRACE`] plus
//! the time the body takes at [`UPLOAD_MIN_BYTES_PER_SEC`]), so a slow or
//! oversized upload costs at most its cap in memory and a bounded time,
//! and the 10 s head timeout still holds for every request.
//!
//! A file is kept in the store (memory, or Redis for every server of the
//! chat), `--files-cap` MiB in all, oldest out first. It is kept and served
//! as one `Arc<[u8]>`: thirty people downloading it share one copy.
//!
//! Serving is what keeps an uploaded file from ever running in the chat's
//! origin: `X-Content-Type-Options: nosniff` and `Content-Security-Policy:
//! sandbox` always; a PNG, JPEG, GIF or WebP whose first bytes say so is
//! served inline as that image; anything else (HTML, SVG, ...) as
//! `application/octet-stream` with `Content-Disposition: attachment`.
//!
//! Concurrency rule: the per-session upload counts are a map behind one
//! mutex, held to count; the upload itself holds no lock.

use crate::http::{Body, Request, Response};
use crate::hub::Hub;
use crate::protocol::FileRef;
use crate::rate::RateLimits;
use crate::session;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Time an upload gets before its body must flow at the minimum rate.
pub const UPLOAD_GRACE: Duration = Duration::from_secs(5);
/// Slowest an upload may be, on average, past the grace: 16 KiB/s (a
/// 10 MiB photo over a poor Wi-Fi link still makes it in ~11 minutes).
pub const UPLOAD_MIN_BYTES_PER_SEC: u64 = 16 * 1024;
/// Uploads a session may make: 10 a minute.
pub const UPLOADS_PER_MINUTE: f64 = 10.0;
/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;
/// How long one write of a download may block: a reader that stops
/// reading does not pin its thread for ever.
const DOWNLOAD_WRITE_WAIT: Duration = Duration::from_secs(30);

/// The limits of uploads, from the flags.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    /// Largest upload, in bytes (0: uploads are off).
    pub max_upload: u64,
    /// Bytes of files kept in all.
    pub cap: u64,
}

/// Uploads per session.
pub struct UploadCounts(RateLimits<String>);

impl Default for UploadCounts {
    fn default() -> Self {
        UploadCounts(RateLimits::new(
            UPLOADS_PER_MINUTE / 60.0,
            UPLOADS_PER_MINUTE,
        ))
    }
}

/// `POST /files`: reads the body from `socket` (`already` holds what came
/// with the head) and keeps it: `201` with the file's description.
pub fn upload(
    request: &Request,
    already: Vec<u8>,
    socket: &mut TcpStream,
    hub: &Hub,
    limits: FileLimits,
    counts: &UploadCounts,
    host_key: &str,
) -> Response {
    let Some(session) = session::authenticate(request, hub.store()) else {
        return Response::text(401, "log in first");
    };
    let host = session::is_host(request, host_key);
    if limits.max_upload == 0 || (!host && !hub.uploads_allowed()) {
        return Response::text(403, "uploads are off");
    }
    let Some(length) = request
        .header("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok())
    else {
        return Response::text(411, "an upload needs a Content-Length");
    };
    if length > limits.max_upload {
        let mib = limits.max_upload / (1024 * 1024);
        return Response::text(413, &format!("the file is larger than {mib} MiB"));
    }
    if !counts.0.allow(&session.id) {
        let why = format!("at most {UPLOADS_PER_MINUTE} uploads a minute");
        return Response::text(429, &why);
    }
    let bytes = match read_body(socket, already, length) {
        Some(bytes) => bytes,
        None => return Response::text(408, "the upload was too slow"),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let name = file_name(request.header("x-filename").unwrap_or(""));
    let kind = request
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .trim()
        .to_string();
    let url = format!(
        "/files/{id}/{}",
        percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
    );
    let file = FileRef {
        id,
        name,
        size: length,
        kind,
        url,
    };
    hub.store().put_file(&file, bytes.into(), limits.cap);
    log::info!(
        "{:?} uploaded {:?} ({length} bytes)",
        session.name,
        file.name
    );
    Response::json(201, &serde_json::to_value(&file).expect("files serialize"))
}

/// The body: `length` bytes, within the upload's deadline; `None` if it
/// is late or ends early.
fn read_body(socket: &mut TcpStream, mut body: Vec<u8>, length: u64) -> Option<Vec<u8>> {
    let deadline =
        Instant::now() + UPLOAD_GRACE + Duration::from_secs(length / UPLOAD_MIN_BYTES_PER_SEC);
    body.truncate(length as usize);
    body.reserve(length as usize - body.len());
    let mut chunk = vec![0u8; 64 * 1024];
    while (body.len() as u64) < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        let want = chunk.len().min(length as usize - body.len());
        match socket.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(body)
}

/// Most of a refused upload's body read (and thrown away) before closing,
/// and for how long at most: closing with unread bytes makes TCP send a
/// reset, which can destroy the refusal before the browser reads it.
const DRAIN_REFUSED_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_REFUSED_WAIT: Duration = Duration::from_secs(10);

/// After a refusal of `request` (written already; `read` bytes of its
/// body came with the head): reads what the client is still sending of
/// its body, within the bounds above.
pub fn drain_refused(request: &Request, read: u64, socket: &mut TcpStream) {
    let announced = request
        .header("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_sub(read)
        .min(DRAIN_REFUSED_BYTES);
    let deadline = Instant::now() + DRAIN_REFUSED_WAIT;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut drained = 0;
    while drained < announced {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n as u64,
        }
    }
}

/// The name from `X-Filename` (percent-encoded UTF-8), made safe to show
/// and to put in a header: no path, no control characters, not too long.
fn file_name(raw: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(raw.trim()).decode_utf8_lossy();
    let base = decoded.rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(MAX_NAME_CHARS)
        .collect();
    match name.trim() {
        "" => "file".to_string(),
        name => name.to_string(),
    }
}

/// `GET /files/FID` or `/files/FID/ANY`.
pub fn download(request: &Request, hub: &Hub, socket: &TcpStream) -> Response {
    if session::authenticate(request, hub.store()).is_none() {
        return Response::text(401, "log in first");
    }
    let id = request
        .path
        .trim_start_matches("/files/")
        .split('/')
        .next()
        .unwrap_or("");
    let (Some(file), Some(bytes)) = (hub.store().file_meta(id), hub.store().file(id)) else {
        return Response::text(404, "no such file (it may have been removed to make room)");
    };
    let _ = socket.set_write_timeout(Some(DOWNLOAD_WRITE_WAIT));
    // Megabytes to write: the chat's threads go first.
    crate::names::lower_priority();
    let response = match image_type(&bytes) {
        Some(image) => Response::new(200, image, Vec::new()),
        None => {
            let name = percent_encoding::utf8_percent_encode(
                &file.name,
                percent_encoding::NON_ALPHANUMERIC,
            );
            Response::new(200, "application/octet-stream", Vec::new()).with_header(
                "Content-Disposition",
                format!("attachment; filename*=UTF-8''{name}"),
            )
        }
    };
    Response {
        body: Body::Shared(bytes),
        ..response
    }
    .with_header("Content-Security-Policy", "sandbox")
    .with_header("Cache-Control", "private, max-age=86400")
}

/// The image type the first bytes say, for the four kinds shown inline.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(image_type(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(image_type(b"GIF89a.."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg xmlns=..."), None);
        assert_eq!(image_type(b"<html>"), None);
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(file_name("photo.jpg"), "photo.jpg");
        assert_eq!(file_name("..%2F..%2Fetc%2Fpasswd"), "passwd");
        assert_eq!(file_name("a%0Ab%22c.txt"), "abc.txt");
        assert_eq!(file_name("%C3%A9t%C3%A9.png"), "été.png");
        assert_eq!(file_name(""), "file");
    }
}
