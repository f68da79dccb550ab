//! The QR code of the `otpauth://` URI that the authenticator app scans (Sonar step 4, "reveal a
//! QR code"), as an SVG string the page puts inline. Pure: the same URI always gives the same picture.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use crate::flows::UserFacing;

/// Side of the picture in pixels at least; the SVG scales, this only sets its natural size.
const MIN_SIZE: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// More than a QR code holds at level M (about 2,300 characters); an otpauth URI is ~150.
    #[error("too long for a QR code")]
    TooLong,
}

impl UserFacing for QrError {
    fn code(&self) -> &'static str {
        "qr_too_long"
    }
    fn message(&self) -> String {
        "The QR code could not be drawn. Enter the key by hand instead.".into()
    }
}

/// `data` as a QR code in SVG: error correction level M (15%, the usual choice for screens, which
/// do not get dirty), with the standard four-module quiet zone so phone cameras find the edges,
/// black on white whatever the page's colours. The XML declaration is left out so the string can go
/// straight into an HTML page; it is still a complete SVG document on its own.
pub fn svg(data: &str) -> Result<String, QrError> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)?;
    let image = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .min_dimensions(MIN_SIZE, MIN_SIZE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Ok(match image.find("<svg") {
        Some(start) => image[start..].to_owned(),
        None => image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::LoginName;
    use crate::two_factor::totp::{otpauth_uri, TotpSecret};

    /// Draws the SVG `svg()` makes (a white rectangle and one black path of `M x y h w v h H x V y`
    /// rectangles) as a greyscale PGM image. Strict about that shape, so a change in the renderer
    /// fails here instead of silently testing something else.
    fn rasterize(svg: &str) -> (u32, u32, Vec<u8>) {
        let attr = |name: &str| -> u32 {
            let start = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            svg[start..].split('"').next().unwrap().parse().unwrap()
        };
        let (width, height) = (attr("width"), attr("height"));
        let mut pixels = vec![255u8; (width * height) as usize];
        let path_start = svg.find(r##"<path fill="#000000" d=""##).unwrap() + r##"<path fill="#000000" d=""##.len();
        let path = svg[path_start..].split('"').next().unwrap();
        for rect in path.split('M').filter(|r| !r.is_empty()) {
            let nums: Vec<u32> = rect.split(|c: char| " hvHV".contains(c)).map(|n| n.parse().unwrap()).collect();
            let [x, y, w, h, x2, y2] = nums[..] else { panic!("unexpected path segment {rect:?}") };
            assert_eq!((x, y), (x2, y2), "a closed rectangle");
            for row in y..y + h {
                for col in x..x + w {
                    pixels[(row * width + col) as usize] = 0;
                }
            }
        }
        (width, height, pixels)
    }

    fn sample_uri() -> String {
        let login = LoginName::parse("101@organization.com").unwrap();
        otpauth_uri(&TotpSecret::generate(), "Acme Phones", &login)
    }

    #[test]
    fn an_svg_with_a_quiet_zone() {
        let svg = svg(&sample_uri()).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.ends_with("</svg>"));
        let (width, height, pixels) = rasterize(&svg);
        assert!(width >= MIN_SIZE && width == height);
        // The four-module quiet zone: the outer rows and columns are white.
        let margin = width / 20;
        for i in 0..width {
            for j in 0..margin {
                assert_eq!(pixels[(j * width + i) as usize], 255);
                assert_eq!(pixels[(i * width + j) as usize], 255);
            }
        }
        assert!(pixels.contains(&0));
    }

    #[test]
    fn too_much_data_is_an_error_not_a_panic() {
        assert_eq!(svg(&"x".repeat(5000)), Err(QrError::TooLong));
    }

    /// `zbarimg` (an independent decoder) reads the picture back as the URI it was made from.
    #[test]
    fn zbarimg_reads_back_the_uri() {
        let Some(zbarimg) = crate::two_factor::test_tool("zbarimg", "zbar-tools") else { return };
        let uri = sample_uri();
        let (width, height, pixels) = rasterize(&svg(&uri).unwrap());
        let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
        pgm.extend_from_slice(&pixels);
        let file = std::env::temp_dir().join(format!("latchkey-qr-{}.pgm", std::process::id()));
        std::fs::write(&file, pgm).unwrap();
        let output = std::process::Command::new(zbarimg).args(["--quiet", "--raw"]).arg(&file).output().unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(output.status.success(), "zbarimg failed: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end_matches('\n'), uri);
    }
}
