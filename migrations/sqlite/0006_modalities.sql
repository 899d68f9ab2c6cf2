-- DICOM peers added over REST (`PUT /modalities/{name}`), kept here so that every server
-- sharing this index knows them. Those of the settings file are not stored. The definition is
-- the peer's JSON (dicom::modalities owns its shape), so adding a field needs no migration.
CREATE TABLE modalities (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL
);
