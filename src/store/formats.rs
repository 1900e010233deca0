//! Formats and series: a program's agendas and its recurring meetings, and the occurrences a
//! series has made (meetings with `series_id`).

use super::{MeetingRow, Store, StoreError};
use crate::protocol::FormatSpec;
use crate::series::SeriesSpec;
use sqlx::Row;

/// A format as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatRow {
    /// The server's key: [`super::format_key`] of the program and `local_id` for formats created
    /// since ids are per program, the bare id for older ones. Never shown to programs.
    pub id: String,
    /// The format's id as its program gave it: unique within the program and never reused.
    pub local_id: String,
    pub program_id: String,
    pub name: String,
    pub spec: FormatSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A series as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// The server's key, which its occurrences name it by (`meetings.series_id`):
    /// [`super::series_key`] of the program and `local_id` for series created since ids are per
    /// program, the bare id for older ones. Never shown to programs.
    pub id: String,
    /// The series' id as its program gave it (API, join claim `series:<id>`, attendance): unique
    /// within the program and never reused.
    pub local_id: String,
    pub program_id: String,
    pub title: String,
    pub spec: SeriesSpec,
    /// Moves on when the schedule of future occurrences is changed (their keys start afresh).
    pub generation: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set when the program cancelled the series (every future occurrence with it).
    pub cancelled_at: Option<i64>,
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unique(e: sqlx::Error) -> StoreError {
    if super::is_unique_violation(&e) {
        StoreError::Conflict
    } else {
        e.into()
    }
}

impl Store {
    // ---- formats ----

    /// Stores a new format; `Conflict` when its program already used the id (or the key is taken).
    pub async fn create_format(&self, f: &FormatRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO formats (id, program_id, name, spec, created_at, updated_at, local_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&f.id)
        .bind(&f.program_id)
        .bind(&f.name)
        .bind(serde_json::to_string(&f.spec).map_err(corrupt)?)
        .bind(f.created_at)
        .bind(f.updated_at)
        .bind(&f.local_id)
        .execute(&self.pool)
        .await
        .map_err(unique)?;
        Ok(())
    }

    fn format_from_row(r: &sqlx::any::AnyRow) -> Result<FormatRow, StoreError> {
        let spec: String = r.try_get(3)?;
        Ok(FormatRow {
            id: r.try_get(0)?,
            program_id: r.try_get(1)?,
            name: r.try_get(2)?,
            spec: serde_json::from_str(&spec).map_err(corrupt)?,
            created_at: r.try_get(4)?,
            updated_at: r.try_get(5)?,
            local_id: r.try_get(6)?,
        })
    }

    const FORMAT_COLUMNS: &'static str = "id, program_id, name, spec, created_at, updated_at, local_id";

    /// One of `program`'s formats by the id it gave it, deleted or not (`true`: deleted).
    pub async fn program_format(&self, program: &str, local_id: &str) -> Result<Option<(FormatRow, bool)>, StoreError> {
        let sql =
            format!("SELECT {}, deleted_at FROM formats WHERE program_id = $1 AND local_id = $2", Self::FORMAT_COLUMNS);
        let row = sqlx::query(&sql).bind(program).bind(local_id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok((Self::format_from_row(&r)?, r.try_get::<Option<i64>, _>(7)?.is_some()))).transpose()
    }

    /// One of `program`'s formats by the id it gave it, when not deleted.
    pub async fn format(&self, program: &str, local_id: &str) -> Result<Option<FormatRow>, StoreError> {
        Ok(self.program_format(program, local_id).await?.filter(|(_, deleted)| !deleted).map(|(f, _)| f))
    }

