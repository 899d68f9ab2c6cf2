#!/usr/bin/python3
"""Synthetic DICOM images and the 8-bit pixels a renderer must produce from them.

Run by the `render` integration test with Debian's /usr/bin/python3 (pydicom 2.3, numpy,
Pillow with JPEG 2000). It writes, into OUTDIR:

- one part-10 file per (image, transfer syntax): small, non-square images with structure
  (gradients, a bright block top right, a dark disc bottom left) so that a flip, a transpose,
  swapped planes or a lost sign shows;
- for every check, the expected 8-bit pixels as a raw file (rows x cols x channels, row-major);
- manifest.json, describing the instances and the checks.

The expectations are computed here with numpy, from the pixels pydicom decodes: from the file
itself where pydicom can decode it (native, deflate, RLE, JPEG baseline and JPEG 2000 through
Pillow), otherwise from dcmtk's decompression of it (dcmdjpeg, dcmdjpls). For lossless syntaxes
the decoded pixels are also required to equal the source array, so a faulty encoder fails here
rather than as a server bug. Rendering rules (the server's contract):

- modality value x = stored value (signed per Pixel Representation) * slope + intercept;
- preview: round((x - min) * 255 / (max - min)) over the frame, 0 when max = min;
- rendered: linear VOI of DICOM PS3.3 C.11.2.1.2.1 with the given window, by default the data
  set's first Window Center/Width, else the frame's min..max (the same as the preview stretch);
- MONOCHROME1 inverted after windowing; colour converted to RGB and not windowed.

With `--only NAME,...`, writes only those instances (`u12_rescale.j2k_lossy`: image, then
syntax and variant as SYNTAX_NAMES and the variants below name them) and their checks.

With `--large FILE`, computes only the expected default rendering of FILE's last frame and
prints a JSON description of that check on stdout.
"""

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers.util import apply_color_lut, convert_color_space

ROWS, COLS = 48, 64

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K_LOSSY = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"

CT = "1.2.840.10008.5.1.4.1.1.2"
CR = "1.2.840.10008.5.1.4.1.1.1"
SC = "1.2.840.10008.5.1.4.1.1.7"
MF_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
US = "1.2.840.10008.5.1.4.1.1.6.1"
# (descriptor, data) of each color's palette lookup table.
PALETTE_TAGS = {
    "Red": (0x00281101, 0x00281201),
    "Green": (0x00281102, 0x00281202),
    "Blue": (0x00281103, 0x00281203),
}

# dcmtk tool and options producing each syntax from an Explicit VR LE file (`+un`: keep the
# SOP Instance UID), and the tool that decompresses it again when pydicom cannot.
ENCODERS = {
    IMPLICIT_LE: ["dcmconv", "+ti"],
    EXPLICIT_BE: ["dcmconv", "+tb"],
    DEFLATED: ["dcmconv", "+td"],
    RLE: ["dcmcrle", "+un"],
    JPEG_BASELINE: ["dcmcjpeg", "+eb", "+un"],
    JPEG_EXTENDED: ["dcmcjpeg", "+ee", "+un"],
    JPEG_LOSSLESS: ["dcmcjpeg", "+el", "+un"],
    JPEG_LOSSLESS_SV1: ["dcmcjpeg", "+e1", "+un"],
    JPEG_LS_LOSSLESS: ["dcmcjpls", "+el", "+un"],
}
DECODERS = {
    JPEG_EXTENDED: "dcmdjpeg",
    JPEG_LOSSLESS: "dcmdjpeg",
    JPEG_LOSSLESS_SV1: "dcmdjpeg",
    JPEG_LS_LOSSLESS: "dcmdjpls",
}
LOSSY = {JPEG_BASELINE, JPEG_EXTENDED, J2K_LOSSY}

# Variants of an encapsulated syntax, named by a suffix of the instance name. The encoders
# write a Basic Offset Table and one fragment per frame unless told otherwise.
NO_BOT = "nobot"  # an empty Basic Offset Table
SPLIT = "split"  # an empty Basic Offset Table, and frames over several fragments (dcmtk)
ICT = "ict"  # JPEG 2000 lossy with the irreversible colour transform: YBR_ICT
# dcmtk's options for them: `+fs 1` cuts fragments at 1 KiB, less than a compressed frame.
VARIANT_ARGS = {NO_BOT: ["-ot"], SPLIT: ["-ot", "+fs", "1"]}
# JPEG 2000 lossy: compression ratio of Pillow's single quality layer. 10 loses about 1% of
# the range at worst on these images; the encoder is not lossless here.
J2K_RATIO = 10

