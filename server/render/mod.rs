//! Server-side rendering of DICOM frames to PNG or JPEG (`/preview`, `/rendered`).
//!
//! `frame.rs` fetches one frame's bytes from the blob store without loading the whole file
//! (`fragments.rs` finds a frame in encapsulated pixel data) and makes a one-frame object that
//! dicom-pixeldata decodes (`guard.rs` checks encapsulated frames first), `color.rs` puts native color
//! frames into RGB, `palette.rs` maps PALETTE COLOR through its lookup tables, `voi.rs` turns
//! monochrome samples into 8-bit values, `encode.rs` resizes and encodes, `cache.rs` keeps
//! recent results. Decoding and encoding run on blocking threads, at most one
//! render per CPU at a time, so rendering never starves DICOM ingest.

mod cache;
mod color;
mod encode;
mod fragments;
mod frame;
mod guard;
mod palette;
mod voi;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use dicom_dictionary_std::tags;
use dicom_pixeldata::{ConvertOptions, DecodedPixelData, PixelDecoder, PixelRepresentation};
use image::DynamicImage;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio_util::io::SyncIoBridge;

use crate::index::StoredFile;
use crate::storage::BlobStore;
use frame::FrameSource;

pub(crate) use frame::decodable;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the instance has no pixel data")]
    NoPixelData,
    #[error("{0}")]
    Unsupported(String),
    #[error("frame {frame} does not exist: the instance has {frames} frame(s), numbered from 0")]
    NoFrame { frame: u32, frames: u32 },
    #[error("the pixel data cannot be decoded: {0}")]
    Corrupt(String),
    #[error("blob store: {0}")]
    Storage(String),
    #[error("encoding the image failed: {0}")]
    Encode(String),
    #[error("render task failed: {0}")]
    Task(String),
}

/// What is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stretched from the frame's minimum to its maximum, full size.
    Preview,
    /// Windowed, resized: `/rendered`.
    Rendered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
        }
    }
}

/// A render request, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub kind: Kind,
    /// Window center and width overrides.
    pub center: Option<f64>,
    pub width: Option<f64>,
    /// The box to fit in.
    pub box_width: Option<u32>,
    pub box_height: Option<u32>,
    pub smooth: bool,
    pub format: Format,
    pub quality: u8,
}

impl Params {
    /// A canonical text of everything that changes the output (part of the cache key and
    /// ETag).
    pub fn key(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let dim = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        format!(
            "{:?}/c{}/w{}/{}x{}/s{}/{:?}/q{}",
            self.kind,
            opt(self.center),
            opt(self.width),
            dim(self.box_width),
            dim(self.box_height),
            u8::from(self.smooth),
            self.format,
            if self.format == Format::Jpeg {
                self.quality
            } else {
                0
            },
        )
    }
}

/// The cache and the limit on concurrent renders; one per server (in `AppState`).
pub struct Renderer {
    cache: Mutex<cache::Lru>,
    permits: Semaphore,
}

const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

impl Renderer {
    pub fn new(cache_mb: u64) -> Renderer {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Renderer {
            cache: Mutex::new(cache::Lru::new((cache_mb * 1024 * 1024) as usize)),
            permits: Semaphore::new(cpus),
        }
    }

    pub fn cached(&self, key: &str) -> Option<Bytes> {
        self.cache.lock().expect("cache lock").get(key)
    }

    /// Renders frame `frame` of a stored file and caches the result under `key`.
    pub async fn render(
        &self,
        blobs: Arc<dyn BlobStore>,
        stored: &StoredFile,
        frame: u32,
        params: &Params,
        key: String,
    ) -> Result<Bytes, RenderError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| RenderError::Task(e.to_string()))?;
        let started = Instant::now();
        let (header, source) = read_frame(&*blobs, stored, frame).await?;
        let params = params.clone();
        let image = tokio::task::spawn_blocking(move || paint(header, source, frame, &params))
            .await
            .map_err(joined)??;
        crate::metrics::METRICS.rendered(started.elapsed());
        let image = Bytes::from(image);
        self.cache
            .lock()
            .expect("cache lock")
            .insert(key, image.clone());
        Ok(image)
    }
}

/// Decodes, resizes and encodes frame `frame`, whose bytes are in `source`.
fn paint(
    header: frame::Header,
    source: FrameSource,
    frame: u32,
    params: &Params,
) -> Result<Vec<u8>, RenderError> {
    let image = draw(header, source, frame, params)?;
    let size = encode::fit(
        (image.width(), image.height()),
        params.box_width,
        params.box_height,
    );
    encode::encode(image, size, params.smooth, params.format, params.quality)
}

