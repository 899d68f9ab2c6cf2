//! Query plans: what the backend does with a find, a lookup or another read (SQLite's
//! `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN`), one line per step. Tests use them to check
//! that matches on identifiers go through an index; they also serve to look into a slow find.

use sqlx::{AssertSqlSafe, Row};

use super::find::FindSql;
use super::read::LOOKUP;
use super::{Backend, FindError, FindRequest, Index, IndexError};

impl Index {
    /// The plan of `find(request, true)`.
    pub async fn explain_find(&self, request: &FindRequest) -> Result<Vec<String>, FindError> {
        let find = FindSql::new(self.backend, request, true)?;
        let binds: Vec<&str> = find.binds.iter().map(String::as_str).collect();
        Ok(self.explain(&find.sql, &binds).await?)
    }

    /// The plan of `lookup(value)`.
    pub async fn explain_lookup(&self, value: &str) -> Result<Vec<String>, IndexError> {
        self.explain(LOOKUP, &[value]).await
    }

    /// The plan of `sql` with its parameters (on PostgreSQL the plan depends on their values).
    pub(super) async fn explain(
        &self,
        sql: &str,
        binds: &[&str],
    ) -> Result<Vec<String>, IndexError> {
        let (explain, column) = match self.backend {
            Backend::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
            Backend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        };
        let mut query = sqlx::query(AssertSqlSafe(format!("{explain} {sql}")));
        for value in binds {
            query = query.bind(*value);
        }
        let rows = query.fetch_all(&mut *self.pool.acquire().await?).await?;
        rows.iter()
            .map(|row| row.try_get(column).map_err(IndexError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverwritePolicy;
    use crate::index::Level;
    use crate::index::batch::tests::instance;

    fn find(level: Level, tag: &str, value: &str, case_sensitive: bool) -> FindRequest {
        FindRequest {
            level,
            query: vec![(tag.to_string(), value.to_string())],
            case_sensitive,
            names_any_case: false,
            since: 0,
            limit: None,
            order_by: Vec::new(),
            parent: None,
            requested_tags: Vec::new(),
        }
    }

    /// A SQLite plan reads no table whole: each step is a `SEARCH` through an index (or a
    /// temporary B-tree for the order), never a `SCAN` — but of the page of IDs a find picks
    /// first, which is its own small result.
    fn assert_searches(what: &str, plan: &[String]) {
        let of_the_page = |step: &String| step == "SCAN page" || step.starts_with("SCAN (subquery");
        assert!(
            plan.iter()
                .all(|step| !step.starts_with("SCAN") || of_the_page(step)),
            "{what} scans: {plan:?}"
        );
        assert!(
            plan.iter().any(|step| step.contains("USING INDEX")
                || step.contains("USING COVERING INDEX")
                || step.contains("USING INTEGER PRIMARY KEY")),
            "{what} uses no index: {plan:?}"
        );
    }

    /// Every find on an identifier, at its level or below it, in either case mode, and the
    /// lookup, are index searches on SQLite; they still find what they should, and a wildcard
    /// on a UID still matches (through a scan).
    #[tokio::test]
    async fn identifier_matches_search_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
        let index = Index::open(&url).await.unwrap();
        let at = "20260101T000000";
        let news = [
            instance("PAT1", "1.1", "1.1.1", "1.1.1.1", at),
            instance("PAT1", "1.1", "1.1.1", "1.1.1.2", at),
            instance("PAT2", "2.1", "2.1.1", "2.1.1.1", at),
        ];
        for new in &news {
            index
                .store_instance(new.clone(), OverwritePolicy::Never)
                .await
                .unwrap();
        }
        let ids = &news[0].ids;
        let cases = [
            (Level::Patient, "PatientID", "PAT1", vec![&ids.patient]),
            (Level::Patient, "PatientID", "pat1", vec![&ids.patient]),
            (Level::Study, "StudyInstanceUID", "1.1", vec![&ids.study]),
            (Level::Study, "PatientID", "PAT1", vec![&ids.study]),
            (
                Level::Series,
                "SeriesInstanceUID",
                "1.1.1",
                vec![&ids.series],
            ),
            (
                Level::Instance,
                "SOPInstanceUID",
                "1.1.1.1",
                vec![&ids.instance],
            ),
            (Level::Instance, "0008,0018", "1.1.1.1", vec![&ids.instance]),
            (
                Level::Instance,
                "SOPInstanceUID",
                "1.1.1.1\\2.1.1.1",
                vec![&ids.instance, &news[2].ids.instance],
            ),
            (
                Level::Instance,
                "SeriesInstanceUID",
                "1.1.1",
                vec![&ids.instance, &news[1].ids.instance],
            ),
            (
                Level::Instance,
                "StudyInstanceUID",
                "1.1",
                vec![&ids.instance, &news[1].ids.instance],
            ),
        ];
        for (level, tag, value, want) in cases {
            for case_sensitive in [false, true] {
                let request = find(level, tag, value, case_sensitive);
                let what = format!("{level} {tag}={value} (case-sensitive: {case_sensitive})");
                assert_searches(&what, &index.explain_find(&request).await.unwrap());
                if case_sensitive && value == "pat1" {
                    continue;
                }
                let mut found: Vec<String> = index
                    .find(&request, false)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|f| f.resource.id)
                    .collect();
                found.sort();
                let mut want: Vec<String> = want.iter().map(|id| id.to_string()).collect();
                want.sort();
                assert_eq!(found, want, "{what}");
            }
        }
        assert_searches("lookup", &index.explain_lookup("1.1.1.1").await.unwrap());

        let wildcard = find(Level::Instance, "SOPInstanceUID", "1.1.1.*", false);
        assert_eq!(index.find(&wildcard, false).await.unwrap().len(), 2);
    }
}
