//! Secrets in the database: the server's certificate signing keys, and sealing them (and programs' HS256
//! secrets) at rest when a key-encryption key is set.

use super::{sealed, ProgramRow, Store, StoreError};
use sqlx::Row;

/// A server signing key. `Debug` leaves out the private key.
#[derive(Clone)]
pub struct KeyRow {
    pub kid: String,
    pub private_pem: String,
    pub public_x: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl Store {
    // ---- server keys ----

    /// Every signing key, newest first.
    pub async fn server_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, private_pem, public_x, created_at, retired_at FROM server_keys ORDER BY created_at DESC, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kid: String = r.try_get(0)?;
                let stored: String = r.try_get(1)?;
                Ok(KeyRow {
                    private_pem: sealed::open(self.sealer.as_deref(), &stored, &kid)?,
                    kid,
                    public_x: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    retired_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Uses `sealer` for secrets from now on, and seals every secret still stored in plain text
    /// (a database from before a KEK was configured). Fails when a sealed secret does not open
    /// with it (the wrong KEK): better than starting with keys that cannot sign.
    pub async fn use_sealer(&mut self, sealer: sealed::Sealer) -> Result<(), StoreError> {
        self.sealer = Some(std::sync::Arc::new(sealer));
        // Reading through the sealer checks that every sealed secret opens with it.
        self.server_keys().await?;
        self.programs().await?;
        self.seal_webhook_secrets().await?;
        // Then the rows as stored: seal what is still in plain text (each is a secret here only
        // when it is unsealed; an HS256 program key is the only program key that is secret).
        let keys = sqlx::query("SELECT kid, private_pem FROM server_keys").fetch_all(&self.pool).await?;
        for r in &keys {
            let (kid, stored): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if !sealed::is_sealed(&stored) {
                sqlx::query("UPDATE server_keys SET private_pem = $1 WHERE kid = $2")
                    .bind(sealed::seal(self.sealer.as_deref(), &stored, &kid))
                    .bind(&kid)
                    .execute(&self.pool)
                    .await?;
            }
        }
        let programs =
            sqlx::query("SELECT id, token_key FROM programs WHERE token_alg = 'HS256'").fetch_all(&self.pool).await?;
        for r in &programs {
            let (id, stored): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if !sealed::is_sealed(&stored) {
                sqlx::query("UPDATE programs SET token_key = $1 WHERE id = $2")
                    .bind(sealed::seal(self.sealer.as_deref(), &stored, &id))
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// What is stored for a program's token key: an HS256 secret is sealed; a public key is not
    /// a secret.
    pub(super) fn seal_program_key(&self, p: &ProgramRow) -> String {
        if p.token_alg == "HS256" {
            sealed::seal(self.sealer.as_deref(), &p.token_key, &p.id)
        } else {
            p.token_key.clone()
        }
    }

    /// Adds a key and retires every other (retired keys still verify; only the new one signs).
    pub async fn rotate_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE server_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(k.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO server_keys (kid, private_pem, public_x, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&k.kid)
            .bind(sealed::seal(self.sealer.as_deref(), &k.private_pem, &k.kid))
            .bind(&k.public_x)
            .bind(k.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("private_pem", &"[redacted]")
            .field("public_x", &self.public_x)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}
