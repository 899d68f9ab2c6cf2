//! Reading resources back: one resource, a page of a level, the children or the ancestor of a
//! resource. Each read is one SQL statement; children IDs come aggregated in the same row.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, Index, IndexError, Level};

/// One resource as the index knows it; the HTTP layer shapes it into Orthanc's JSON.
#[derive(Debug, Clone)]
pub struct Resource {
    pub level: Level,
    pub id: String,
    /// The parent's ID ("" for a patient).
    pub parent: String,
    /// The level's main DICOM tags, by keyword.
    pub main_tags: serde_json::Map<String, serde_json::Value>,
    /// The patient's main tags, for a study (Orthanc's `PatientMainDicomTags`).
    pub patient_tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// `YYYYMMDDTHHMMSS` of the last instance added under it (for an instance, its arrival).
    pub last_update: String,
    /// The children's IDs, sorted (empty for an instance).
    pub children: Vec<String>,
    /// The stored file, for an instance.
    pub file: Option<StoredFile>,
}

/// Where an instance's part-10 file is and what it is.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub blob_key: String,
    pub size: u64,
    pub sha256: String,
    pub transfer_syntax_uid: String,
    pub has_pixel_data: bool,
}

/// Counts and size of everything under a resource (`/{level}/{id}/statistics`).
#[derive(Debug, Clone, Default)]
pub struct ResourceStatistics {
    pub studies: i64,
    pub series: i64,
    pub instances: i64,
    pub size: i64,
}

/// The columns every resource query returns, under the same names whatever the level, so that
/// one decoder serves them all, and the tables they come from. `r` is the level's table.
pub(super) fn resource_columns(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::Patient => (
            "r.id, '' AS parent, r.main_tags, '' AS patient_tags, r.last_update,
                (SELECT string_agg(c.id, ',' ORDER BY c.id) FROM studies c WHERE c.patient = r.id) AS children,
                '' AS blob_key, CAST(0 AS BIGINT) AS file_size, '' AS sha256, '' AS transfer_syntax_uid,
                CAST(0 AS BIGINT) AS has_pixel_data",
            "patients r",
        ),
        Level::Study => (
            "r.id, r.patient AS parent, r.main_tags, p.main_tags AS patient_tags, r.last_update,
                (SELECT string_agg(c.id, ',' ORDER BY c.id) FROM series c WHERE c.study = r.id) AS children,
                '' AS blob_key, CAST(0 AS BIGINT) AS file_size, '' AS sha256, '' AS transfer_syntax_uid,
                CAST(0 AS BIGINT) AS has_pixel_data",
            "studies r JOIN patients p ON p.id = r.patient",
        ),
        Level::Series => (
            "r.id, r.study AS parent, r.main_tags, '' AS patient_tags, r.last_update,
                (SELECT string_agg(c.id, ',' ORDER BY c.id) FROM instances c WHERE c.series = r.id) AS children,
                '' AS blob_key, CAST(0 AS BIGINT) AS file_size, '' AS sha256, '' AS transfer_syntax_uid,
                CAST(0 AS BIGINT) AS has_pixel_data",
            "series r",
        ),
        Level::Instance => (
            "r.id, r.series AS parent, r.main_tags, '' AS patient_tags, r.received_at AS last_update,
                '' AS children, r.blob_key, r.file_size, r.sha256, r.transfer_syntax_uid,
                r.has_pixel_data",
            "instances r",
        ),
    }
}

/// `SELECT <resource columns> FROM <level's table>`.
pub(super) fn select_resource(level: Level) -> String {
    let (columns, from) = resource_columns(level);
    format!("SELECT {columns} FROM {from}")
}

/// A row as the decoders below read it, from sqlx or (`quick.rs`) from rusqlite: one decoder
/// for both.
pub(super) trait Columns {
    type Error;
    fn text(&self, column: &str) -> Result<Option<String>, Self::Error>;
    fn int(&self, column: &str) -> Result<i64, Self::Error>;
}

impl Columns for AnyRow {
    type Error = sqlx::Error;
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
}

pub(super) fn decode_resource<R: Columns>(level: Level, row: &R) -> Result<Resource, R::Error> {
    let text =
        |column: &str| -> Result<String, R::Error> { Ok(row.text(column)?.unwrap_or_default()) };
    let tags = |column: &str| -> Result<serde_json::Map<String, serde_json::Value>, R::Error> {
        Ok(serde_json::from_str(&text(column)?).unwrap_or_default())
    };
    let children = text("children")?;
    let children = children
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let file = if level == Level::Instance {
        Some(decode_stored_file(row)?)
    } else {
        None
    };
    Ok(Resource {
        level,
        id: text("id")?,
        parent: text("parent")?,
        main_tags: tags("main_tags")?,
        patient_tags: (level == Level::Study)
            .then(|| tags("patient_tags"))
            .transpose()?,
        last_update: text("last_update")?,
        children,
        file,
    })
}

