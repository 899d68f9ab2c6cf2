-- Patients, studies, series and instances, keyed by their Orthanc-compatible IDs.
-- main_tags holds the level's main DICOM tags as a JSON object, as Orthanc returns them;
-- the columns beside it are the ones queries filter and sort on.

CREATE TABLE patients (
    id            TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL,
    patient_name  TEXT NOT NULL,
    birth_date    TEXT NOT NULL,
    sex           TEXT NOT NULL,
    main_tags     TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX patients_patient_id ON patients (patient_id);

CREATE TABLE studies (
    id                TEXT PRIMARY KEY,
    patient           TEXT NOT NULL REFERENCES patients (id),
    study_uid         TEXT NOT NULL,
    study_date        TEXT NOT NULL,
    accession_number  TEXT NOT NULL,
    description       TEXT NOT NULL,
    main_tags         TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE INDEX studies_patient ON studies (patient);
CREATE INDEX studies_uid ON studies (study_uid);
CREATE INDEX studies_date ON studies (study_date);

CREATE TABLE series (
    id             TEXT PRIMARY KEY,
    study          TEXT NOT NULL REFERENCES studies (id),
    series_uid     TEXT NOT NULL,
    modality       TEXT NOT NULL,
    series_number  TEXT NOT NULL,
    main_tags      TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX series_study ON series (study);
CREATE INDEX series_uid ON series (series_uid);

CREATE TABLE instances (
    id                   TEXT PRIMARY KEY,
    series               TEXT NOT NULL REFERENCES series (id),
    sop_instance_uid     TEXT NOT NULL,
    sop_class_uid        TEXT NOT NULL,
    instance_number      TEXT NOT NULL,
    transfer_syntax_uid  TEXT NOT NULL,
    blob_key             TEXT NOT NULL UNIQUE,
    file_size            BIGINT NOT NULL,
    sha256               TEXT NOT NULL,
    remote_aet           TEXT NOT NULL,
    main_tags            TEXT NOT NULL,
    received_at          TEXT NOT NULL
);
CREATE INDEX instances_series ON instances (series);
CREATE INDEX instances_uid ON instances (sop_instance_uid);