    /// A program's formats, oldest first.
    pub async fn formats_of(&self, program: &str) -> Result<Vec<FormatRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM formats WHERE program_id = $1 AND deleted_at IS NULL ORDER BY created_at, local_id LIMIT 1000",
            Self::FORMAT_COLUMNS
        );
        let rows = sqlx::query(&sql).bind(program).fetch_all(&self.pool).await?;
        rows.iter().map(Self::format_from_row).collect()
    }

    /// Replaces a format's name and segments. Meetings already created keep their copy.
    pub async fn update_format(&self, f: &FormatRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE formats SET name = $1, spec = $2, updated_at = $3 WHERE id = $4 AND program_id = $5 AND deleted_at IS NULL",
        )
        .bind(&f.name)
        .bind(serde_json::to_string(&f.spec).map_err(corrupt)?)
        .bind(f.updated_at)
        .bind(&f.id)
        .bind(&f.program_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes one of `program`'s formats by the id it gave it (meetings made with it keep their
    /// copy; the id stays used). False when the program has no such format not deleted already.
    pub async fn delete_format(&self, program: &str, local_id: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE formats SET deleted_at = $1 WHERE program_id = $2 AND local_id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(program)
        .bind(local_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- series ----

    /// Stores a new series; `Conflict` when its program already used the id (or the key is taken).
    pub async fn create_series(&self, s: &SeriesRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO series (id, program_id, title, spec, generation, created_at, updated_at, local_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.program_id)
        .bind(&s.title)
        .bind(serde_json::to_string(&s.spec).map_err(corrupt)?)
        .bind(s.generation)
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(&s.local_id)
        .execute(&self.pool)
        .await
        .map_err(unique)?;
        Ok(())
    }

    const SERIES_COLUMNS: &'static str =
        "id, program_id, title, spec, generation, created_at, updated_at, cancelled_at, local_id";

    fn series_from_row(r: &sqlx::any::AnyRow) -> Result<SeriesRow, StoreError> {
        let spec: String = r.try_get(3)?;
        Ok(SeriesRow {
            id: r.try_get(0)?,
            program_id: r.try_get(1)?,
            title: r.try_get(2)?,
            spec: serde_json::from_str(&spec).map_err(corrupt)?,
            generation: r.try_get(4)?,
            created_at: r.try_get(5)?,
            updated_at: r.try_get(6)?,
            cancelled_at: r.try_get(7)?,
            local_id: r.try_get(8)?,
        })
    }

    /// A series by its key ([`SeriesRow::id`], as its occurrences name it), whoever owns it.
    pub async fn series_by_key(&self, key: &str) -> Result<Option<SeriesRow>, StoreError> {
        let sql = format!("SELECT {} FROM series WHERE id = $1", Self::SERIES_COLUMNS);
        let row = sqlx::query(&sql).bind(key).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::series_from_row).transpose()
    }

    /// One of `program`'s series by the id it gave it (cancelled ones too). Another program's
    /// series is `None`, as is an id nobody uses.
    pub async fn program_series(&self, program: &str, local_id: &str) -> Result<Option<SeriesRow>, StoreError> {
        let sql = format!("SELECT {} FROM series WHERE program_id = $1 AND local_id = $2", Self::SERIES_COLUMNS);
        let row = sqlx::query(&sql).bind(program).bind(local_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::series_from_row).transpose()
    }

    /// The ids `program` gave its series, by key (for answers that name an occurrence's series).
    pub async fn series_names(&self, program: &str) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT id, local_id FROM series WHERE program_id = $1")
            .bind(program)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// A program's series, oldest first.
    pub async fn series_of(&self, program: &str) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM series WHERE program_id = $1 ORDER BY created_at, local_id LIMIT 1000",
            Self::SERIES_COLUMNS
        );
        let rows = sqlx::query(&sql).bind(program).fetch_all(&self.pool).await?;
        rows.iter().map(Self::series_from_row).collect()
    }

    /// Every series not cancelled (for the horizon task).
    pub async fn active_series(&self) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = format!("SELECT {} FROM series WHERE cancelled_at IS NULL ORDER BY id", Self::SERIES_COLUMNS);
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(Self::series_from_row).collect()
    }

    /// Saves a series' title, definition, generation and cancellation.
    pub async fn update_series(&self, s: &SeriesRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE series SET title = $1, spec = $2, generation = $3, updated_at = $4, cancelled_at = $5 WHERE id = $6",
        )
        .bind(&s.title)
        .bind(serde_json::to_string(&s.spec).map_err(corrupt)?)
        .bind(s.generation)
        .bind(s.updated_at)
        .bind(s.cancelled_at)
        .bind(&s.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates an occurrence unless its series already has one with that key (made before, or
    /// cancelled: a cancelled occurrence is never made again). True when it was created.
    pub async fn insert_occurrence(&self, m: &MeetingRow) -> Result<bool, StoreError> {
        let exists = sqlx::query("SELECT 1 FROM meetings WHERE series_id = $1 AND occurrence_key = $2")
            .bind(&m.series_id)
            .bind(&m.occurrence_key)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        match self.create_meeting(m).await {
            Ok(()) => Ok(true),
            // Made at the same moment by another task (the unique index holds either way).
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A series' occurrences (cancelled ones too, flagged), in order of start.
    pub async fn occurrences(&self, series: &str) -> Result<Vec<(MeetingRow, bool)>, StoreError> {
        let sql = format!(
            "SELECT {}, deleted_at FROM meetings WHERE series_id = $1 ORDER BY scheduled_start, id LIMIT 2000",
            Self::MEETING_COLUMNS
        );
        let rows = sqlx::query(&sql).bind(series).fetch_all(&self.pool).await?;
        rows.iter().map(Self::meeting_and_deleted).collect()
    }

    /// The occurrence whose join window holds `now` (from `open_ms` before its start to its
    /// end), not cancelled; ended ones too (the caller answers `meeting_ended`).
    pub async fn open_occurrence(
        &self,
        series: &str,
        now: i64,
        open_ms: i64,
    ) -> Result<Option<MeetingRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM meetings WHERE series_id = $1 AND deleted_at IS NULL AND scheduled_start <= $2 AND scheduled_end > $3 \
             ORDER BY scheduled_start LIMIT 1",
            Self::MEETING_COLUMNS
        );
        let row = sqlx::query(&sql).bind(series).bind(now + open_ms).bind(now).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::meeting_from_row).transpose()
    }

    /// When the next occurrence (not cancelled) starts after `now`.
    pub async fn next_occurrence_start(&self, series: &str, now: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(scheduled_start) FROM meetings WHERE series_id = $1 AND deleted_at IS NULL AND scheduled_start > $2",
        )
        .bind(series)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// Changes one occurrence that has not opened (`opens_after`: its start must be later).
    /// False when it has opened, was cancelled or is not in the series.
    pub async fn update_occurrence(&self, series: &str, m: &MeetingRow, opens_after: i64) -> Result<bool, StoreError> {
        let format = super::json_opt(m.format.as_ref())?;
        let policy = super::json_opt(m.credit_policy.as_ref())?;
        let settings = serde_json::to_string(&m.settings).map_err(corrupt)?;
        let r = sqlx::query(
            "UPDATE meetings SET title = $1, scheduled_start = $2, scheduled_end = $3, capacity = $4, settings = $5, \
             credit_policy = $6, format_id = $7, format = $8 \
             WHERE id = $9 AND series_id = $10 AND deleted_at IS NULL AND ended_at IS NULL AND scheduled_start > $11",
        )
        .bind(&m.title)
        .bind(m.scheduled_start)
        .bind(m.scheduled_end)
        .bind(m.capacity)
        .bind(settings)
        .bind(policy)
        .bind(&m.format_id)
        .bind(format)
        .bind(&m.id)
        .bind(series)
        .bind(opens_after)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Cancels one occurrence that has not opened. False when it has opened or is not in the series.
    pub async fn cancel_occurrence(
        &self,
        series: &str,
        id: &str,
        opens_after: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE meetings SET deleted_at = $1 WHERE id = $2 AND series_id = $3 AND deleted_at IS NULL \
             AND ended_at IS NULL AND scheduled_start > $4",
        )
        .bind(now)
        .bind(id)
        .bind(series)
        .bind(opens_after)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Cancels every occurrence of a series that has not opened (start later than `opens_after`).
    /// Occurrences that opened, and everything recorded of them, stay as they are.
    pub async fn cancel_future_occurrences(&self, series: &str, opens_after: i64, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE meetings SET deleted_at = $1 WHERE series_id = $2 AND deleted_at IS NULL AND ended_at IS NULL \
             AND scheduled_start > $3",
        )
        .bind(now)
        .bind(series)
        .bind(opens_after)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}
