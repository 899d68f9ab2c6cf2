//! Color frames to interleaved RGB before dicom-pixeldata sees them: planar configuration 1
//! interleaved, native YBR_FULL_422 upsampled, YBR_FULL converted with the PS3.3 C.7.6.3.1.2
//! matrix (dicom-pixeldata 0.10.1 adds the Cb term of green where it should subtract it).

/// R1…Rn G1…Gn B1…Bn to R1 G1 B1 ….
pub(crate) fn interleave(data: &[u8]) -> Vec<u8> {
    let plane = data.len() / 3;
    (0..plane)
        .flat_map(|i| [data[i], data[plane + i], data[2 * plane + i]])
        .collect()
}

/// Native YBR_FULL_422 (Y1 Y2 Cb Cr for each pair of pixels) to YBR_FULL (Y Cb Cr for each
/// pixel).
pub(crate) fn upsample_422(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(4)
        .flat_map(|c| [c[0], c[2], c[3], c[1], c[2], c[3]])
        .collect()
}

/// Interleaved YBR_FULL to RGB, in place: R = Y + 1.402 Cr', G = Y − 0.3441 Cb' − 0.7141 Cr',
/// B = Y + 1.772 Cb' (Cb' = Cb − 128, Cr' = Cr − 128), rounded as pydicom does.
pub(crate) fn ybr_full_to_rgb(data: &mut [u8]) {
    for pixel in data.chunks_exact_mut(3) {
        let y = f64::from(pixel[0]);
        let cb = f64::from(pixel[1]) - 128.0;
        let cr = f64::from(pixel[2]) - 128.0;
        let to_byte = |v: f64| (v + 0.5).floor().clamp(0.0, 255.0) as u8;
        pixel[0] = to_byte(y + 1.402 * cr);
        pixel[1] = to_byte(y - (0.114 * 1.772 / 0.587) * cb - (0.299 * 1.402 / 0.587) * cr);
        pixel[2] = to_byte(y + 1.772 * cb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_colors_convert() {
        assert_eq!(interleave(&[1, 2, 3, 4, 5, 6]), vec![1, 3, 5, 2, 4, 6]);
        assert_eq!(
            upsample_422(&[10, 20, 128, 129, 30, 40, 1, 2]),
            vec![10, 128, 129, 20, 128, 129, 30, 1, 2, 40, 1, 2]
        );
        // Gray stays gray; pure red (76, 85, 255) and a case where the Cb term of green matters.
        let mut pixels = vec![100, 128, 128, 76, 85, 255, 166, 109, 192];
        ybr_full_to_rgb(&mut pixels);
        assert_eq!(pixels, vec![100, 100, 100, 254, 0, 0, 255, 127, 132]);
    }
}