/// The stored-file columns of an instance row (`blob_key`, `file_size`, `sha256`,
/// `transfer_syntax_uid`, `has_pixel_data`).
/// An instance's file row by ID (`$1`), the columns in `StoredFile`'s order; `quick.rs` runs
/// the same statement.
pub(super) const STORED_FILE: &str = "SELECT blob_key, file_size, sha256, transfer_syntax_uid, \
     has_pixel_data FROM instances WHERE id = $1";

pub(super) fn decode_stored_file<R: Columns>(row: &R) -> Result<StoredFile, R::Error> {
    Ok(StoredFile {
        blob_key: row.text("blob_key")?.unwrap_or_default(),
        size: row.int("file_size")?.max(0) as u64,
        sha256: row.text("sha256")?.unwrap_or_default(),
        transfer_syntax_uid: row.text("transfer_syntax_uid")?.unwrap_or_default(),
        has_pixel_data: row.int("has_pixel_data")? != 0,
    })
}

/// A condition on `alias` (a table of `level`) that holds when the row lies under the
/// resource of `ancestor` whose ID is `$1`.
pub(super) fn under(level: Level, ancestor: Level, alias: &str) -> String {
    under_param(level, ancestor, alias, "$1")
}

/// As `under`, with the ancestor's ID in parameter `param`.
pub(super) fn under_param(level: Level, ancestor: Level, alias: &str, param: &str) -> String {
    let parent_column = level
        .parent_column()
        .expect("only called below the ancestor");
    let parent = level
        .parent()
        .expect("a level with a parent column has a parent");
    if parent == ancestor {
        format!("{alias}.{parent_column} = {param}")
    } else {
        let inner = format!("{alias}_");
        format!(
            "{alias}.{parent_column} IN (SELECT {inner}.id FROM {table} {inner} WHERE {cond})",
            table = parent.table(),
            cond = under_param(parent, ancestor, &inner, param),
        )
    }
}

/// An expression giving the ID of the `ancestor` of the resource of `level` whose ID is `$1`.
fn ancestor_id(level: Level, ancestor: Level) -> String {
    let mut expr = "$1".to_string();
    let mut current = level;
    while current != ancestor {
        let column = current.parent_column().expect("the ancestor is above");
        expr = format!(
            "(SELECT {column} FROM {table} WHERE id = {expr})",
            table = current.table()
        );
        current = current.parent().expect("the ancestor is above");
    }
    expr
}

/// Rows a listing may have to be read on the caller's thread: a few dozen row decodes, about
/// 100 µs, within what a task may take between two awaits.
const ROWS_IN_PLACE: usize = 32;

/// Whether a resource row of `level` is short enough to read on the caller's thread: each row
/// aggregates its children's IDs, and a series may have thousands of instances (milliseconds of
/// SQLite work), where a patient has a few studies and a study a few series.
fn few_children(level: Level) -> bool {
    level != Level::Series
}

impl Index {
    /// One resource, or `None` when the ID is unknown.
    pub async fn resource(&self, level: Level, id: &str) -> Result<Option<Resource>, IndexError> {
        let sql = format!("{} WHERE r.id = $1", select_resource(level));
        let found = self
            .read_resources(level, sql, Some(id), few_children(level))
            .await?;
        Ok(found.into_iter().next())
    }

