//! The SQL behind `MetadataStore`, written once and instantiated for SQLite and PostgreSQL
//! (no `sqlx::Any`): both accept `$N` placeholders, row values and the portable schema in
//! `migrations/`. Runtime queries only, so building needs no database.

use super::*;
use sqlx::{AssertSqlSafe, Pool, Postgres, Sqlite};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const IMAGE_COLS: &str = "id, object_key, level, owner, filename, content_type, bytes, width, height, sha256, tags, description, state, created_at, updated_at, facts, moderation, rejected_reason";
const SHARE_COLS: &str =
    "id, image_id, object_key, params, created_by, created_at, expires_at, revoked_at";

#[derive(sqlx::FromRow)]
struct ImageRow {
    id: String,
    object_key: String,
    level: String,
    owner: Option<String>,
    filename: Option<String>,
    content_type: String,
    bytes: i64,
    width: i64,
    height: i64,
    sha256: String,
    tags: String,
    description: Option<String>,
    state: String,
    created_at: i64,
    updated_at: i64,
    facts: Option<String>,
    moderation: Option<String>,
    rejected_reason: Option<String>,
}

impl ImageRow {
    fn into_record(self) -> ImageRecord {
        ImageRecord {
            id: self.id,
            key: self.object_key,
            level: Level::parse(&self.level).unwrap_or(Level::Other),
            owner: self.owner,
            filename: self.filename,
            content_type: self.content_type,
            bytes: self.bytes,
            width: self.width,
            height: self.height,
            sha256: self.sha256,
            tags: decode_tags(&self.tags),
            description: self.description,
            // Unknown states are never shown.
            state: RecordState::parse(&self.state).unwrap_or(RecordState::Deleting),
            created_at: self.created_at,
            updated_at: self.updated_at,
            // Unreadable text (another version's) counts as missing: computed again.
            facts: self
                .facts
                .as_deref()
                .and_then(crate::facts::Facts::from_json),
            // An unknown value is treated as flagged: never shown more widely than meant.
            moderation: self
                .moderation
                .as_deref()
                .map(|m| Moderation::parse(m).unwrap_or(Moderation::Flagged)),
            rejected_reason: self.rejected_reason,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ShareRow {
    id: String,
    image_id: String,
    object_key: String,
    params: Option<String>,
    created_by: Option<String>,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl ShareRow {
    fn into_share(self) -> Share {
        Share {
            id: self.id,
            image_id: self.image_id,
            key: self.object_key,
            params: self.params,
            created_by: self.created_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

const RESERVATION_COLS: &str = "object_key, identity, created_at, expires_at, used_at";

#[derive(sqlx::FromRow)]
struct ReservationRow {
    object_key: String,
    identity: Option<String>,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl ReservationRow {
    fn into_reservation(self) -> Reservation {
        Reservation {
            key: self.object_key,
            identity: self.identity,
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
        }
    }
}

/// Tags are stored as `,a,b,` so one tag is found with `LIKE '%,a,%'`.
fn encode_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

fn decode_tags(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A bind value of a dynamically built query.
enum Arg {
    Text(String),
    Int(i64),
}

/// The list query: visibility, filters, keyset cursor, newest first.
fn list_sql(q: &ListQuery) -> (String, Vec<Arg>) {
    let mut args = Vec::new();
    let next = |a: Arg, args: &mut Vec<Arg>| {
        args.push(a);
        format!("${}", args.len())
    };
    let mut conds = vec!["state = 'ready'".to_string()];
    if !q.visible.all {
        let mut any = Vec::new();
        if !q.visible.levels.is_empty() {
            let ps: Vec<String> = q
                .visible
                .levels
                .iter()
                .map(|l| next(Arg::Text(l.as_str().into()), &mut args))
                .collect();
            any.push(format!("level IN ({})", ps.join(", ")));
        }
        if let Some(o) = &q.visible.private_of {
            let p = next(Arg::Text(o.clone()), &mut args);
            any.push(format!("(level = 'private' AND owner = {p})"));
        }
        if any.is_empty() {
            any.push("1 = 0".into());
        }
        conds.push(format!("({})", any.join(" OR ")));
        let flagged = match &q.visible.flagged_of {
            Some(o) => format!("owner = {}", next(Arg::Text(o.clone()), &mut args)),
            None => "1 = 0".into(),
        };
        conds.push(format!(
            "(moderation IS NULL OR moderation <> 'flagged' OR {flagged})"
        ));
    }
    if let Some(o) = &q.owner {
        let p = next(Arg::Text(o.clone()), &mut args);
        conds.push(format!("owner = {p}"));
    }
    if let Some(l) = q.level {
        let p = next(Arg::Text(l.as_str().into()), &mut args);
        conds.push(format!("level = {p}"));
    }
    if let Some(t) = &q.tag {
        let p = next(Arg::Text(format!("%,{},%", like_escape(t))), &mut args);
        conds.push(format!("tags LIKE {p} ESCAPE '\\'"));
    }
    if let Some((at, id)) = &q.before {
        let p1 = next(Arg::Int(*at), &mut args);
        let p2 = next(Arg::Text(id.clone()), &mut args);
        conds.push(format!("(created_at, id) < ({p1}, {p2})"));
    }
    let lim = next(Arg::Int(i64::from(q.limit)), &mut args);
    let sql = format!(
        "SELECT {IMAGE_COLS} FROM images WHERE {} ORDER BY created_at DESC, id DESC LIMIT {lim}",
        conds.join(" AND ")
    );
    (sql, args)
}

macro_rules! sql_store {
    ($name:ident, $db:ty) => {
        pub struct $name {
            pool: Pool<$db>,
        }

        impl $name {
            pub fn pool(&self) -> &Pool<$db> {
                &self.pool
            }

            async fn migrate(pool: &Pool<$db>) -> Result<(), String> {
                MIGRATOR
                    .run(pool)
                    .await
                    .map_err(|e| format!("migrations failed: {e}"))
            }
        }

        #[async_trait]
        impl MetadataStore for $name {
            async fn insert(&self, r: &ImageRecord) -> Result<(), MetaError> {
                let sql = format!(
                    "INSERT INTO images ({IMAGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
                );
                sqlx::query::<$db>(AssertSqlSafe(sql))
                    .bind(r.id.clone())
                    .bind(r.key.clone())
                    .bind(r.level.as_str())
                    .bind(r.owner.clone())
                    .bind(r.filename.clone())
                    .bind(r.content_type.clone())
                    .bind(r.bytes)
                    .bind(r.width)
                    .bind(r.height)
                    .bind(r.sha256.clone())
                    .bind(encode_tags(&r.tags))
                    .bind(r.description.clone())
                    .bind(r.state.as_str())
                    .bind(r.created_at)
                    .bind(r.updated_at)
                    .bind(r.facts.as_ref().map(crate::facts::Facts::to_json))
                    .bind(r.moderation.map(Moderation::as_str))
                    .bind(r.rejected_reason.clone())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_state(
                &self,
                id: &str,
                from: RecordState,
                to: RecordState,
                now: i64,
            ) -> Result<bool, MetaError> {
                let done = sqlx::query::<$db>(
                    "UPDATE images SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
                )
                .bind(to.as_str())
                .bind(now)
                .bind(id.to_string())
                .bind(from.as_str())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn get(&self, id: &str) -> Result<Option<ImageRecord>, MetaError> {
                let sql = format!("SELECT {IMAGE_COLS} FROM images WHERE id = $1");
                let row = sqlx::query_as::<$db, ImageRow>(AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(ImageRow::into_record))
            }

            async fn get_by_key(&self, key: &str) -> Result<Option<ImageRecord>, MetaError> {
                let sql = format!("SELECT {IMAGE_COLS} FROM images WHERE object_key = $1");
                let row = sqlx::query_as::<$db, ImageRow>(AssertSqlSafe(sql))
                    .bind(key.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(ImageRow::into_record))
            }

            async fn set_facts(
                &self,
                id: &str,
                facts: &crate::facts::Facts,
            ) -> Result<bool, MetaError> {
                let done = sqlx::query::<$db>("UPDATE images SET facts = $1 WHERE id = $2")
                    .bind(facts.to_json())
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn list(&self, q: &ListQuery) -> Result<Vec<ImageRecord>, MetaError> {
                let (sql, args) = list_sql(q);
                let mut query = sqlx::query_as::<$db, ImageRow>(AssertSqlSafe(sql));
                for a in args {
                    query = match a {
                        Arg::Text(s) => query.bind(s),
                        Arg::Int(i) => query.bind(i),
                    };
                }
                let rows = query.fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(ImageRow::into_record).collect())
            }

            async fn update(
                &self,
                id: &str,
                patch: &Patch,
                now: i64,
            ) -> Result<Option<ImageRecord>, MetaError> {
                let mut tx = self.pool.begin().await?;
                let sql = format!("SELECT {IMAGE_COLS} FROM images WHERE id = $1 AND state = 'ready'");
                let Some(row) = sqlx::query_as::<$db, ImageRow>(AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                let mut r = row.into_record();
                if let Some(f) = &patch.filename {
                    r.filename = f.clone();
                }
                if let Some(t) = &patch.tags {
                    r.tags = t.clone();
                }
                if let Some(d) = &patch.description {
                    r.description = d.clone();
                }
                r.updated_at = now.max(r.updated_at);
                sqlx::query::<$db>(
                    "UPDATE images SET filename = $1, tags = $2, description = $3, updated_at = $4 WHERE id = $5",
                )
                .bind(r.filename.clone())
                .bind(encode_tags(&r.tags))
                .bind(r.description.clone())
                .bind(r.updated_at)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(r))
            }

            async fn move_key(
                &self,
                id: &str,
                from_key: &str,
                to_key: &str,
                level: Level,
                now: i64,
            ) -> Result<bool, MetaError> {
                let done = sqlx::query::<$db>(
                    "UPDATE images SET object_key = $1, level = $2, updated_at = $3 WHERE id = $4 AND object_key = $5 AND state = 'ready'",
                )
                .bind(to_key.to_string())
                .bind(level.as_str())
                .bind(now)
                .bind(id.to_string())
                .bind(from_key.to_string())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete(&self, id: &str) -> Result<(), MetaError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query::<$db>("DELETE FROM shares WHERE image_id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query::<$db>("DELETE FROM images WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_share(&self, s: &Share) -> Result<(), MetaError> {
                let sql = format!(
                    "INSERT INTO shares ({SHARE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                );
                sqlx::query::<$db>(AssertSqlSafe(sql))
                    .bind(s.id.clone())
                    .bind(s.image_id.clone())
                    .bind(s.key.clone())
                    .bind(s.params.clone())
                    .bind(s.created_by.clone())
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .bind(s.revoked_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_share(&self, id: &str) -> Result<Option<Share>, MetaError> {
                let sql = format!("SELECT {SHARE_COLS} FROM shares WHERE id = $1");
                let row = sqlx::query_as::<$db, ShareRow>(AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(ShareRow::into_share))
            }

            async fn list_shares(&self, image_id: &str) -> Result<Vec<Share>, MetaError> {
                let sql = format!(
                    "SELECT {SHARE_COLS} FROM shares WHERE image_id = $1 ORDER BY created_at DESC, id DESC"
                );
                let rows = sqlx::query_as::<$db, ShareRow>(AssertSqlSafe(sql))
                    .bind(image_id.to_string())
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(ShareRow::into_share).collect())
            }

            async fn revoke_share(&self, id: &str, now: i64) -> Result<bool, MetaError> {
                let done = sqlx::query::<$db>(
                    "UPDATE shares SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn stale(&self, older_than: i64) -> Result<Vec<ImageRecord>, MetaError> {
                let sql = format!(
                    "SELECT {IMAGE_COLS} FROM images WHERE state IN ('pending', 'deleting') AND updated_at < $1 LIMIT 1000"
                );
                let rows = sqlx::query_as::<$db, ImageRow>(AssertSqlSafe(sql))
                    .bind(older_than)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(ImageRow::into_record).collect())
            }

            async fn key_recorded(&self, key: &str) -> Result<bool, MetaError> {
                let row = sqlx::query::<$db>("SELECT 1 FROM images WHERE object_key = $1")
                    .bind(key.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn reserve_upload(&self, r: &Reservation) -> Result<(), MetaError> {
                let sql = format!(
                    "INSERT INTO upload_reservations ({RESERVATION_COLS}) VALUES ($1, $2, $3, $4, $5)"
                );
                sqlx::query::<$db>(AssertSqlSafe(sql))
                    .bind(r.key.clone())
                    .bind(r.identity.clone())
                    .bind(r.created_at)
                    .bind(r.expires_at)
                    .bind(r.used_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_reservation(&self, key: &str) -> Result<Option<Reservation>, MetaError> {
                let sql = format!(
                    "SELECT {RESERVATION_COLS} FROM upload_reservations WHERE object_key = $1"
                );
                let row = sqlx::query_as::<$db, ReservationRow>(AssertSqlSafe(sql))
                    .bind(key.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(ReservationRow::into_reservation))
            }

            async fn use_reservation(&self, key: &str, now: i64) -> Result<bool, MetaError> {
                let done = sqlx::query::<$db>(
                    "UPDATE upload_reservations SET used_at = $1 WHERE object_key = $2 AND used_at IS NULL",
                )
                .bind(now)
                .bind(key.to_string())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn expired_reservations(
                &self,
                before: i64,
            ) -> Result<Vec<Reservation>, MetaError> {
                let sql = format!(
                    "SELECT {RESERVATION_COLS} FROM upload_reservations WHERE expires_at < $1 LIMIT 1000"
                );
                let rows = sqlx::query_as::<$db, ReservationRow>(AssertSqlSafe(sql))
                    .bind(before)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(ReservationRow::into_reservation)
                    .collect())
            }

            async fn delete_reservation(&self, key: &str) -> Result<(), MetaError> {
                sqlx::query::<$db>("DELETE FROM upload_reservations WHERE object_key = $1")
                    .bind(key.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_user(&self, u: &User) -> Result<(), MetaError> {
                sqlx::query::<$db>(
                    "INSERT INTO users (name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(u.name.clone())
                .bind(u.password_hash.clone())
                .bind(u.created_at)
                .bind(u.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_user(&self, name: &str) -> Result<Option<User>, MetaError> {
                let row = sqlx::query_as::<$db, (String, String, i64, i64)>(
                    "SELECT name, password_hash, created_at, updated_at FROM users WHERE name = $1",
                )
                .bind(name.to_string())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(name, password_hash, created_at, updated_at)| User {
                    name,
                    password_hash,
                    created_at,
                    updated_at,
                }))
            }

            async fn set_user_password(
                &self,
                name: &str,
                hash: &str,
                now: i64,
            ) -> Result<bool, MetaError> {
                let done = sqlx::query::<$db>(
                    "UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3",
                )
                .bind(hash.to_string())
                .bind(now)
                .bind(name.to_string())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_review(
                &self,
                id: &str,
                moderation: Option<Moderation>,
                tags: &[String],
                now: i64,
            ) -> Result<bool, MetaError> {
                let mut tx = self.pool.begin().await?;
                let Some((old,)) = sqlx::query_as::<$db, (String,)>(
                    "SELECT tags FROM images WHERE id = $1",
                )
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(false);
                };
                let mut all = decode_tags(&old);
                for t in tags {
                    if !all.contains(t) {
                        all.push(t.clone());
                    }
                }
                sqlx::query::<$db>(
                    "UPDATE images SET moderation = $1, tags = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(moderation.map(Moderation::as_str))
                .bind(encode_tags(&all))
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn get_identity(
                &self,
                pool: &str,
                subject: &str,
            ) -> Result<Option<String>, MetaError> {
                let row = sqlx::query_as::<$db, (String,)>(
                    "SELECT identity_id FROM identities WHERE pool_id = $1 AND subject = $2",
                )
                .bind(pool.to_string())
                .bind(subject.to_string())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id,)| id))
            }

            async fn put_identity(
                &self,
                pool: &str,
                subject: &str,
                identity_id: &str,
                now: i64,
            ) -> Result<String, MetaError> {
                // First write wins, so every instance uses the same id.
                sqlx::query::<$db>(
                    "INSERT INTO identities (pool_id, subject, identity_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (pool_id, subject) DO NOTHING",
                )
                .bind(pool.to_string())
                .bind(subject.to_string())
                .bind(identity_id.to_string())
                .bind(now)
                .execute(&self.pool)
                .await?;
                self.get_identity(pool, subject)
                    .await?
                    .ok_or_else(|| MetaError::Db("identity vanished".into()))
            }

            async fn check(&self) -> Result<(), MetaError> {
                sqlx::query::<$db>("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}

sql_store!(SqliteStore, Sqlite);
sql_store!(PgStore, Postgres);

impl SqliteStore {
    /// `sqlite://path/to/file.db` (created with its folders when missing) or
    /// `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<Self, String> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("`{url}`: {e}"))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let filename = opts.get_filename().to_path_buf();
        let in_memory = filename.as_os_str() == ":memory:" || url.contains(":memory:");
        let (opts, max) = if in_memory {
            (opts, 1)
        } else {
            if let Some(dir) = filename.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            (opts.journal_mode(SqliteJournalMode::Wal), 8)
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| format!("cannot open {}: {e}", filename.display()))?;
        Self::migrate(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

impl PgStore {
    /// `postgres://user:password@host:port/db[?options=...]`.
    pub async fn open(url: &str) -> Result<Self, String> {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let opts = PgConnectOptions::from_str(url).map_err(|e| format!("invalid URL: {e}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        Self::migrate(&pool).await?;
        Ok(PgStore { pool })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let t = vec!["a".to_string(), "b-c".to_string()];
        assert_eq!(encode_tags(&t), ",a,b-c,");
        assert_eq!(decode_tags(&encode_tags(&t)), t);
        assert!(decode_tags(&encode_tags(&[])).is_empty());
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }

    #[tokio::test]
    async fn sqlite_in_memory_round_trip() {
        let s = SqliteStore::open("sqlite::memory:").await.unwrap();
        let r = ImageRecord {
            id: "id1".into(),
            key: "public/id1.png".into(),
            level: Level::Public,
            owner: Some("alice".into()),
            filename: None,
            content_type: "image/png".into(),
            bytes: 10,
            width: 2,
            height: 3,
            sha256: "00".into(),
            tags: vec!["x".into()],
            description: None,
            state: RecordState::Pending,
            created_at: 5,
            updated_at: 5,
            facts: None,
            moderation: None,
            rejected_reason: None,
        };
        s.insert(&r).await.unwrap();
        assert!(matches!(s.insert(&r).await, Err(MetaError::Conflict(_))));
        let q = ListQuery {
            visible: Visibility {
                all: true,
                ..Default::default()
            },
            owner: None,
            level: None,
            tag: Some("x".into()),
            limit: 10,
            before: None,
        };
        assert!(s.list(&q).await.unwrap().is_empty(), "pending is hidden");
        assert!(
            s.set_state("id1", RecordState::Pending, RecordState::Ready, 6)
                .await
                .unwrap()
        );
        assert_eq!(s.list(&q).await.unwrap().len(), 1);
        assert!(
            s.move_key(
                "id1",
                "public/id1.png",
                "private/alice/id1.png",
                Level::Private,
                7
            )
            .await
            .unwrap()
        );
        let moved = s.get("id1").await.unwrap().unwrap();
        assert_eq!(
            (moved.key.as_str(), moved.level, moved.updated_at),
            ("private/alice/id1.png", Level::Private, 7)
        );
        assert!(
            !s.move_key("id1", "public/id1.png", "public/x.png", Level::Public, 8)
                .await
                .unwrap(),
            "a stale from_key moves nothing"
        );
        // Facts written later are read back, by id and by key.
        assert_eq!(
            s.get_by_key("private/alice/id1.png")
                .await
                .unwrap()
                .unwrap()
                .facts,
            None
        );
        let facts = crate::facts::Facts {
            format: "png".into(),
            display_width: 2,
            display_height: 3,
            orientation: 1,
            animated: false,
            frames: 1,
            has_alpha: true,
            taken_at: None,
            camera: None,
            gps: Some(crate::facts::Gps {
                lat: 1.5,
                lon: -2.25,
            }),
            dominant_color: Some("#000000".into()),
            blurhash: None,
        };
        assert!(s.set_facts("id1", &facts).await.unwrap());
        assert!(!s.set_facts("nope", &facts).await.unwrap());
        let back = s
            .get_by_key("private/alice/id1.png")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.facts, Some(facts));
        assert!(s.get_by_key("public/other.png").await.unwrap().is_none());
        s.delete("id1").await.unwrap();
        assert!(s.get("id1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sqlite_users() {
        let s = SqliteStore::open("sqlite::memory:").await.unwrap();
        let u = User {
            name: "alice".into(),
            password_hash: "$argon2id$x".into(),
            created_at: 1,
            updated_at: 1,
        };
        s.insert_user(&u).await.unwrap();
        assert!(matches!(
            s.insert_user(&u).await,
            Err(MetaError::Conflict(_))
        ));
        assert_eq!(s.get_user("alice").await.unwrap(), Some(u));
        assert_eq!(s.get_user("bob").await.unwrap(), None);
        assert!(
            s.set_user_password("alice", "$argon2id$y", 2)
                .await
                .unwrap()
        );
        assert!(!s.set_user_password("bob", "$argon2id$y", 2).await.unwrap());
        let after = s.get_user("alice").await.unwrap().unwrap();
        assert_eq!(
            (after.password_hash.as_str(), after.updated_at),
            ("$argon2id$y", 2)
        );
    }

    #[tokio::test]
    async fn sqlite_identities_first_write_wins() {
        let s = SqliteStore::open("sqlite::memory:").await.unwrap();
        let pool = "us-east-1:00000000-0000-0000-0000-000000000000";
        assert_eq!(s.get_identity(pool, "alice").await.unwrap(), None);
        let a = "us-east-1:11111111-1111-1111-1111-111111111111";
        let b = "us-east-1:22222222-2222-2222-2222-222222222222";
        assert_eq!(s.put_identity(pool, "alice", a, 1).await.unwrap(), a);
        assert_eq!(s.put_identity(pool, "alice", b, 2).await.unwrap(), a);
        assert_eq!(
            s.get_identity(pool, "alice").await.unwrap().as_deref(),
            Some(a)
        );
        assert_eq!(s.get_identity("other-pool", "alice").await.unwrap(), None);
    }
}
