//! `/tools/find` as one SQL statement: constraints on main tags of the level and its
//! ancestors (exact, wildcard, list, date range), ordering, paging and a few computed tags,
//! answered from the index alone.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AssertSqlSafe, Row};

use super::read::{decode_resource, resource_columns, under_param};
use super::{Backend, Index, IndexError, Level, Resource, fold_case};
use crate::main_tags;

/// A find, already parsed from its JSON.
#[derive(Debug, Clone)]
pub struct FindRequest {
    pub level: Level,
    /// Tag (keyword or `gggg,eeee`) → pattern, as in Orthanc's `Query`.
    pub query: Vec<(String, String)>,
    pub case_sensitive: bool,
    /// Person names match whatever their case, even when `case_sensitive` (C-FIND's rule in
    /// dcmtk and Orthanc).
    pub names_any_case: bool,
    pub since: u64,
    pub limit: Option<u64>,
    pub order_by: Vec<OrderBy>,
    /// Only resources under this one (Orthanc's `ParentPatient`, `ParentStudy`, …).
    pub parent: Option<(Level, String)>,
    /// Computed tags to return with each resource (see `COMPUTED`).
    pub requested_tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OrderBy {
    pub key: OrderKey,
    pub descending: bool,
}

#[derive(Debug, Clone)]
pub enum OrderKey {
    /// A main tag of the level or an ancestor.
    Tag(String),
    /// Orthanc's `LastUpdate` metadata.
    LastUpdate,
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The request cannot be answered as asked (a 400).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// One match, with the computed tags that were asked for.
#[derive(Debug, Clone)]
pub struct Found {
    pub resource: Resource,
    pub computed: BTreeMap<String, String>,
}

/// Tags Orthanc computes rather than reads, by the level they apply to.
const COMPUTED: &[(&str, Level)] = &[
    ("ModalitiesInStudy", Level::Study),
    ("SOPClassesInStudy", Level::Study),
    ("NumberOfStudyRelatedSeries", Level::Study),
    ("NumberOfStudyRelatedInstances", Level::Study),
    ("NumberOfSeriesRelatedInstances", Level::Series),
    ("NumberOfPatientRelatedStudies", Level::Patient),
];

/// The SQL being built, with its parameters in order.
struct Statement {
    backend: Backend,
    level: Level,
    /// Ancestor levels that must be joined.
    joins: BTreeSet<Level>,
    conditions: Vec<String>,
    binds: Vec<String>,
}

impl Statement {
    fn bind(&mut self, value: String) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// The alias of the table holding `level`'s rows in this statement.
    fn alias(&mut self, level: Level) -> String {
        if level == self.level {
            "r".into()
        } else {
            self.joins.insert(level);
            format!("a_{}", level.table())
        }
    }

    /// The SQL expression of a main tag, "" when the resource does not have it.
    fn tag_expression(&mut self, keyword: &str) -> Result<String, FindError> {
        let tag_level = main_tags::level_of(keyword).ok_or_else(|| {
            FindError::Invalid(format!(
                "{keyword} is not a main DICOM tag; only main tags can be searched"
            ))
        })?;
        if tag_level > self.level {
            return Err(FindError::Invalid(format!(
                "{keyword} is a {tag_level}-level tag and cannot be searched at {} level",
                self.level
            )));
        }
        let alias = self.alias(tag_level);
        Ok(match dedicated_column(tag_level, keyword) {
            Some(column) => format!("{alias}.{column}"),
            None => match self.backend {
                Backend::Sqlite => {
                    format!("COALESCE(json_extract({alias}.main_tags, '$.{keyword}'), '')")
                }
                Backend::Postgres => {
                    format!("COALESCE(({alias}.main_tags::jsonb ->> '{keyword}'), '')")
                }
            },
        })
    }

    /// Adds the constraint `keyword` matches `pattern`.
    fn constrain(
        &mut self,
        keyword: &str,
        pattern: &str,
        case_sensitive: bool,
    ) -> Result<(), FindError> {
        let matcher = Matcher::parse(pattern, main_tags::is_date_or_time(keyword));
        if matches!(matcher, Matcher::Any) {
            return Ok(());
        }
        if keyword == "ModalitiesInStudy" && self.level == Level::Study {
            let condition = self.condition("m.modality", &matcher, case_sensitive, None);
            self.conditions.push(format!(
                "EXISTS (SELECT 1 FROM series m WHERE m.study = r.id AND {condition})"
            ));
            return Ok(());
        }
        let expression = self.tag_expression(keyword)?;
        // Person names have a column folded by Rust, which knows more than ASCII.
        let folded = (keyword == "PatientName")
            .then(|| expression.replace(".patient_name", ".patient_name_folded"));
        // UIDs have no case: matched as written, on the column itself, so that its index serves
        // the match (`UPPER(column)` would scan the table). PatientID keeps the request's case
        // rule, with an index on `UPPER(patient_id)` for the insensitive one.
        let case_sensitive = case_sensitive || main_tags::is_uid(keyword);
        let condition = self.condition(&expression, &matcher, case_sensitive, folded);
        self.conditions.push(condition);
        Ok(())
    }

