//! Statements of a write sent to the database together: on SQLite as one query of several
//! statements, so one round trip to its connection's thread instead of one each (each costs two
//! thread wake-ups, which is most of a small batch's time); on PostgreSQL one by one, since its
//! extended protocol takes one statement per query.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, AssertSqlSafe, Transaction};

use super::{Backend, IndexError};

pub(super) struct Script {
    backend: Backend,
    /// SQLite: at most one entry, its statements joined; PostgreSQL: one per statement.
    statements: Vec<(String, AnyArguments)>,
}

impl Script {
    pub(super) fn new(backend: Backend) -> Self {
        Script {
            backend,
            statements: Vec::new(),
        }
    }

    /// Where the next statement goes: its text is appended to the `String`, and its
    /// placeholders are numbered from `Arguments::len() + 1` of the arguments it adds to (the
    /// numbers run on across the statements SQLite receives together).
    pub(super) fn statement(&mut self) -> (&mut String, &mut AnyArguments) {
        match self.statements.last_mut() {
            Some((sql, _)) if self.backend == Backend::Sqlite => sql.push_str(";\n"),
            _ => self
                .statements
                .push((String::new(), AnyArguments::default())),
        }
        let (sql, args) = self
            .statements
            .last_mut()
            .expect("a statement was just added");
        (sql, args)
    }

    pub(super) async fn execute(
        self,
        tx: &mut Transaction<'static, Any>,
    ) -> Result<(), IndexError> {
        self.fetch_all(tx).await.map(drop)
    }

    /// The rows every statement returns, in the order of the statements.
    pub(super) async fn fetch_all(
        self,
        tx: &mut Transaction<'static, Any>,
    ) -> Result<Vec<AnyRow>, IndexError> {
        let mut rows = Vec::new();
        for (sql, args) in self.statements {
            rows.extend(
                sqlx::query_with(AssertSqlSafe(sql), args)
                    .fetch_all(&mut **tx)
                    .await?,
            );
        }
        Ok(rows)
    }
}

/// Adds one argument; the error is sqlx's own for a value it cannot encode.
pub(super) fn add<'t, T>(args: &mut AnyArguments, value: T) -> Result<(), IndexError>
where
    T: sqlx::Encode<'t, Any> + sqlx::Type<Any>,
{
    args.add(value)
        .map_err(|e| IndexError::from(sqlx::Error::Encode(e)))
}