STUDY_UID = None  # set in main


def uid(*parts):
    """A stable 2.25 UID from a name."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))


# ---------------------------------------------------------------------------------------------
# Source pixels


def pattern(frame=0):
    """Structure in [0, 1]: ramps across and down, a bright block top right, a dark disc bottom
    left (moving right with the frame number)."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    p = 0.6 * xx / (COLS - 1) + 0.25 * yy / (ROWS - 1)
    p[5:17, 38:58] += 0.15
    disc = (yy - 34) ** 2 + (xx - (12 + 6 * frame)) ** 2 <= 7 ** 2
    p[disc] = 0.05
    return p


def scaled(lo, hi, dtype, frame=0):
    return np.rint(lo + pattern(frame) * (hi - lo)).astype(dtype)


def rgb_source():
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    rgb = np.zeros((ROWS, COLS, 3), np.uint8)
    rgb[..., 0] = np.rint(xx * 255 / (COLS - 1))
    rgb[..., 1] = np.rint(yy * 255 / (ROWS - 1))
    rgb[..., 2] = 30
    rgb[5:17, 38:58, 2] = 220
    disc = (yy - 34) ** 2 + (xx - 12) ** 2 <= 7 ** 2
    rgb[disc] = (250, 120, 10)
    return rgb


def rgb_to_ybr_full(rgb):
    """PS3.3 C.7.6.3.1.2."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.1687 * r - 0.3313 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.4187 * g - 0.0813 * b + 128
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Data sets


class Source:
    """One source image: its attributes and pixels (frames x rows x cols [x 3])."""

    def __init__(self, name, sop_class, photometric, bits, pixels, signed=False, stored=None,
                 rescale=None, window=None, planar=0, palette=None):
        self.name = name
        self.sop_class = sop_class
        self.photometric = photometric
        self.bits = bits
        self.stored = stored or bits
        self.signed = signed
        self.pixels = pixels
        self.rescale = rescale
        self.window = window
        self.planar = planar
        self.palette = palette  # (first mapped value, bits, 3 x entries table) for PALETTE COLOR

    @property
    def frames(self):
        return self.pixels.shape[0]

    @property
    def color(self):
        return self.pixels.ndim == 4

    def dataset(self, sop_uid, syntax=EXPLICIT_LE, stored=None):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = syntax
        meta.ImplementationClassUID = uid("orthweb-render-tests")
        ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = self.sop_class
        ds.SOPInstanceUID = sop_uid
        ds.PatientName = "Render^Tests"
        ds.PatientID = "RENDER"
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = uid(STUDY_UID, self.name)
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.Modality = {CT: "CT", CR: "CR", US: "US"}.get(self.sop_class, "OT")
        if self.sop_class in (SC, MF_WORD_SC):
            ds.ConversionType = "WSD"
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 3 if self.color else 1
        ds.PhotometricInterpretation = self.photometric
        if self.color:
            ds.PlanarConfiguration = self.planar
        ds.BitsAllocated = self.bits
        ds.BitsStored = stored or self.stored
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if self.signed else 0
        if self.frames > 1:
            ds.NumberOfFrames = self.frames
        if self.rescale:
            ds.RescaleSlope, ds.RescaleIntercept = self.rescale
            ds.RescaleType = "HU" if self.sop_class == CT else "US"
        if self.window:
            centers, widths = self.window
            ds.WindowCenter = centers if len(centers) > 1 else centers[0]
            ds.WindowWidth = widths if len(widths) > 1 else widths[0]
        if self.palette:
            first_mapped, bits, tables = self.palette
            for color, table in zip(("Red", "Green", "Blue"), tables):
                ds.add_new(PALETTE_TAGS[color][0], "US", [len(table), first_mapped, bits])
                ds.add_new(PALETTE_TAGS[color][1], "OW", table.astype("<u2").tobytes())
        return ds

    def native_bytes(self):
        px = self.pixels
        if self.color and self.planar == 1:
            px = px.transpose(0, 3, 1, 2)
        if self.bits == 16:
            px = px.astype("<i2" if self.signed else "<u2")
        return px.tobytes()


def write_native(image, path, sop_uid):
    ds = image.dataset(sop_uid)
    ds.add_new(0x7FE00010, "OW" if image.bits == 16 else "OB", image.native_bytes())
    ds.save_as(path, write_like_original=False)


def write_j2k(image, path, sop_uid, syntax, variant):
    """JPEG 2000 codestreams from Pillow, encapsulated with pydicom: lossless (reversible 5/3
    wavelet) or lossy (irreversible 9/7 wavelet at J2K_RATIO; colour without a component
    transform as RGB, with the ICT as YBR_ICT). Pillow writes 16-bit samples with a precision
    of 16: Bits Stored says so."""
    lossy = syntax == J2K_LOSSY
    options = {"no_jp2": True, "irreversible": lossy}
    if lossy:
        options.update(quality_mode="rates", quality_layers=[J2K_RATIO], mct=int(variant == ICT))
    mode = "RGB" if image.color else ("L" if image.bits == 8 else "I;16")
    frames = []
    for frame in image.pixels:
        buf = io.BytesIO()
        Image.fromarray(frame, mode=mode).save(buf, format="JPEG2000", **options)
        frames.append(buf.getvalue())
    ds = image.dataset(sop_uid, syntax, stored=image.bits)
    if variant == ICT:
        ds.PhotometricInterpretation = "YBR_ICT"
    if lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_15444_1"
    # One fragment a frame: pydicom 2.3's Pillow handler decodes every fragment as a frame.
    ds.PixelData = encapsulate(frames, has_bot=variant != NO_BOT)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)


def run(args):
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}): {out.stdout}{out.stderr}")


def decoded(path, syntax):
    """The pixels (frames x rows x cols [x 3]) an independent decoder gets from `path`."""
    if syntax in DECODERS:
        with tempfile.TemporaryDirectory() as tmp:
            plain = os.path.join(tmp, "plain.dcm")
            run([DECODERS[syntax], path, plain])
            arr = pydicom.dcmread(plain).pixel_array
    else:
        arr = pydicom.dcmread(path).pixel_array
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    return arr


# ---------------------------------------------------------------------------------------------
# Expected renderings


def stored_values(ds, frame):
    """The stored values of grey samples as PS3.5 8.1.1 defines them, whatever the decoder left
    in the other bits: Bits Stored bits ending at High Bit, two's complement when Pixel
    Representation is 1."""
    allocated, stored, high = int(ds.BitsAllocated), int(ds.BitsStored), int(ds.HighBit)
    if stored >= allocated:
        return frame.astype(np.int64)
    words = frame.astype(np.int64) & ((1 << allocated) - 1)
    values = (words >> (high + 1 - stored)) & ((1 << stored) - 1)
    if int(ds.PixelRepresentation) == 1:
        values = np.where(values >= 1 << (stored - 1), values - (1 << stored), values)
    return values


def modality(ds, frame):
    slope = float(ds.get("RescaleSlope", 1))
    intercept = float(ds.get("RescaleIntercept", 0))
    return stored_values(ds, frame).astype(np.float64) * slope + intercept


def round_half_up(v):
    return np.floor(v + 0.5)


def stretch(x):
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros(x.shape)
    return round_half_up((x - lo) * 255.0 / (hi - lo))


def window(x, c, w):
    """DICOM PS3.3 C.11.2.1.2.1, output range 0..255."""
    lo = c - 0.5 - (w - 1) / 2
    hi = c - 0.5 + (w - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):  # w = 1: a threshold, never inside
        inside = round_half_up(((x - (c - 0.5)) / (w - 1) + 0.5) * 255)
    return np.clip(np.where(x <= lo, 0, np.where(x > hi, 255, inside)), 0, 255)


def palette_rgb(ds, frame):
    """PALETTE COLOR through pydicom's own lookup, as 8-bit: the high byte of 16-bit entries."""
    rgb = apply_color_lut(frame, ds)
    if int(ds.RedPaletteColorLookupTableDescriptor[2]) == 16:
        rgb = rgb >> 8
    return rgb.astype(np.uint8)


