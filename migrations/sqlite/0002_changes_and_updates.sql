-- LastUpdate of each level (Orthanc's metadata of that name): the time of the last instance
-- added under it, kept on the row so that listing and sorting by it costs no join.
ALTER TABLE patients ADD COLUMN last_update TEXT NOT NULL DEFAULT '';
ALTER TABLE studies ADD COLUMN last_update TEXT NOT NULL DEFAULT '';
ALTER TABLE series ADD COLUMN last_update TEXT NOT NULL DEFAULT '';
UPDATE patients SET last_update = created_at;
UPDATE studies SET last_update = created_at;
UPDATE series SET last_update = created_at;
CREATE INDEX studies_last_update ON studies (last_update);

-- Case-insensitive matching of names (Orthanc matches PatientName without regard to case).
ALTER TABLE patients ADD COLUMN patient_name_folded TEXT NOT NULL DEFAULT '';
UPDATE patients SET patient_name_folded = UPPER(patient_name);
-- Serves prefix searches ("SMI*"), the common case in a study list.
CREATE INDEX patients_name_folded ON patients (patient_name_folded);

-- Whether an instance has pixel data: `/tags` lists the element without reading it.
ALTER TABLE instances ADD COLUMN has_pixel_data BIGINT NOT NULL DEFAULT 0;

-- The change log behind GET /changes, written in the transaction that makes the change.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change_type    TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    date           TEXT NOT NULL
);

-- Blobs that no index row points at any more and that are still to be removed from the blob
-- store. A deletion commits these rows with the index change; the blobs are removed after, and
-- a row stays until its blob is gone, so a crash or an unreachable bucket only delays removal.
CREATE TABLE blob_deletions (
    blob_key      TEXT PRIMARY KEY,
    requested_at  TEXT NOT NULL
);