    fn condition(
        &mut self,
        expression: &str,
        matcher: &Matcher,
        case_sensitive: bool,
        folded_column: Option<String>,
    ) -> String {
        // Case-insensitive: both sides upper-cased. Ranges compare dates and times, which
        // have no case.
        let (left, fold): (String, fn(&str) -> String) = match (case_sensitive, folded_column) {
            (true, _) => (expression.to_string(), |v| v.to_string()),
            (false, Some(column)) => (column, fold_case),
            (false, None) => (format!("UPPER({expression})"), |v| v.to_ascii_uppercase()),
        };
        match matcher {
            Matcher::Any => "1 = 1".into(),
            Matcher::Exact(value) => format!("{left} = {}", self.bind(fold(value))),
            Matcher::Wildcard(value) => {
                format!(
                    "{left} LIKE {} ESCAPE '\\'",
                    self.bind(like_pattern(&fold(value)))
                )
            }
            Matcher::List(values) => {
                let placeholders: Vec<String> = values.iter().map(|v| self.bind(fold(v))).collect();
                format!("{left} IN ({})", placeholders.join(", "))
            }
            Matcher::Range(lower, upper) => {
                let mut parts = vec![format!("{expression} <> ''")];
                if let Some(lower) = lower {
                    parts.push(format!("{expression} >= {}", self.bind(lower.clone())));
                }
                if let Some(upper) = upper {
                    parts.push(format!("{expression} <= {}", self.bind(upper.clone())));
                }
                parts.join(" AND ")
            }
        }
    }

    /// `JOIN`s from the level up to the highest ancestor used.
    fn join_clause(&self) -> String {
        let Some(top) = self.joins.iter().next().copied() else {
            return String::new();
        };
        let mut sql = String::new();
        let mut below = (self.level, "r".to_string());
        for ancestor in self.level.ancestors() {
            if ancestor < top {
                break;
            }
            let column = below.0.parent_column().expect("a level with an ancestor");
            let alias = format!("a_{}", ancestor.table());
            sql.push_str(&format!(
                " JOIN {table} {alias} ON {alias}.id = {below}.{column}",
                table = ancestor.table(),
                below = below.1
            ));
            below = (ancestor, alias);
        }
        sql
    }
}

/// How one query value matches, after DICOM's rules (PS3.4 C.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Any,
    Exact(String),
    Wildcard(String),
    List(Vec<String>),
    Range(Option<String>, Option<String>),
}

impl Matcher {
    fn parse(pattern: &str, is_date_or_time: bool) -> Matcher {
        if pattern.is_empty() || pattern.chars().all(|c| c == '*') {
            Matcher::Any
        } else if is_date_or_time && pattern.contains('-') {
            let (lower, upper) = pattern.split_once('-').expect("contains a dash");
            let bound = |s: &str| (!s.is_empty()).then(|| s.to_string());
            Matcher::Range(bound(lower), bound(upper))
        } else if pattern.contains('\\') {
            Matcher::List(pattern.split('\\').map(str::to_string).collect())
        } else if pattern.contains(['*', '?']) {
            Matcher::Wildcard(pattern.to_string())
        } else {
            Matcher::Exact(pattern.to_string())
        }
    }
}

/// A DICOM wildcard pattern as an SQL `LIKE` pattern with `\` as escape.
fn like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Main tags with a column of their own (indexed, or at least not inside the JSON).
fn dedicated_column(level: Level, keyword: &str) -> Option<&'static str> {
    Some(match (level, keyword) {
        (Level::Patient, "PatientID") => "patient_id",
        (Level::Patient, "PatientName") => "patient_name",
        (Level::Patient, "PatientBirthDate") => "birth_date",
        (Level::Patient, "PatientSex") => "sex",
        (Level::Study, "StudyInstanceUID") => "study_uid",
        (Level::Study, "StudyDate") => "study_date",
        (Level::Study, "AccessionNumber") => "accession_number",
        (Level::Study, "StudyDescription") => "description",
        (Level::Series, "SeriesInstanceUID") => "series_uid",
        (Level::Series, "Modality") => "modality",
        (Level::Series, "SeriesNumber") => "series_number",
        (Level::Instance, "SOPInstanceUID") => "sop_instance_uid",
        (Level::Instance, "InstanceNumber") => "instance_number",
        _ => return None,
    })
}

