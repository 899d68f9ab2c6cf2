-- Finds match PatientID without regard to case unless asked otherwise, comparing
-- UPPER(patient_id); this index serves them as patients_patient_id serves exact matches.
-- (UIDs are matched as written, on their own indexed columns: they have no case.)
CREATE INDEX patients_patient_id_upper ON patients (UPPER(patient_id));

-- The counts and total file size behind GET /statistics, kept by the triggers below in the
-- transaction that changes the rows, so that reading them costs one row instead of counting
-- every table. SQLite has one writer at a time, so one row (shard 0) serves; the column is
-- there for the same read as on PostgreSQL, which spreads its writers over several rows.
CREATE TABLE resource_counts (
    shard       INTEGER PRIMARY KEY,
    patients    BIGINT NOT NULL,
    studies     BIGINT NOT NULL,
    series      BIGINT NOT NULL,
    instances   BIGINT NOT NULL,
    total_size  BIGINT NOT NULL
);
INSERT INTO resource_counts (shard, patients, studies, series, instances, total_size)
SELECT 0, (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies),
    (SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instances),
    (SELECT COALESCE(SUM(file_size), 0) FROM instances);

-- Rows skipped by INSERT … ON CONFLICT DO NOTHING fire no trigger; a replaced copy (ON CONFLICT
-- DO UPDATE) fires the UPDATE trigger only.
CREATE TRIGGER patients_added AFTER INSERT ON patients BEGIN
    UPDATE resource_counts SET patients = patients + 1 WHERE shard = 0;
END;
CREATE TRIGGER patients_removed AFTER DELETE ON patients BEGIN
    UPDATE resource_counts SET patients = patients - 1 WHERE shard = 0;
END;
CREATE TRIGGER studies_added AFTER INSERT ON studies BEGIN
    UPDATE resource_counts SET studies = studies + 1 WHERE shard = 0;
END;
CREATE TRIGGER studies_removed AFTER DELETE ON studies BEGIN
    UPDATE resource_counts SET studies = studies - 1 WHERE shard = 0;
END;
CREATE TRIGGER series_added AFTER INSERT ON series BEGIN
    UPDATE resource_counts SET series = series + 1 WHERE shard = 0;
END;
CREATE TRIGGER series_removed AFTER DELETE ON series BEGIN
    UPDATE resource_counts SET series = series - 1 WHERE shard = 0;
END;
CREATE TRIGGER instances_added AFTER INSERT ON instances BEGIN
    UPDATE resource_counts
    SET instances = instances + 1, total_size = total_size + NEW.file_size WHERE shard = 0;
END;
CREATE TRIGGER instances_removed AFTER DELETE ON instances BEGIN
    UPDATE resource_counts
    SET instances = instances - 1, total_size = total_size - OLD.file_size WHERE shard = 0;
END;
CREATE TRIGGER instances_resized AFTER UPDATE OF file_size ON instances BEGIN
    UPDATE resource_counts
    SET total_size = total_size - OLD.file_size + NEW.file_size WHERE shard = 0;
END;
