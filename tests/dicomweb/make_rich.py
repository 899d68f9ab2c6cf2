"""Writes one instance that uses what DICOM JSON must get right: every numeric VR, person
names with all three groups in UTF-8, empty values inside multi-valued text, AT, nested
sequences, private tags with their creator, small binaries (inline) and a large one (by URI).

Usage: make_rich.py PATH STUDY_UID SERIES_UID SOP_UID
"""

import sys

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

path, study, series, sop = sys.argv[1:5]

meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
meta.MediaStorageSOPInstanceUID = sop
meta.TransferSyntaxUID = ExplicitVRLittleEndian

ds = Dataset()
ds.file_meta = meta
ds.SpecificCharacterSet = "ISO_IR 192"
ds.SOPClassUID = SecondaryCaptureImageStorage
ds.SOPInstanceUID = sop
ds.StudyInstanceUID = study
ds.SeriesInstanceUID = series
ds.PatientID = "RICH-1"
ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
ds.PatientBirthDate = "19700101"
ds.PatientSex = "M"
ds.StudyDate = "20250304"
ds.StudyTime = "101500.25"
ds.AccessionNumber = "RICH0001"
ds.StudyDescription = "Rich JSON ëxample"
ds.ReferringPhysicianName = "Dr^Who"
ds.Modality = "OT"
ds.SeriesNumber = 7
ds.InstanceNumber = 1
ds.ImageType = ["ORIGINAL", "", "AXIAL"]
ds.OtherPatientIDs = ["A1", "B2"]
ds.ImagePositionPatient = ["-125.5", "3", "1e2"]
ds.PixelSpacing = [0.5, 0.25]
ds.add_new(0x00181063, "DS", "33.3")  # FrameTime
ds.FrameIncrementPointer = 0x00181063
ds.add_new(0x00280106, "US", 0)  # SmallestImagePixelValue
ds.add_new(0x00189219, "SS", [-3, 4])  # TagAngleSecondAxis (SS)
ds.add_new(0x00189310, "FD", [1.5, -2.25])  # TableSpeed
ds.add_new(0x00700502, "FL", [0.5])  # some FL
ds.add_new(0x00082112, "SQ", Sequence())  # SourceImageSequence, empty
ds.PatientComments = "line one\\with a backslash"
referenced = Dataset()
referenced.ReferencedSOPClassUID = SecondaryCaptureImageStorage
referenced.ReferencedSOPInstanceUID = sop + ".99"
inner = Dataset()
inner.CodeValue = "123"
inner.CodingSchemeDesignator = "DCM"
inner.CodeMeaning = "Nested"
referenced.PurposeOfReferenceCodeSequence = Sequence([inner])
ds.ReferencedImageSequence = Sequence([referenced, Dataset()])
block = ds.private_block(0x0009, "ORTHWEB TEST", create=True)
block.add_new(0x01, "LO", "private text")
block.add_new(0x02, "OB", bytes(range(16)))
block.add_new(0x03, "OB", bytes(i % 251 for i in range(2000)))
block.add_new(0x04, "UL", [7, 8])
ds.Rows = 8
ds.Columns = 8
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.BitsAllocated = 16
ds.BitsStored = 12
ds.HighBit = 11
ds.PixelRepresentation = 0
ds.PixelData = bytes(i % 256 for i in range(8 * 8 * 2))
ds["PixelData"].VR = "OW"
ds.save_as(path, enforce_file_format=True)
