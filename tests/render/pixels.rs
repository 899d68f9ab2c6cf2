//! Decoding the server's images (PNG, JPEG) with the `image` crate and comparing them with the
//! expected pixels, sample by sample.

use image::{ColorType, DynamicImage};

use crate::expect::Expected;

/// What an image answer decoded to, with the format it turned out to be.
pub struct Decoded {
    pub format: image::ImageFormat,
    pub image: DynamicImage,
}

pub fn decode(body: &[u8]) -> Result<Decoded, String> {
    let format = image::guess_format(body).map_err(|e| {
        format!(
            "not an image ({e}); starts with {:02x?}",
            &body[..body.len().min(16)]
        )
    })?;
    let image = image::load_from_memory_with_format(body, format)
        .map_err(|e| format!("{format:?} that does not decode: {e}"))?;
    let eight_bit = matches!(
        image.color(),
        ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8
    );
    if !eight_bit {
        return Err(format!("not an 8-bit image: {:?}", image.color()));
    }
    Ok(Decoded { format, image })
}

/// Compares `got` with `want`: a grey expectation matches a grey image, or a colour image
/// whose three channels all hold it.
pub fn compare(
    got: &DynamicImage,
    want: &Expected,
    max_diff: u8,
    mean_diff: Option<f64>,
) -> Result<(), String> {
    if (got.width(), got.height()) != (want.cols, want.rows) {
        return Err(format!(
            "{}x{} image, expected {}x{} (columns x rows)",
            got.width(),
            got.height(),
            want.cols,
            want.rows
        ));
    }
    if want.channels == 3 && !got.color().has_color() {
        return Err(format!("a {:?} image for a colour one", got.color()));
    }
    let rgb = got.to_rgb8();
    let mut stats = Stats::default();
    for (x, y, pixel) in rgb.enumerate_pixels() {
        for (c, &sample) in pixel.0.iter().enumerate() {
            let index = (y * want.cols + x) as usize * want.channels as usize;
            let expected = if want.channels == 3 {
                want.samples[index + c]
            } else {
                want.samples[index]
            };
            stats.add(sample, expected, (x, y, c));
        }
    }
    stats.verdict(max_diff, mean_diff)
}

/// Differences over a whole image.
struct Stats {
    /// How many samples differ by each amount.
    histogram: [u64; 256],
    /// (difference, got, expected, (x, y, channel)) of the first worst sample.
    worst: (u8, u8, u8, (u32, u32, usize)),
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            histogram: [0; 256],
            worst: (0, 0, 0, (0, 0, 0)),
        }
    }
}

impl Stats {
    fn add(&mut self, got: u8, expected: u8, at: (u32, u32, usize)) {
        let diff = got.abs_diff(expected);
        self.histogram[diff as usize] += 1;
        if diff > self.worst.0 {
            self.worst = (diff, got, expected, at);
        }
    }

    fn verdict(&self, max_diff: u8, mean_diff: Option<f64>) -> Result<(), String> {
        let count: u64 = self.histogram.iter().sum();
        let sum: u64 = (0..256u64).map(|d| d * self.histogram[d as usize]).sum();
        let mean = sum as f64 / count.max(1) as f64;
        let over: u64 = self.histogram[max_diff as usize + 1..].iter().sum();
        if over > 0 || mean_diff.is_some_and(|limit| mean > limit) {
            let (diff, got, expected, (x, y, c)) = self.worst;
            return Err(format!(
                "pixels differ: {over} of {count} samples by more than {max_diff}, mean \
                 |diff| {mean:.2}{}; worst {diff} at x={x} y={y} channel {c}: got {got}, \
                 expected {expected}",
                mean_diff.map_or(String::new(), |m| format!(" (allowed {m})")),
            ));
        }
        Ok(())
    }
}

/// The mean absolute difference between `got` and `want` shrunk to `got`'s size by averaging
/// boxes of source pixels: for resized answers, where the server's filter is its own choice
/// but a flip or a wrong aspect is far off.
pub fn mean_diff_to_shrunk(got: &DynamicImage, want: &Expected) -> f64 {
    let (w, h) = (got.width(), got.height());
    let rgb = got.to_rgb8();
    let channels = want.channels as usize;
    let mut sum = 0.0;
    for (x, y, pixel) in rgb.enumerate_pixels() {
        let (x0, x1) = (
            x * want.cols / w,
            ((x + 1) * want.cols / w).max(x * want.cols / w + 1),
        );
        let (y0, y1) = (
            y * want.rows / h,
            ((y + 1) * want.rows / h).max(y * want.rows / h + 1),
        );
        for (c, &sample) in pixel.0.iter().enumerate() {
            let c = if channels == 3 { c } else { 0 };
            let mut acc = 0.0;
            for sy in y0..y1 {
                for sx in x0..x1 {
                    acc += want.samples[(sy * want.cols + sx) as usize * channels + c] as f64;
                }
            }
            let mean = acc / ((x1 - x0) * (y1 - y0)) as f64;
            sum += (sample as f64 - mean).abs();
        }
    }
    sum / (w as f64 * h as f64 * 3.0)
}
