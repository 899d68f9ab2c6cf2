//! Resizing (fit inside a box, keeping the aspect ratio) and encoding to PNG or JPEG.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageEncoder};

use super::{Format, RenderError};

/// The size that fits `(width, height)` inside the requested box, keeping the aspect ratio;
/// with one side given, the other follows. At least 1×1.
pub(crate) fn fit(
    (width, height): (u32, u32),
    box_width: Option<u32>,
    box_height: Option<u32>,
) -> (u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let scale = match (box_width, box_height) {
        (None, None) => return (width, height),
        (Some(bw), None) => f64::from(bw) / w,
        (None, Some(bh)) => f64::from(bh) / h,
        (Some(bw), Some(bh)) => (f64::from(bw) / w).min(f64::from(bh) / h),
    };
    (
        ((w * scale).round() as u32).max(1),
        ((h * scale).round() as u32).max(1),
    )
}

/// Resizes `image` to `size` (if it differs) and encodes it.
pub(crate) fn encode(
    image: DynamicImage,
    size: (u32, u32),
    smooth: bool,
    format: Format,
    quality: u8,
) -> Result<Vec<u8>, RenderError> {
    let image = if size == (image.width(), image.height()) {
        image
    } else if smooth {
        image.resize_exact(size.0, size.1, FilterType::Triangle)
    } else {
        nearest(image, size)
    };
    let mut out = Vec::new();
    let color = image.color().into();
    let result = match format {
        Format::Png => PngEncoder::new(&mut out).write_image(
            image.as_bytes(),
            image.width(),
            image.height(),
            color,
        ),
        Format::Jpeg => JpegEncoder::new_with_quality(&mut out, quality).write_image(
            image.as_bytes(),
            image.width(),
            image.height(),
            color,
        ),
    };
    result.map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out)
}

/// Nearest-neighbour resizing by index: the image crate's general resampler costs more than the
/// rest of a thumbnail's render.
fn nearest(image: DynamicImage, (width, height): (u32, u32)) -> DynamicImage {
    let channels = match &image {
        DynamicImage::ImageLuma8(_) => 1,
        DynamicImage::ImageRgb8(_) => 3,
        _ => return image.resize_exact(width, height, FilterType::Nearest),
    };
    let (from_width, from_height) = (image.width() as usize, image.height() as usize);
    let source = image.as_bytes();
    // The source pixel under the centre of each destination pixel.
    let pick = |to: usize, of: usize, from: usize| ((2 * to + 1) * from / (2 * of)).min(from - 1);
    let columns: Vec<usize> = (0..width as usize)
        .map(|x| pick(x, width as usize, from_width) * channels)
        .collect();
    let mut out = Vec::with_capacity(width as usize * height as usize * channels);
    for y in 0..height as usize {
        let row = pick(y, height as usize, from_height) * from_width * channels;
        for &column in &columns {
            out.extend_from_slice(&source[row + column..row + column + channels]);
        }
    }
    if channels == 1 {
        DynamicImage::ImageLuma8(image::GrayImage::from_raw(width, height, out).expect("size"))
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, out).expect("size"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_the_box() {
        assert_eq!(fit((512, 256), None, None), (512, 256));
        assert_eq!(fit((512, 256), Some(128), None), (128, 64));
        assert_eq!(fit((512, 256), None, Some(128)), (256, 128));
        assert_eq!(fit((512, 256), Some(100), Some(100)), (100, 50));
        assert_eq!(fit((256, 512), Some(100), Some(100)), (50, 100));
        assert_eq!(fit((100, 100), Some(300), Some(200)), (200, 200));
        assert_eq!(fit((1000, 1), Some(10), None), (10, 1));
    }

    #[test]
    fn nearest_picks_the_pixel_under_each_centre() {
        let gray = DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(4, 2, vec![0, 1, 2, 3, 4, 5, 6, 7]).unwrap(),
        );
        assert_eq!(nearest(gray.clone(), (2, 1)).as_bytes(), &[5, 7]);
        assert_eq!(
            nearest(gray, (8, 2)).as_bytes(),
            &[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
        );
        let rgb = DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap(),
        );
        assert_eq!(nearest(rgb, (1, 1)).as_bytes(), &[4, 5, 6]);
    }

    #[test]
    fn gray_and_color_encode_as_png_and_jpeg() {
        let gray =
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(2, 2, vec![0, 1, 2, 3]).unwrap());
        let png = encode(gray.clone(), (2, 2), false, Format::Png, 90).unwrap();
        let back = image::load_from_memory(&png).unwrap();
        assert_eq!(back.color(), image::ColorType::L8);
        assert_eq!(back.as_bytes(), &[0, 1, 2, 3]);
        let jpeg = encode(gray, (4, 4), true, Format::Jpeg, 50).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_raw(1, 1, vec![1, 2, 3]).unwrap());
        let png = encode(rgb, (1, 1), false, Format::Png, 90).unwrap();
        assert_eq!(
            image::load_from_memory(&png).unwrap().color(),
            image::ColorType::Rgb8
        );
    }
}