/// `Renderer::render` on a file in memory, without cache or permits: what the fuzz target
/// runs. A decoder's panic is left to unwind, where the server turns it into a 422.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn render_file(
    file: &[u8],
    frame: u32,
    params: &Params,
) -> Result<Vec<u8>, RenderError> {
    let (header, source) = frame::locate(file, file.len() as u64, frame)?;
    let slice = |range: std::ops::Range<u64>| {
        file.get(range.start as usize..range.end as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                RenderError::Corrupt("the pixel data runs past the end of the file".into())
            })
    };
    let source = match source {
        FrameSource::NativeRange(range) => FrameSource::Native(slice(range)?),
        FrameSource::FragmentRange(range) => {
            FrameSource::Fragments(fragments::parse_items(&slice(range)?)?)
        }
        source => source,
    };
    paint(header, source, frame, params)
}

/// A blocking task that did not finish: a decoder that panicked on the data is the data's
/// fault (422), anything else ours.
fn joined(error: tokio::task::JoinError) -> RenderError {
    if error.is_panic() {
        RenderError::Corrupt("the decoder failed on this pixel data".into())
    } else {
        RenderError::Task(error.to_string())
    }
}

/// Frame `frame` of a stored file: the header, then the frame's bytes alone (by range where
/// the file allows it).
async fn read_frame(
    blobs: &dyn BlobStore,
    stored: &StoredFile,
    frame: u32,
) -> Result<(frame::Header, FrameSource), RenderError> {
    let (reader, _) = blobs
        .get(&stored.blob_key, None)
        .await
        .map_err(|e| RenderError::Storage(e.to_string()))?;
    let size = stored.size;
    let bridge = SyncIoBridge::new(reader);
    let (header, source) = tokio::task::spawn_blocking(move || frame::locate(bridge, size, frame))
        .await
        .map_err(joined)??;
    let source = match source {
        FrameSource::NativeRange(range) => {
            FrameSource::Native(read_range(blobs, stored, range).await?)
        }
        FrameSource::FragmentRange(range) => FrameSource::Fragments(fragments::parse_items(
            &read_range(blobs, stored, range).await?,
        )?),
        source => source,
    };
    Ok((header, source))
}

/// Frame `frame` (from 0) as stored, for WADO-RS: native samples, or the frame's fragments
/// joined (its compressed bitstream).
pub async fn raw_frame(
    blobs: &dyn BlobStore,
    stored: &StoredFile,
    frame: u32,
) -> Result<Vec<u8>, RenderError> {
    match read_frame(blobs, stored, frame).await?.1 {
        FrameSource::Native(bytes) => Ok(bytes),
        FrameSource::Fragments(fragments) => Ok(fragments.concat()),
        FrameSource::NativeRange(_) | FrameSource::FragmentRange(_) => {
            unreachable!("read_frame reads ranges")
        }
    }
}

