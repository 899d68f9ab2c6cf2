-- Finds match PatientID without regard to case unless asked otherwise, comparing
-- UPPER(patient_id); this index serves them as patients_patient_id serves exact matches.
-- (UIDs are matched as written, on their own indexed columns: they have no case.)
CREATE INDEX patients_patient_id_upper ON patients (UPPER(patient_id));

-- The counts and total file size behind GET /statistics, kept by the triggers below in the
-- transaction that changes the rows, so that reading them costs 16 rows instead of counting
-- every table. A transaction adds to the row of its transaction ID modulo 16: a writer holds
-- that row's lock until it commits (after waiting for its files), so one row for all would
-- make the writers of several servers wait on each other; with 16 they seldom meet.
CREATE TABLE resource_counts (
    shard       INTEGER PRIMARY KEY,
    patients    BIGINT NOT NULL,
    studies     BIGINT NOT NULL,
    series      BIGINT NOT NULL,
    instances   BIGINT NOT NULL,
    total_size  BIGINT NOT NULL
);
-- Writers of servers still running the previous version wait until this migration commits,
-- so that no row is both missed by the counts below and written before the triggers exist.
LOCK TABLE patients, studies, series, instances IN SHARE MODE;
INSERT INTO resource_counts (shard, patients, studies, series, instances, total_size)
SELECT 0, (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies),
    (SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instances),
    (SELECT COALESCE(SUM(file_size), 0) FROM instances);
INSERT INTO resource_counts (shard, patients, studies, series, instances, total_size)
SELECT shard, 0, 0, 0, 0, 0 FROM generate_series(1, 15) AS shard;

-- Statement-level: a batch's multi-row INSERT updates its counter row once, not once per row.
-- `moved` holds the rows inserted (or deleted); rows skipped by ON CONFLICT DO NOTHING are not
-- in it, and a replaced copy (ON CONFLICT DO UPDATE) fires the UPDATE trigger instead.
CREATE FUNCTION count_moved_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign BIGINT := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
    n BIGINT;
    size BIGINT := 0;
BEGIN
    IF TG_TABLE_NAME = 'instances' THEN
        SELECT COUNT(*), COALESCE(SUM(file_size), 0) INTO n, size FROM moved;
    ELSE
        SELECT COUNT(*) INTO n FROM moved;
    END IF;
    IF n > 0 THEN
        UPDATE resource_counts SET
            patients = patients + CASE WHEN TG_TABLE_NAME = 'patients' THEN sign * n ELSE 0 END,
            studies = studies + CASE WHEN TG_TABLE_NAME = 'studies' THEN sign * n ELSE 0 END,
            series = series + CASE WHEN TG_TABLE_NAME = 'series' THEN sign * n ELSE 0 END,
            instances = instances + CASE WHEN TG_TABLE_NAME = 'instances' THEN sign * n ELSE 0 END,
            total_size = total_size + sign * size
        WHERE shard = txid_current() % 16;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION count_resized_instances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change BIGINT;
BEGIN
    SELECT COALESCE((SELECT SUM(file_size) FROM after_update), 0)
        - COALESCE((SELECT SUM(file_size) FROM before_update), 0) INTO change;
    IF change <> 0 THEN
        UPDATE resource_counts SET total_size = total_size + change
        WHERE shard = txid_current() % 16;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER patients_added AFTER INSERT ON patients
    REFERENCING NEW TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER patients_removed AFTER DELETE ON patients
    REFERENCING OLD TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER studies_added AFTER INSERT ON studies
    REFERENCING NEW TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER studies_removed AFTER DELETE ON studies
    REFERENCING OLD TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER series_added AFTER INSERT ON series
    REFERENCING NEW TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER series_removed AFTER DELETE ON series
    REFERENCING OLD TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER instances_added AFTER INSERT ON instances
    REFERENCING NEW TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER instances_removed AFTER DELETE ON instances
    REFERENCING OLD TABLE AS moved FOR EACH STATEMENT EXECUTE FUNCTION count_moved_rows();
CREATE TRIGGER instances_resized AFTER UPDATE ON instances
    REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update
    FOR EACH STATEMENT EXECUTE FUNCTION count_resized_instances();
