//! What the aftercare report reads (see `attendance::engagement`): one program's members only.

use super::{Store, StoreError};
use crate::attendance::engagement::Attended;
use sqlx::Row;

impl Store {
    /// A program's members' attendances before `until`: each meeting they were admitted to (in
    /// any role but observer) with their first admission, and the final verdict where there is
    /// one (results computed from `since` on: a meeting attended in the window ended after it).
    pub async fn attended(&self, program: &str, since: i64, until: i64) -> Result<Vec<Attended>, StoreError> {
        let rows = sqlx::query(
            "SELECT meeting_id, member_ref, MIN(at) FROM presence WHERE program_id = $1 AND kind = 'admitted' \
             AND at < $2 AND (role IS NULL OR role <> 'observer') GROUP BY meeting_id, member_ref",
        )
        .bind(program)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let results = sqlx::query(
            "SELECT meeting_id, member_ref, result FROM attendance_results WHERE program_id = $1 AND computed_at >= $2",
        )
        .bind(program)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut credited = std::collections::HashMap::with_capacity(results.len());
        for r in &results {
            let (meeting, member, result): (String, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let stored: crate::attendance::StoredResult =
                serde_json::from_str(&result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            credited.insert((meeting, member), stored.outcome.credited);
        }
        rows.iter()
            .map(|r| {
                let (meeting_id, member_ref): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                Ok(Attended {
                    credited: credited.get(&(meeting_id.clone(), member_ref.clone())).copied(),
                    at: r.try_get(2)?,
                    meeting_id,
                    member_ref,
                })
            })
            .collect()
    }
}
