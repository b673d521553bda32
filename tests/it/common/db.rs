//! An engine-neutral handle on a test server's database, for inspecting it and, in attack
//! tests, tampering with it behind the server's back: SQLite (`H/arca.db`) or PostgreSQL (the
//! server's own database when the suite runs with `ARCA_TEST_PG`).
//!
//! SQL is written once, with SQLite's `?1`-style placeholders (translated to `$1` for
//! PostgreSQL), in the subset both engines understand. Parameters are [`Param`]s (build them
//! with [`params!`](crate::params)); values come back as [`Value`]s, or typed through
//! [`FromValue`]: integers as `i64` (the schema's INTEGER, BIGINT on PostgreSQL), text as
//! `String`, blobs (BYTEA) as `Vec<u8>`, NULL as `None`.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Null,
}

/// A column value, as read.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// `params![a, b, ...]`: a `&[Param]` of anything that is a [`ToParam`], each borrowed (so
/// `params![hash]` leaves `hash` usable).
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::common::db::Param] };
    ($($p:expr),+ $(,)?) => {
        &[$($crate::common::db::ToParam::to_param(&$p)),+] as &[$crate::common::db::Param]
    };
}

/// A value usable as a statement parameter: integers, text, bytes, `Option`s of them (None
/// is NULL), and references to any of these.
pub trait ToParam {
    fn to_param(&self) -> Param;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param {
                Param::Int(i64::try_from(*self).expect("integer parameter out of i64 range"))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, usize);

impl ToParam for str {
    fn to_param(&self) -> Param {
        Param::Text(self.to_owned())
    }
}
impl ToParam for String {
    fn to_param(&self) -> Param {
        Param::Text(self.clone())
    }
}
impl ToParam for [u8] {
    fn to_param(&self) -> Param {
        Param::Bytes(self.to_vec())
    }
}
impl<const N: usize> ToParam for [u8; N] {
    fn to_param(&self) -> Param {
        Param::Bytes(self.to_vec())
    }
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param {
        Param::Bytes(self.clone())
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param {
        self.as_ref().map_or(Param::Null, ToParam::to_param)
    }
}
impl ToParam for Param {
    fn to_param(&self) -> Param {
        self.clone()
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param {
        (**self).to_param()
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Int(i) => ValueRef::Integer(*i),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Bytes(b) => ValueRef::Blob(b),
            Param::Null => ValueRef::Null,
        }))
    }
}

/// Tolerant encoding: an integer goes as whatever integer type PostgreSQL inferred for its
/// placeholder (int2/int4/int8), text as text/varchar, bytes as bytea; NULL as anything.
impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                // An integer compared with text (or an untyped placeholder): its decimal text.
                _ if is_text(ty) => i.to_string().to_sql(ty, out),
                _ => Err(format!("integer parameter for a {ty} placeholder").into()),
            },
            Param::Text(s) if is_text(ty) => s.as_str().to_sql(ty, out),
            Param::Text(_) => Err(format!("text parameter for a {ty} placeholder").into()),
            Param::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            Param::Bytes(_) => Err(format!("bytes parameter for a {ty} placeholder").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::BOOL | Type::BYTEA
        ) || is_text(ty)
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    )
}