def first(value):
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return float(value[0])
    return float(value)


def expected(ds, frame, kind, explicit=None):
    """kind: 'preview' or 'rendered'; explicit: (center, width) given as arguments."""
    photometric = ds.PhotometricInterpretation
    if frame.ndim == 3:
        # JPEG 2000's component transforms are undone by its decoder (PS3.5 8.2.4).
        if photometric not in ("RGB", "YBR_ICT", "YBR_RCT"):
            frame = convert_color_space(frame, photometric, "RGB")
        return frame.astype(np.uint8)
    if photometric == "PALETTE COLOR":
        return palette_rgb(ds, frame)
    x = modality(ds, frame)
    if kind == "preview":
        y = stretch(x)
    elif explicit:
        y = window(x, *explicit)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        y = window(x, first(ds.WindowCenter), first(ds.WindowWidth))
    else:
        y = stretch(x)
    if photometric == "MONOCHROME1":
        y = 255 - y
    return y.astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The set


def palette_tables(entries):
    """Red rising, green falling, blue a hump: a wrong channel or offset shows."""
    i = np.arange(entries, dtype=np.float64) / (entries - 1)
    return [np.rint(t * 65535).astype(np.uint16) for t in (i, 1 - i, np.sin(np.pi * i) ** 2)]


