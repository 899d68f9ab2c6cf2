//! DICOM peers defined at run time: their names and JSON definitions, opaque to the index.

use sqlx::Row;

use super::{Index, IndexError};

impl Index {
    /// Every stored peer definition as (name, JSON), by name.
    pub async fn modality_definitions(&self) -> Result<Vec<(String, String)>, IndexError> {
        let rows = sqlx::query("SELECT name, definition FROM modalities ORDER BY name")
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("definition")?)))
            .collect()
    }

    /// Adds or replaces the peer `name`.
    pub async fn put_modality(&self, name: &str, definition: &str) -> Result<(), IndexError> {
        sqlx::query(
            "INSERT INTO modalities (name, definition) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition",
        )
        .bind(name)
        .bind(definition)
        .execute(&mut *self.writer.acquire().await?)
        .await?;
        Ok(())
    }

    /// Removes the peer `name`; whether there was one.
    pub async fn delete_modality(&self, name: &str) -> Result<bool, IndexError> {
        let done = sqlx::query("DELETE FROM modalities WHERE name = $1")
            .bind(name)
            .execute(&mut *self.writer.acquire().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
