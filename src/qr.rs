//! QR codes of the chat's address: drawn in the terminal at start, and as
//! SVG for `/join` and `/join.svg`.
//!
//! The `qrcode` crate computes the modules (the black and white squares);
//! this module only draws them, two ways:
//! - [`Code::to_terminal`]: Unicode half blocks. A character cell is about
//!   twice as tall as it is wide, so each cell shows two modules, one above
//!   the other: `█` both dark, `▀` top only, `▄` bottom only, space neither.
//!   The code comes out square, and half as tall as with one row per line.
//! - [`Code::to_svg`]: one `<path>` of dark runs, which scales to any
//!   screen without blurring (`shape-rendering="crispEdges"`).
//!
//! Concurrency rule: none; a [`Code`] is plain data.

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, in modules. The QR standard asks for 4;
/// scanners find the code by its edge, and a busy terminal or page right
/// next to it can hide the finder patterns.
pub const QUIET_ZONE: usize = 4;

/// Error correction: `M` recovers 15 % of the modules, enough for glare on
/// a projector or a phone screen held at an angle, and keeps the code of a
/// URL like `http://192.168.100.200:8000/` at 29 × 29 modules.
const ERROR_CORRECTION: EcLevel = EcLevel::M;

/// The modules of one QR code, without the quiet zone.
#[derive(Debug, Clone)]
pub struct Code {
    width: usize,
    dark: Vec<bool>,
}

impl Code {
    /// Encodes `text` (bytes as they are: a URL stays lowercase, so it
    /// decodes to exactly what it was). `None` when it is too long for a QR
    /// code (about 2,300 bytes at this error correction).
    pub fn new(text: &str) -> Option<Code> {
        let code = QrCode::with_error_correction_level(text, ERROR_CORRECTION).ok()?;
        let dark = code
            .to_colors()
            .into_iter()
            .map(|color| color == Color::Dark)
            .collect();
        Some(Code {
            width: code.width(),
            dark,
        })
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at (`x`, `y`) is dark; coordinates count the
    /// quiet zone, and anything outside the code is light.
    fn is_dark(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    /// The code as lines of half blocks, quiet zone included, dark modules
    /// drawn. `colors`: wrap each line in ANSI codes for black on white, so
    /// the code reads the right way round on a dark terminal too (a
    /// scanner wants dark modules on a light ground); without them (a file,
    /// a pipe), the text relies on a light background.
    pub fn to_terminal(&self, colors: bool) -> String {
        const BLACK_ON_WHITE: &str = "\x1b[30;107m";
        const RESET: &str = "\x1b[0m";
        let side = self.width + 2 * QUIET_ZONE;
        let mut out = String::new();
        for y in (0..side).step_by(2) {
            if colors {
                out.push_str(BLACK_ON_WHITE);
            }
            for x in 0..side {
                // The last row pair of an odd side has no bottom: light.
                out.push(match (self.is_dark(x, y), self.is_dark(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            if colors {
                out.push_str(RESET);
            }
            out.push('\n');
        }
        out
    }

    /// The code as an SVG image, quiet zone included: a white square and
    /// one path with a rectangle per horizontal run of dark modules, in
    /// module units (`viewBox`), so it fills whatever box it is put in.
    pub fn to_svg(&self) -> String {
        let side = self.width + 2 * QUIET_ZONE;
        let mut path = String::new();
        for y in 0..side {
            let mut x = 0;
            while x < side {
                if !self.is_dark(x, y) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < side && self.is_dark(x, y) {
                    x += 1;
                }
                let run = x - start;
                path.push_str(&format!("M{start} {y}h{run}v1h-{run}z"));
            }
        }
        format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" "#,
                r#"shape-rendering="crispEdges" role="img" aria-label="QR code">"#,
                r##"<rect width="{side}" height="{side}" fill="#fff"/>"##,
                r##"<path fill="#000" d="{path}"/></svg>"##
            ),
            side = side,
            path = path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_rows_pair_modules() {
        let code = Code::new("http://192.168.1.23:8000/").unwrap();
        let side = code.width() + 2 * QUIET_ZONE;
        let text = code.to_terminal(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        assert!(lines.iter().all(|line| line.chars().count() == side));
        // The quiet zone: two blank lines on top, then the finder pattern
        // after 4 blank columns: its dark top edge over its light ring.
        assert!(lines[0].chars().all(|c| c == ' '));
        assert!(lines[2].starts_with("    █▀▀▀▀▀█ "), "{:?}", lines[2]);
        assert!(code.to_terminal(true).starts_with("\x1b[30;107m"));
    }

    #[test]
    fn svg_runs_cover_every_dark_module() {
        let code = Code::new("http://lanchat.local:8000/").unwrap();
        let svg = code.to_svg();
        let dark: usize = code.dark.iter().filter(|d| **d).count();
        let drawn: usize = svg
            .split('M')
            .skip(1)
            .map(|run| run.split('h').nth(1).unwrap().split('v').next().unwrap())
            .map(|n| n.parse::<usize>().unwrap())
            .sum();
        assert_eq!(drawn, dark);
    }

    #[test]
    fn too_long_is_none() {
        assert!(Code::new(&"x".repeat(5000)).is_none());
    }
}