/// Reads a byte range of a stored file.
async fn read_range(
    blobs: &dyn BlobStore,
    stored: &StoredFile,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, RenderError> {
    if range.end > stored.size {
        return Err(RenderError::Corrupt(
            "the pixel data runs past the end of the file".into(),
        ));
    }
    let length = range.end - range.start;
    let (reader, _) = blobs
        .get(&stored.blob_key, Some(range))
        .await
        .map_err(|e| RenderError::Storage(e.to_string()))?;
    let mut data = Vec::with_capacity(length as usize);
    reader
        .take(length)
        .read_to_end(&mut data)
        .await
        .map_err(|e| RenderError::Storage(e.to_string()))?;
    if data.len() as u64 != length {
        return Err(RenderError::Corrupt("the file is cut short".into()));
    }
    Ok(data)
}

/// Decodes frame `frame` (the only one in `source`) to an 8-bit image.
fn draw(
    header: frame::Header,
    source: FrameSource,
    frame: u32,
    params: &Params,
) -> Result<DynamicImage, RenderError> {
    let original = header.dataset.clone();
    // jpeg-decoder reads 8-bit samples only: 12-bit JPEG Extended (process 4) is refused
    // before it fails.
    let bits = frame::int(&original, tags::BITS_STORED).unwrap_or(8);
    if header.ts.uid() == JPEG_EXTENDED && bits > 8 {
        return Err(RenderError::Unsupported(format!(
            "this server cannot decode {bits}-bit pixel data in transfer syntax \
             {JPEG_EXTENDED} (JPEG Extended): its JPEG decoder reads 8-bit samples only"
        )));
    }
    let allocated = frame::int(&original, tags::BITS_ALLOCATED).unwrap_or(8);
    if header.ts.uid() == RLE_LOSSLESS && allocated > 16 {
        return Err(RenderError::Unsupported(format!(
            "this server cannot decode {allocated}-bit pixel data in transfer syntax \
             {RLE_LOSSLESS} (RLE Lossless): its RLE decoder reads 8- and 16-bit samples only"
        )));
    }
    if let FrameSource::Fragments(fragments) = &source {
        guard::check(header.ts.uid(), &original, fragments)?;
    }
    // dicom-pixeldata's RLE decoder calls its output RGB without converting YBR_FULL.
    let ybr_rle = header.ts.uid() == RLE_LOSSLESS && frame::photometric(&original) == "YBR_FULL";
    let object = frame::single_frame_object(header, source)?;
    let decoded = object
        .decode_pixel_data_frame(0)
        .map_err(|e| RenderError::Corrupt(crate::telemetry::with_causes(&e)))?;
    let mut image = to_image(&decoded, &original, frame, params)?;
    if ybr_rle && let DynamicImage::ImageRgb8(rgb) = &mut image {
        color::ybr_full_to_rgb(rgb);
    }
    Ok(image)
}

/// An 8-bit image of a decoded frame: gray (windowed or stretched) or RGB.
fn to_image(
    decoded: &DecodedPixelData<'_>,
    dataset: &dicom_object::InMemDicomObject,
    frame: u32,
    params: &Params,
) -> Result<DynamicImage, RenderError> {
    let (width, height) = (decoded.columns(), decoded.rows());
    if decoded.samples_per_pixel() != 1 {
        let image = decoded
            .to_dynamic_image_with_options(0, &ConvertOptions::new().force_8bit())
            .map_err(|e| RenderError::Corrupt(crate::telemetry::with_causes(&e)))?;
        return Ok(DynamicImage::ImageRgb8(image.to_rgb8()));
    }
    let layout = voi::Layout {
        bits_allocated: decoded.bits_allocated(),
        bits_stored: decoded.bits_stored(),
        high_bit: decoded.high_bit(),
        signed: decoded.pixel_representation() == PixelRepresentation::Signed,
    };
    let pixels = (width as usize) * (height as usize);
    let data = decoded.frame_data(0).unwrap_or(decoded.data());
    let short = || {
        RenderError::Corrupt(format!(
            "the frame has too few samples for {width}×{height} pixels"
        ))
    };
    if frame::photometric(dataset) == "PALETTE COLOR" {
        let samples = voi::stored_values(data, layout);
        let rgb = palette::Palette::from_dataset(dataset)?
            .apply(samples.get(..pixels).ok_or_else(short)?);
        let image = image::RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| RenderError::Corrupt("image size mismatch".into()))?;
        return Ok(DynamicImage::ImageRgb8(image));
    }
    let (lo, hi) = voi::stored_min_max(data, layout, pixels).ok_or_else(short)?;
    let (slope, intercept) = voi::rescale(dataset, frame);
    let modality = |v: i64| v as f64 * slope + intercept;
    let (min, max) = {
        let (a, b) = (modality(lo), modality(hi));
        (a.min(b), a.max(b))
    };
    let stretch = voi::Curve::Stretch { min, max };
    let curve = match params.kind {
        Kind::Preview => stretch,
        Kind::Rendered => match (
            params.center,
            params.width,
            voi::default_window(dataset, frame),
        ) {
            (None, None, None) => stretch,
            (c, w, default) => {
                let (dc, dw) = default.unwrap_or(((min + max) / 2.0, max - min + 1.0));
                voi::Curve::Window {
                    center: c.unwrap_or(dc),
                    width: w.unwrap_or(dw),
                }
            }
        },
    };
    let monochrome1 = frame::photometric(dataset) == "MONOCHROME1";
    let gray = voi::gray_levels(data, layout, pixels, (lo, hi), |v| {
        let y = curve.level(modality(v));
        if monochrome1 { 255 - y } else { y }
    });
    let image = image::GrayImage::from_raw(width, height, gray)
        .ok_or_else(|| RenderError::Corrupt("image size mismatch".into()))?;
    Ok(DynamicImage::ImageLuma8(image))
}

#[cfg(test)]
mod tests;
