-- Each instance's data set as DICOM JSON without its bulk data (dicomweb::json), written with
-- the instance, so that DICOMweb metadata is answered without opening a blob. Apart from
-- `instances` so that scans of that table do not read it. Instances stored before this
-- migration have no row until `orthweb migrate --metadata` fills it in.
CREATE TABLE instance_metadata (
    instance   TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    dicom_json TEXT NOT NULL
);