def images():
    u12 = scaled(100, 4000, np.uint16)[np.newaxis]
    ct = scaled(-600, 3000, np.int16)[np.newaxis]  # stored values, negative ones included
    mono1 = scaled(300, 3500, np.uint16)[np.newaxis]
    gray8 = scaled(20, 230, np.uint8)[np.newaxis]
    rgb = rgb_source()[np.newaxis]
    # 12 of 16 bits with other bits set: overlay-like junk above the high bit (unsigned), and
    # negative values kept in 12 bits with the bits above zero (signed).
    junk = scaled(0, 4095, np.uint16)
    junk[20:40, 0:30] |= 0xF000
    junk = junk[np.newaxis]
    s12 = (scaled(-1800, 1500, np.int16).astype(np.int32) & 0x0FFF).astype(np.uint16)
    s12 = s12[np.newaxis]
    multi = np.stack([
        np.rint(2000 * k + pattern(k) * (10000 + 5000 * k)).astype(np.uint16) for k in range(5)
    ])
    return [
        # 12 of 16 bits, slope and intercept, two windows (the first one counts).
        (Source("u12_rescale", CT, "MONOCHROME2", 16, u12, stored=12, rescale=("2", "-1000"),
                window=(["2500", "3000"], ["3000", "500"])),
         [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED, RLE, JPEG_EXTENDED, JPEG_LOSSLESS,
          JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, J2K_LOSSLESS, J2K_LOSSY],
         [(1500, 2000), (4000, 1)]),
        (Source("ct_signed", CT, "MONOCHROME2", 16, ct, signed=True, rescale=("1", "-1024"),
                window=(["40"], ["400"])),
         [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE, RLE, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1,
          JPEG_LS_LOSSLESS],
         [(-1000, 1500)]),
        (Source("u12_junk", SC, "MONOCHROME2", 16, junk, stored=12),
         [EXPLICIT_LE, RLE, JPEG_LOSSLESS_SV1], [(2000, 1000)]),
        (Source("s12_signed", CT, "MONOCHROME2", 16, s12, stored=12, signed=True,
                rescale=("1", "0"), window=(["-100"], ["1200"])),
         [EXPLICIT_LE, EXPLICIT_BE, RLE, JPEG_LOSSLESS_SV1], [(500, 3000)]),
        (Source("mono1", CR, "MONOCHROME1", 16, mono1, stored=12, window=(["1900"], ["2400"])),
         [EXPLICIT_LE, JPEG_LOSSLESS_SV1, RLE],
         [(2000, 1000)]),
        (Source("gray8", SC, "MONOCHROME2", 8, gray8),
         [EXPLICIT_LE, DEFLATED, RLE, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1,
          J2K_LOSSLESS, J2K_LOSSY],
         [(128, 64)]),
        (Source("rgb", SC, "RGB", 8, rgb),
         [EXPLICIT_LE, IMPLICIT_LE, RLE, JPEG_BASELINE, J2K_LOSSY, (J2K_LOSSY, ICT)], []),
        (Source("rgb_planar", SC, "RGB", 8, rgb, planar=1), [EXPLICIT_LE], []),
        # 8-bit indices from 10 (below: the first entry) through 16-bit tables of 200 entries.
        (Source("palette", US, "PALETTE COLOR", 8, gray8, palette=(10, 16, palette_tables(200))),
         [EXPLICIT_LE, DEFLATED, RLE], []),
        (Source("ybr_full", SC, "YBR_FULL", 8, rgb_to_ybr_full(rgb[0])[np.newaxis]),
         [EXPLICIT_LE, RLE], []),
        (Source("multiframe", MF_WORD_SC, "MONOCHROME2", 16, multi),
         [EXPLICIT_LE, DEFLATED, RLE, (RLE, NO_BOT), JPEG_LOSSLESS_SV1,
          (JPEG_LOSSLESS_SV1, SPLIT), (J2K_LOSSLESS, NO_BOT), J2K_LOSSY],
         [(16000, 12000)]),
    ]