/// The SQL of a computed tag for rows `r` of `level`, if it applies there.
fn computed_column(backend: Backend, name: &str, level: Level) -> Option<String> {
    let (_, applies) = COMPUTED.iter().find(|(n, _)| *n == name)?;
    if *applies != level {
        return None;
    }
    Some(match name {
        "ModalitiesInStudy" => match backend {
            Backend::Sqlite => {
                "(SELECT group_concat(DISTINCT m.modality) FROM series m WHERE m.study = r.id)"
            }
            Backend::Postgres => {
                "(SELECT string_agg(DISTINCT m.modality, ',') FROM series m WHERE m.study = r.id)"
            }
        }
        .to_string(),
        "SOPClassesInStudy" => match backend {
            Backend::Sqlite => {
                "(SELECT group_concat(DISTINCT m.sop_class_uid) FROM instances m \
                 JOIN series ms ON ms.id = m.series WHERE ms.study = r.id)"
            }
            Backend::Postgres => {
                "(SELECT string_agg(DISTINCT m.sop_class_uid, ',') FROM instances m \
                 JOIN series ms ON ms.id = m.series WHERE ms.study = r.id)"
            }
        }
        .to_string(),
        "NumberOfStudyRelatedSeries" => {
            "(SELECT CAST(COUNT(*) AS TEXT) FROM series m WHERE m.study = r.id)".into()
        }
        "NumberOfStudyRelatedInstances" => "(SELECT CAST(COUNT(*) AS TEXT) FROM instances m \
             JOIN series ms ON ms.id = m.series WHERE ms.study = r.id)"
            .into(),
        "NumberOfSeriesRelatedInstances" => {
            "(SELECT CAST(COUNT(*) AS TEXT) FROM instances m WHERE m.series = r.id)".into()
        }
        "NumberOfPatientRelatedStudies" => {
            "(SELECT CAST(COUNT(*) AS TEXT) FROM studies m WHERE m.patient = r.id)".into()
        }
        _ => return None,
    })
}

/// A find as one SQL statement: the text, its parameters in order, and the computed tags it
/// selects (name, SQL) as `computed_0`, `computed_1`, ….
pub(crate) struct FindSql {
    pub(crate) sql: String,
    pub(crate) binds: Vec<String>,
    computed: Vec<(String, String)>,
}