/// A PostgreSQL column read as our [`Value`] (binary format, by its type).
struct PgValue(Value);

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::BYTEA => Value::Bytes(raw.to_vec()),
            _ if is_text(ty) => Value::Text(String::from_sql(ty, raw)?),
            // Not a type of the schema's (BIGINT, TEXT, BYTEA): its raw binary form, named, so
            // that `Server::state()` still fingerprints it and a typed read says what it got.
            _ => Value::Text(format!(
                "<{ty}:{}>",
                raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A value read into a Rust type.
pub trait FromValue: Sized {
    fn from_value(v: Value) -> Self;
}

impl FromValue for Value {
    fn from_value(v: Value) -> Self {
        v
    }
}
impl FromValue for i64 {
    fn from_value(v: Value) -> Self {
        match v {
            Value::Int(i) => i,
            v => panic!("expected an integer, got {v:?}"),
        }
    }
}
impl FromValue for u64 {
    fn from_value(v: Value) -> Self {
        u64::try_from(i64::from_value(v)).expect("negative integer read as u64")
    }
}
impl FromValue for usize {
    fn from_value(v: Value) -> Self {
        usize::try_from(i64::from_value(v)).expect("negative integer read as usize")
    }
}
impl FromValue for bool {
    fn from_value(v: Value) -> Self {
        i64::from_value(v) != 0
    }
}
impl FromValue for String {
    fn from_value(v: Value) -> Self {
        match v {
            Value::Text(s) => s,
            v => panic!("expected text, got {v:?}"),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value) -> Self {
        match v {
            Value::Bytes(b) => b,
            // SQLite hands back what was stored: text written as a blob's stand-in.
            Value::Text(s) => s.into_bytes(),
            v => panic!("expected bytes, got {v:?}"),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> Self {
        match v {
            Value::Null => None,
            v => Some(T::from_value(v)),
        }
    }
}

/// One row read into a Rust type: a single column as its [`FromValue`], or a tuple of them.
pub trait FromRow: Sized {
    fn from_row(row: Vec<Value>) -> Self;
}

impl<T: FromValue> FromRow for T {
    fn from_row(row: Vec<Value>) -> Self {
        assert_eq!(row.len(), 1, "expected one column, got {row:?}");
        T::from_value(row.into_iter().next().unwrap())
    }
}

macro_rules! tuple_row {
    ($n:literal; $($t:ident),+) => {
        impl<$($t: FromValue),+> FromRow for ($($t,)+) {
            fn from_row(row: Vec<Value>) -> Self {
                assert_eq!(row.len(), $n, "expected {} columns, got {row:?}", $n);
                let mut it = row.into_iter();
                ($($t::from_value(it.next().unwrap()),)+)
            }
        }
    };
}
tuple_row!(2; A, B);
tuple_row!(3; A, B, C);
tuple_row!(4; A, B, C, D);
tuple_row!(5; A, B, C, D, E);
tuple_row!(6; A, B, C, D, E, F);
tuple_row!(7; A, B, C, D, E, F, G);
tuple_row!(8; A, B, C, D, E, F, G, H);
tuple_row!(9; A, B, C, D, E, F, G, H, I);

enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<RefCell<postgres::Client>>),
}

/// A connection to a test server's database.
pub struct TestDb {
    conn: Conn,
}

impl TestDb {
    /// The SQLite database file `path`.
    pub fn sqlite(path: &Path) -> TestDb {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        TestDb {
            conn: Conn::Sqlite(c),
        }
    }

    /// The PostgreSQL database at `url`.
    pub fn postgres(url: &str) -> TestDb {
        let c = postgres::Client::connect(url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        TestDb {
            conn: Conn::Pg(Box::new(RefCell::new(c))),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Pg(_))
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param]) -> usize {
        match &self.conn {
            Conn::Sqlite(c) => c
                .execute(sql, rusqlite::params_from_iter(params))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Conn::Pg(c) => {
                let sql = pg_sql(sql);
                let n = c
                    .borrow_mut()
                    .execute(sql.as_str(), &pg_params(params))
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                usize::try_from(n).unwrap()
            }
        }
    }

    /// Runs several statements separated by `;`, without parameters.
    pub fn batch(&self, sql: &str) {
        match &self.conn {
            Conn::Sqlite(c) => c
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Conn::Pg(c) => c
                .borrow_mut()
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
        }
    }

    /// Every row, every column, as [`Value`]s.
    pub fn rows(&self, sql: &str, params: &[Param]) -> Vec<Vec<Value>> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                st.query_map(rusqlite::params_from_iter(params), |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                                rusqlite::types::Value::Null => Value::Null,
                                rusqlite::types::Value::Integer(i) => Value::Int(i),
                                rusqlite::types::Value::Real(f) => Value::Real(f),
                                rusqlite::types::Value::Text(s) => Value::Text(s),
                                rusqlite::types::Value::Blob(b) => Value::Bytes(b),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Conn::Pg(c) => {
                let sql = pg_sql(sql);
                let rows = c
                    .borrow_mut()
                    .query(sql.as_str(), &pg_params(params))
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<_, PgValue>(i)
                                    .unwrap_or_else(|e| panic!("{sql}: column {i}: {e:?}"))
                                    .0
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// Every row, typed: `db.all::<(String, i64)>(...)`.
    pub fn all<T: FromRow>(&self, sql: &str, params: &[Param]) -> Vec<T> {
        self.rows(sql, params)
            .into_iter()
            .map(T::from_row)
            .collect()
    }

    /// The one row the query must return, typed.
    pub fn one<T: FromRow>(&self, sql: &str, params: &[Param]) -> T {
        self.opt(sql, params)
            .unwrap_or_else(|| panic!("no row: {sql} {params:?}"))
    }

    /// The first row, if any, typed.
    pub fn opt<T: FromRow>(&self, sql: &str, params: &[Param]) -> Option<T> {
        self.rows(sql, params).into_iter().next().map(T::from_row)
    }

    /// Starts a transaction (`BEGIN`: SQLite's deferred one); end it with [`commit`](Self::commit).
    pub fn begin(&self) {
        self.batch("BEGIN");
    }

    /// Starts a transaction that holds the write lock at once: others may read, and every
    /// writer waits until it ends. SQLite: `BEGIN IMMEDIATE` (its one database write lock);
    /// PostgreSQL: `BEGIN` and every table of the schema locked `IN EXCLUSIVE MODE` (which
    /// lets only reads through).
    pub fn begin_write(&self) {
        if self.is_postgres() {
            let tables = self.tables(&[]);
            self.batch("BEGIN");
            if !tables.is_empty() {
                let list: Vec<String> = tables.iter().map(|t| format!("\"{t}\"")).collect();
                self.batch(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", list.join(", ")));
            }
        } else {
            self.batch("BEGIN IMMEDIATE");
        }
    }

    pub fn commit(&self) {
        self.batch("COMMIT");
    }

    /// The names of the schema's tables, sorted, except those in `except` and each engine's
    /// own bookkeeping (SQLite's `sqlite_*`, a migrations table on PostgreSQL).
    pub fn tables(&self, except: &[&str]) -> Vec<String> {
        let all: Vec<String> = match self.conn {
            Conn::Sqlite(_) => self.all(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
                params![],
            ),
            Conn::Pg(_) => self.all(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
                 AND table_name NOT LIKE '%migrations' \
                 AND table_name NOT IN ('schema_version', 'arca_schema') \
                 ORDER BY table_name",
                params![],
            ),
        };
        all.into_iter()
            .filter(|t| !except.contains(&t.as_str()))
            .collect()
    }
}

/// `?1`-style (and bare `?`) placeholders as PostgreSQL's `$1`, outside quoted text.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let (mut quote, mut next) = (None::<char>, 1);
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                if n.is_empty() {
                    n = next.to_string();
                }
                next = n.parse::<usize>().unwrap() + 1;
                out.push('$');
                out.push_str(&n);
            }
            None => out.push(c),
        }
    }
    out
}

fn pg_params(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_translate_outside_quotes() {
        assert_eq!(
            pg_sql("SELECT ?1, '?2', \"a?\" FROM t WHERE x = ?2 AND y = ?"),
            "SELECT $1, '?2', \"a?\" FROM t WHERE x = $2 AND y = $3"
        );
    }

    /// Round-trips every parameter and value type through a real PostgreSQL database (run by
    /// scripts/test.sh's PostgreSQL pass; nothing to check on SQLite alone).
    #[test]
    fn test_db_round_trips_on_postgres() {
        let Some(admin) = std::env::var("ARCA_TEST_PG").ok() else {
            eprintln!("ARCA_TEST_PG unset: nothing to check without PostgreSQL");
            return;
        };
        let pg = super::super::PgDatabase::create(&admin);
        let db = TestDb::postgres(pg.url());
        db.batch(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, small INTEGER, name TEXT, v VARCHAR(20), \
             body BYTEA, note TEXT)",
        );
        let n = db.execute(
            "INSERT INTO t (id, small, name, v, body, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                1i64,
                7i64,
                "one",
                String::from("vee"),
                &b"\x00\xffz"[..],
                None::<String>
            ],
        );
        assert_eq!(n, 1);
        db.execute(
            "INSERT INTO t (id, small, name, v, body, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![2i64, 8i64, "two", "w", vec![1u8, 2], Some("n")],
        );
        let (id, small, name, v, body, note): (i64, i64, String, String, Vec<u8>, Option<String>) =
            db.one("SELECT * FROM t WHERE id = ?1", params![1i64]);
        assert_eq!(
            (id, small, name.as_str(), v.as_str(), body, note),
            (1, 7, "one", "vee", vec![0, 0xff, b'z'], None)
        );
        assert_eq!(db.one::<i64>("SELECT COUNT(*) FROM t", params![]), 2);
        assert_eq!(
            db.opt::<String>("SELECT name FROM t WHERE small = ?1", params![8i64]),
            Some("two".into())
        );
        assert_eq!(
            db.opt::<String>("SELECT name FROM t WHERE small = ?1", params![9i64]),
            None
        );
        assert_eq!(
            db.rows("SELECT id, note, body FROM t ORDER BY id", params![]),
            vec![
                vec![
                    Value::Int(1),
                    Value::Null,
                    Value::Bytes(vec![0, 0xff, b'z'])
                ],
                vec![
                    Value::Int(2),
                    Value::Text("n".into()),
                    Value::Bytes(vec![1, 2])
                ],
            ]
        );
        assert_eq!(
            db.execute("UPDATE t SET note = ?1 WHERE id > ?2", params!["x", 0i64]),
            2
        );
        db.begin_write();
        db.execute("DELETE FROM t WHERE id = ?1", params![2i64]);
        // Another connection reads while the write lock is held.
        let other = TestDb::postgres(pg.url());
        assert_eq!(other.one::<i64>("SELECT COUNT(*) FROM t", params![]), 2);
        db.commit();
        assert_eq!(other.one::<i64>("SELECT COUNT(*) FROM t", params![]), 1);
        // A type outside the schema's reads as its named raw form rather than failing.
        let odd: String = db.one("SELECT SUM(id) FROM t", params![]);
        assert!(odd.starts_with("<numeric:"), "{odd}");
        assert_eq!(db.tables(&[]), vec!["t".to_owned()]);
        assert_eq!(db.tables(&["t"]), Vec::<String>::new());
    }
}