SYNTAX_NAMES = {
    EXPLICIT_LE: "explicit_le", IMPLICIT_LE: "implicit_le", EXPLICIT_BE: "explicit_be",
    DEFLATED: "deflate", RLE: "rle", JPEG_BASELINE: "jpeg_baseline",
    JPEG_EXTENDED: "jpeg_extended", JPEG_LOSSLESS: "jpeg_lossless_57",
    JPEG_LOSSLESS_SV1: "jpeg_lossless_70", JPEG_LS_LOSSLESS: "jpeg_ls",
    J2K_LOSSLESS: "j2k_lossless", J2K_LOSSY: "j2k_lossy",
}


def needs(image, syntax):
    """What the server needs beyond its default build to decode this: the `jpeg-ls` cargo
    feature, or a JPEG decoder for 12-bit DCT samples (jpeg-decoder, behind dicom-pixeldata,
    reads 8-bit ones only; no build of the server has one yet)."""
    if syntax == JPEG_LS_LOSSLESS:
        return "jpeg-ls"
    if syntax == JPEG_EXTENDED and image.stored > 8:
        return "jpeg-12bit"
    return None


def encapsulation(ds):
    """(entries of the Basic Offset Table, number of fragments) of encapsulated pixel data."""
    data = ds.PixelData
    offsets, fragments, pos = 0, 0, 0
    while pos + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, pos)
        if (group, element) != (0xFFFE, 0xE000):
            break
        if pos == 0:
            offsets = length // 4
        else:
            fragments += 1
        pos += 8 + length
    return offsets, fragments


def check_variant(name, ds, variant, frames):
    """The file is encapsulated as the variant says, or the cases it is for test nothing."""
    offsets, fragments = encapsulation(ds)
    want_offsets = 0 if variant in (NO_BOT, SPLIT) else frames
    if offsets != want_offsets or (variant == SPLIT) != (fragments > frames):
        raise SystemExit(f"{name}: {offsets} offsets and {fragments} fragments for "
                         f"{frames} frames")