impl FindSql {
    pub(crate) fn new(
        backend: Backend,
        request: &FindRequest,
        expand: bool,
    ) -> Result<FindSql, FindError> {
        let level = request.level;
        let mut statement = Statement {
            backend,
            level,
            joins: BTreeSet::new(),
            conditions: Vec::new(),
            binds: Vec::new(),
        };
        for (name, pattern) in &request.query {
            let keyword = if name == "ModalitiesInStudy" {
                name.clone()
            } else {
                main_tags::keyword(name)
                    .ok_or_else(|| FindError::Invalid(format!("unknown DICOM tag {name:?}")))?
            };
            let case_sensitive = request.case_sensitive
                && !(request.names_any_case && main_tags::is_person_name(&keyword));
            statement.constrain(&keyword, pattern, case_sensitive)?;
        }
        if let Some((parent_level, parent_id)) = &request.parent {
            if *parent_level >= level {
                return Err(FindError::Invalid(format!(
                    "a {parent_level} cannot be the parent of a {level}"
                )));
            }
            let param = statement.bind(parent_id.clone());
            statement
                .conditions
                .push(under_param(level, *parent_level, "r", &param));
        }
        let mut order = Vec::new();
        for OrderBy { key, descending } in &request.order_by {
            let expression = match key {
                OrderKey::LastUpdate if level == Level::Instance => "r.received_at".to_string(),
                OrderKey::LastUpdate => "r.last_update".to_string(),
                OrderKey::Tag(name) => {
                    let keyword = main_tags::keyword(name)
                        .ok_or_else(|| FindError::Invalid(format!("unknown DICOM tag {name:?}")))?;
                    statement.tag_expression(&keyword)?
                }
            };
            order.push(format!(
                "{expression} {}",
                if *descending { "DESC" } else { "ASC" }
            ));
        }
        order.push("r.id".into());

        let (columns, from) = resource_columns(level);
        let computed: Vec<(String, String)> = request
            .requested_tags
            .iter()
            .filter_map(|name| computed_column(backend, name, level).map(|sql| (name.clone(), sql)))
            .collect();
        let mut select = if expand {
            columns.to_string()
        } else {
            "r.id".to_string()
        };
        for (i, (_, sql)) in computed.iter().enumerate() {
            select.push_str(&format!(", {sql} AS computed_{i}"));
        }
        let from = if expand {
            from.to_string()
        } else {
            format!("{} r", level.table())
        };
        let where_ = if statement.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", statement.conditions.join(" AND "))
        };
        let order = order.join(", ");
        let page = super::read::page_clause(request.since, request.limit);
        let joins = statement.join_clause();
        let sql = if expand || !computed.is_empty() {
            // The page is chosen first, on IDs alone; only its rows are then expanded and
            // get their computed tags (counts over every instance of a study…), which the
            // databases would otherwise work out for every match before the LIMIT.
            format!(
                "SELECT {select} FROM {from} JOIN (SELECT r.id AS page_id, \
                 ROW_NUMBER() OVER (ORDER BY {order}) AS page_row FROM {table} r{joins} \
                 {where_} ORDER BY {order} {page}) page ON page.page_id = r.id \
                 ORDER BY page.page_row",
                table = level.table(),
            )
        } else {
            format!("SELECT {select} FROM {from}{joins} {where_} ORDER BY {order} {page}")
        };
        Ok(FindSql {
            sql,
            binds: statement.binds,
            computed,
        })
    }
}

impl Index {
    /// Runs a find; with `expand` the full resources, otherwise only their IDs are filled in.
    pub async fn find(&self, request: &FindRequest, expand: bool) -> Result<Vec<Found>, FindError> {
        let level = request.level;
        let FindSql {
            sql,
            binds,
            computed,
        } = FindSql::new(self.backend, request, expand)?;
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in &binds {
            query = query.bind(value.as_str());
        }
        let mut conn = self.pool.acquire().await.map_err(IndexError::from)?;
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(IndexError::from)?;

        rows.iter()
            .map(|row| {
                let resource = if expand {
                    decode_resource(level, row).map_err(IndexError::from)?
                } else {
                    Resource {
                        level,
                        id: row.try_get("id").map_err(IndexError::from)?,
                        parent: String::new(),
                        main_tags: Default::default(),
                        patient_tags: None,
                        last_update: String::new(),
                        children: Vec::new(),
                        file: None,
                    }
                };
                let mut values = BTreeMap::new();
                for (i, (name, _)) in computed.iter().enumerate() {
                    let value: Option<String> = row
                        .try_get(format!("computed_{i}").as_str())
                        .map_err(IndexError::from)?;
                    let mut value = value.unwrap_or_default();
                    if name == "ModalitiesInStudy" {
                        let mut modalities: Vec<&str> =
                            value.split(',').filter(|m| !m.is_empty()).collect();
                        modalities.sort_unstable();
                        modalities.dedup();
                        value = modalities.join("\\");
                    }
                    values.insert(name.clone(), value);
                }
                Ok(Found {
                    resource,
                    computed: values,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_dicom_matching_rules() {
        assert_eq!(Matcher::parse("", false), Matcher::Any);
        assert_eq!(Matcher::parse("*", false), Matcher::Any);
        assert_eq!(
            Matcher::parse("DOE*", false),
            Matcher::Wildcard("DOE*".into())
        );
        assert_eq!(
            Matcher::parse("CT\\MR", false),
            Matcher::List(vec!["CT".into(), "MR".into()])
        );
        assert_eq!(
            Matcher::parse("20200101-20201231", true),
            Matcher::Range(Some("20200101".into()), Some("20201231".into()))
        );
        assert_eq!(
            Matcher::parse("-20201231", true),
            Matcher::Range(None, Some("20201231".into()))
        );
        // A dash is only a range in dates and times.
        assert_eq!(Matcher::parse("A-B", false), Matcher::Exact("A-B".into()));
    }

    #[test]
    fn like_patterns_escape_sql_wildcards() {
        assert_eq!(like_pattern("D?E*"), "D_E%");
        assert_eq!(like_pattern("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