    /// The resources `sql` selects (`level`'s resource columns; `$1` bound to `id` when given).
    /// SQLite reads them in place (`quick.rs`): on the caller's thread while they are few (and
    /// `in_place`, false where the rows may be many or long), else on the blocking pool,
    /// one hop there and back each where sqlx hands over every row (`/studies?expand` of 4
    /// studies: 5 thread switches and 280 µs of CPU through sqlx, 1 and 140 µs in place).
    async fn read_resources(
        &self,
        level: Level,
        sql: String,
        id: Option<&str>,
        in_place: bool,
    ) -> Result<Vec<Resource>, IndexError> {
        if let Some(quick) = &self.quick {
            let first = match in_place {
                true => quick.resources(level, &sql, id, ROWS_IN_PLACE),
                false => Ok(None),
            };
            let read = match first {
                Ok(Some(found)) => Ok(found),
                Ok(None) => {
                    let (quick, sql, id) = (quick.clone(), sql.clone(), id.map(str::to_string));
                    // Without a budget every row comes: `None` cannot.
                    tokio::task::spawn_blocking(move || {
                        quick.resources(level, &sql, id.as_deref(), usize::MAX)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|read| {
                        read.map(Option::unwrap_or_default)
                            .map_err(|e| e.to_string())
                    })
                }
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(found) => return Ok(found),
                Err(e) => tracing::debug!(error = %e, "quick read failed; asking sqlx"),
            }
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(id) = id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&mut *self.pool.acquire().await?).await?;
        let found: Result<Vec<Resource>, sqlx::Error> =
            rows.iter().map(|row| decode_resource(level, row)).collect();
        Ok(found?)
    }

    /// An instance's stored file alone, or `None` when the ID is unknown: what a download
    /// needs, without the tags a full resource row decodes.
    pub async fn stored_file(&self, id: &str) -> Result<Option<StoredFile>, IndexError> {
        if let Some(quick) = &self.quick {
            match quick.stored_file(id) {
                Ok(found) => return Ok(found),
                Err(e) => tracing::debug!(error = %e, "quick read failed; asking sqlx"),
            }
        }
        let row = sqlx::query(STORED_FILE)
            .bind(id)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?;
        Ok(row.map(|row| decode_stored_file(&row)).transpose()?)
    }

    /// IDs of a level, in ID order, skipping `since` and returning at most `limit`, as a JSON
    /// array made by the database: one row to hand over instead of one per ID, which on SQLite
    /// is a channel message each (a listing of 1,000 instances took 1.7 ms, Orthanc's 0.7).
    pub async fn list_ids_json(
        &self,
        level: Level,
        since: u64,
        limit: Option<u64>,
    ) -> Result<String, IndexError> {
        let page = format!(
            "SELECT id FROM {} ORDER BY id {}",
            level.table(),
            page_clause(since, limit)
        );
        let sql = match self.backend {
            // The subquery runs as a co-routine over the primary key, so the array gets the
            // IDs in its order; an ORDER BY in the aggregate sorted them again in a temporary
            // b-tree (`GET /instances` of 1,000: 0.57–0.60 ms before, 0.34–0.38 without). A test
            // holds the order.
            Backend::Sqlite => format!("SELECT json_group_array(id) FROM ({page})"),
            Backend::Postgres => {
                format!("SELECT COALESCE(json_agg(id ORDER BY id), '[]')::text FROM ({page}) p")
            }
        };
        let json: String = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *self.pool.acquire().await?)
            .await?;
        Ok(json)
    }

    /// Full resources of a level, in ID order, paged as `list_ids`.
    pub async fn list_resources(
        &self,
        level: Level,
        since: u64,
        limit: Option<u64>,
    ) -> Result<Vec<Resource>, IndexError> {
        let sql = format!(
            "{} ORDER BY r.id {}",
            select_resource(level),
            page_clause(since, limit)
        );
        // A page that skips rows or asks for more than fit in place goes to the blocking pool
        // at once, rather than after a first try.
        let in_place = since == 0 && limit.is_none_or(|l| l <= ROWS_IN_PLACE as u64);
        self.read_resources(level, sql, None, in_place).await
    }

    /// Every resource of `level` under the resource `ancestor`/`id`, in ID order.
    pub async fn descendants(
        &self,
        ancestor: Level,
        id: &str,
        level: Level,
    ) -> Result<Vec<Resource>, IndexError> {
        let sql = format!(
            "{} WHERE {} ORDER BY r.id",
            select_resource(level),
            under(level, ancestor, "r")
        );
        self.read_resources(level, sql, Some(id), true).await
    }

    /// The resource of level `ancestor` above `level`/`id`, or `None` when `id` is unknown.
    pub async fn ancestor(
        &self,
        level: Level,
        id: &str,
        ancestor: Level,
    ) -> Result<Option<Resource>, IndexError> {
        let sql = format!(
            "{} WHERE r.id = {}",
            select_resource(ancestor),
            ancestor_id(level, ancestor)
        );
        let found = self
            .read_resources(ancestor, sql, Some(id), few_children(ancestor))
            .await?;
        Ok(found.into_iter().next())
    }

    /// Counts and total file size under a resource (the resource itself included).
    pub async fn resource_statistics(
        &self,
        level: Level,
        id: &str,
    ) -> Result<ResourceStatistics, IndexError> {
        let count = |below: Level| -> String {
            if below <= level {
                "CAST(0 AS BIGINT)".to_string()
            } else {
                format!(
                    "(SELECT COUNT(*) FROM {} r WHERE {})",
                    below.table(),
                    under(below, level, "r")
                )
            }
        };
        let instances = if level == Level::Instance {
            "r.id = $1".to_string()
        } else {
            under(Level::Instance, level, "r")
        };
        let sql = format!(
            "SELECT {} AS studies, {} AS series,
                (SELECT COUNT(*) FROM instances r WHERE {instances}) AS instances,
                (SELECT CAST(COALESCE(SUM(r.file_size), 0) AS BIGINT) FROM instances r WHERE {instances}) AS size",
            count(Level::Study),
            count(Level::Series),
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *self.pool.acquire().await?)
            .await?;
        Ok(ResourceStatistics {
            studies: row.try_get("studies")?,
            series: row.try_get("series")?,
            instances: row.try_get("instances")?,
            size: row.try_get("size")?,
        })
    }