def make(out, only=None):
    instances, checks = [], []
    for image, syntaxes, windows in images():
        for entry in syntaxes:
            syntax, variant = entry if isinstance(entry, tuple) else (entry, None)
            name = f"{image.name}.{SYNTAX_NAMES[syntax]}" + (f"_{variant}" if variant else "")
            if only is not None and name not in only:
                continue
            sop_uid = uid(STUDY_UID, name)
            path = os.path.join(out, name + ".dcm")
            if syntax == EXPLICIT_LE:
                write_native(image, path, sop_uid)
            elif syntax in (J2K_LOSSLESS, J2K_LOSSY):
                write_j2k(image, path, sop_uid, syntax, variant)
            else:
                source = os.path.join(out, name + ".src.dcm")
                write_native(image, source, sop_uid)
                run(ENCODERS[syntax] + VARIANT_ARGS.get(variant, []) + [source, path])
                os.remove(source)
            ds = pydicom.dcmread(path)
            assert ds.file_meta.TransferSyntaxUID == syntax, (name, ds.file_meta.TransferSyntaxUID)
            assert ds.SOPInstanceUID == sop_uid, name
            if ds["PixelData"].is_undefined_length:
                check_variant(name, ds, variant, image.frames)
            pixels = decoded(path, syntax)
            lossy = syntax in LOSSY
            same = np.array_equal(pixels, image.pixels) or (
                not image.color and np.array_equal(stored_values(ds, pixels),
                                                   stored_values(ds, image.pixels)))
            if not lossy and not same:
                raise SystemExit(f"{name}: the decoded pixels differ from the source; "
                                 "the encoder was not lossless")
            instances.append({
                "name": name,
                "file": os.path.basename(path),
                "syntax": syntax,
                "frames": image.frames,
                "rows": ROWS,
                "cols": COLS,
                "color": image.color,
                "needs": needs(image, syntax),
            })
            # Lossy: the server's decoder may differ from IJG's (Pillow's, dcmtk's) by a level
            # or two per sample; a wrong decode is far off on average.
            tolerance = {"max_diff": 6, "mean_diff": 1.0} if lossy else \
                {"max_diff": 1, "mean_diff": None}
            frame_numbers = [0] if image.frames == 1 else [image.frames // 2, image.frames - 1]
            requests = []
            for f in frame_numbers:
                prefix = "" if image.frames == 1 else f"frames/{f}/"
                requests.append((f, prefix + "rendered", "rendered", None))
                requests.append((f, prefix + "preview", "preview", None))
                for c, w in windows:
                    requests.append((f, f"{prefix}rendered?window-center={c}&window-width={w}",
                                     "rendered", (c, w)))
            if image.frames == 1:
                requests.append((0, "frames/0/rendered", "rendered", None))
            for f, request, kind, explicit in requests:
                want = expected(ds, pixels[f], kind, explicit)
                raw = f"{name}.{len(checks)}.raw"
                with open(os.path.join(out, raw), "wb") as fh:
                    fh.write(np.ascontiguousarray(want).tobytes())
                checks.append({
                    "instance": name,
                    "request": request,
                    "expected": raw,
                    "rows": int(want.shape[0]),
                    "cols": int(want.shape[1]),
                    "channels": 3 if want.ndim == 3 else 1,
                    **tolerance,
                })
    manifest = {
        "instances": instances,
        "checks": checks,
        # Where the Rust side checks resizing, JPEG output, ETags and frame numbers.
        "primary": "u12_rescale.explicit_le",
        "multiframe": "multiframe.explicit_le",
    }
    missing = set(only or ()) - {i["name"] for i in instances}
    if missing:
        raise SystemExit(f"--only names no such instance: {sorted(missing)}")
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)


def large(path):
    """The default rendering of the last frame of a large multi-frame file."""
    ds = pydicom.dcmread(path)
    frames = int(ds.NumberOfFrames)
    last = ds.pixel_array[frames - 1]
    want = expected(ds, last, "rendered")
    raw = path + ".last.raw"
    with open(raw, "wb") as fh:
        fh.write(np.ascontiguousarray(want).tobytes())
    json.dump({
        "request": f"frames/{frames - 1}/rendered",
        "frames": frames,
        "expected": raw,
        "rows": int(want.shape[0]),
        "cols": int(want.shape[1]),
        "channels": 1,
        "max_diff": 1,
        "mean_diff": None,
    }, sys.stdout)


def main():
    global STUDY_UID
    if len(sys.argv) == 3 and sys.argv[1] == "--large":
        large(sys.argv[2])
        return
    args = sys.argv[1:]
    only = None
    if len(args) == 3 and args[0] == "--only":
        only = set(args[1].split(","))
        args = args[2:]
    if len(args) != 1:
        raise SystemExit("usage: make_images.py [--only NAME,...] OUTDIR | --large FILE")
    out = args[0]
    os.makedirs(out, exist_ok=True)
    STUDY_UID = uid("orthweb render tests")
    make(out, only)


if __name__ == "__main__":
    main()