    /// Resources whose identifying UID (PatientID, Study/Series/SOP Instance UID) is `uid`,
    /// patients first, as Orthanc's `/tools/lookup`.
    pub async fn lookup(&self, uid: &str) -> Result<Vec<(Level, String)>, IndexError> {
        let rows = sqlx::query(LOOKUP)
            .bind(uid)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?;
        rows.iter()
            .map(|row| {
                let level: i64 = row.try_get("level")?;
                Ok((Level::ALL[level as usize], row.try_get("id")?))
            })
            .collect()
    }
}

/// `/tools/lookup`: exact matches on each level's indexed identifier column.
pub(super) const LOOKUP: &str =
    "SELECT CAST(0 AS BIGINT) AS level, id FROM patients WHERE patient_id = $1
     UNION ALL SELECT 1, id FROM studies WHERE study_uid = $1
     UNION ALL SELECT 2, id FROM series WHERE series_uid = $1
     UNION ALL SELECT 3, id FROM instances WHERE sop_instance_uid = $1
     ORDER BY 1, 2";

/// `LIMIT … OFFSET …` written into the statement rather than bound: with the limit a parameter,
/// PostgreSQL's generic plan (used after a few runs of a prepared statement) cannot know the
/// page is small and may sort every match before cutting. Both are integers of ours.
pub(super) fn page_clause(since: u64, limit: Option<u64>) -> String {
    // SQLite needs a LIMIT before an OFFSET; the largest value means none in both.
    let limit = limit.map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64);
    let offset = since.min(i64::MAX as u64);
    format!("LIMIT {limit} OFFSET {offset}")
}

/// A series to put in an archive, with the main tags its folders are named after.
#[derive(Debug, Clone)]
pub struct ArchiveSeries {
    pub patient_id: String,
    pub patient_tags: serde_json::Map<String, serde_json::Value>,
    pub study_id: String,
    pub study_tags: serde_json::Map<String, serde_json::Value>,
    pub series_id: String,
    pub series_tags: serde_json::Map<String, serde_json::Value>,
}

/// An instance to put in an archive.
#[derive(Debug, Clone)]
pub struct ArchiveInstance {
    pub series_id: String,
    pub instance_number: String,
    pub blob_key: String,
    pub size: u64,
}

impl Index {
    /// Everything an archive of `level`/`id` holds: its series (sorted by patient, study,
    /// series) and their instances (sorted by series, then instance number). Compact rows, so
    /// that even a large patient costs little memory.
    pub async fn archive_contents(
        &self,
        level: Level,
        id: &str,
    ) -> Result<(Vec<ArchiveSeries>, Vec<ArchiveInstance>), IndexError> {
        let series_condition = match level {
            Level::Series => "se.id = $1".to_string(),
            Level::Instance => "se.id = (SELECT series FROM instances WHERE id = $1)".into(),
            _ => under(Level::Series, level, "se"),
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT p.id AS patient_id, p.main_tags AS patient_tags, st.id AS study_id,
                st.main_tags AS study_tags, se.id AS series_id, se.main_tags AS series_tags
             FROM series se JOIN studies st ON st.id = se.study JOIN patients p ON p.id = st.patient
             WHERE {series_condition} ORDER BY p.id, st.id, se.id"
        )))
        .bind(id)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?;
        let tags = |row: &AnyRow, column: &str| -> Result<serde_json::Map<_, _>, IndexError> {
            let text: String = row.try_get(column)?;
            Ok(serde_json::from_str(&text).unwrap_or_default())
        };
        let series = rows
            .iter()
            .map(|row| {
                Ok(ArchiveSeries {
                    patient_id: row.try_get("patient_id")?,
                    patient_tags: tags(row, "patient_tags")?,
                    study_id: row.try_get("study_id")?,
                    study_tags: tags(row, "study_tags")?,
                    series_id: row.try_get("series_id")?,
                    series_tags: tags(row, "series_tags")?,
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()?;

        let instance_condition = if level == Level::Instance {
            "r.id = $1".to_string()
        } else {
            under(Level::Instance, level, "r")
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT r.series, r.instance_number, r.blob_key, r.file_size FROM instances r
             WHERE {instance_condition} ORDER BY r.series, r.id"
        )))
        .bind(id)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?;
        let instances = rows
            .iter()
            .map(|row| {
                Ok(ArchiveInstance {
                    series_id: row.try_get("series")?,
                    instance_number: row.try_get("instance_number")?,
                    blob_key: row.try_get("blob_key")?,
                    size: row.try_get::<i64, _>("file_size")?.max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        Ok((series, instances))
    }
}
