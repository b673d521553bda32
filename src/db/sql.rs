//! The engine-neutral SQL interface the rest of `db` is written against: parameters, rows and
//! transactions that mean the same on SQLite and on PostgreSQL.
//!
//! Each query is written once, in the SQL both engines speak (`?1`-style placeholders, which
//! become `$1` on PostgreSQL; `ON CONFLICT DO NOTHING`; `RETURNING`); the few places where the
//! dialects differ branch on [`Sql::engine`]. Rows come back as owned [`Value`]s and are read
//! with typed getters, so no `rusqlite` or `postgres` type leaves `src/db/`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::DbError;

/// Which engine a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

/// One query parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value that can be bound as a query parameter.
pub trait ToParam {
    fn param(&self) -> Param<'_>;
}

impl ToParam for i64 {
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}
impl ToParam for i32 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for u32 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
/// Stored as a signed 64-bit integer (both engines' integer type); larger values saturate.
impl ToParam for u64 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToParam for usize {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToParam for bool {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for [u8] {
    fn param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl ToParam for Vec<u8> {
    fn param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
/// A value read from one engine, bound as it was read (`db::copy` moves rows this way).
impl ToParam for Value {
    fn param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Int(i) => Param::Int(*i),
            Value::Real(f) => Param::Real(*f),
            Value::Text(s) => Param::Text(s),
            Value::Blob(b) => Param::Blob(b),
        }
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        match self {
            Some(v) => v.param(),
            None => Param::Null,
        }
    }
}

/// `params![a, b, c]`: a parameter list for [`Sql`] calls.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::sql::ToParam] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::sql::ToParam),+] as &[&dyn $crate::db::sql::ToParam] };
}
pub use crate::params;

/// A type a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
    const WANT: &'static str;
}

impl FromValue for i64 {
    const WANT: &'static str = "integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for u64 {
    const WANT: &'static str = "non-negative integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    const WANT: &'static str = "32-bit non-negative integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => u32::try_from(*i).ok(),
            _ => None,
        }
    }
}
impl FromValue for usize {
    const WANT: &'static str = "non-negative integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }
}
impl FromValue for bool {
    const WANT: &'static str = "boolean";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromValue for f64 {
    const WANT: &'static str = "number";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for String {
    const WANT: &'static str = "text";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    const WANT: &'static str = "blob";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            // SQLite keeps what was bound: a text bound where bytes are read is its bytes.
            Value::Text(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    const WANT: &'static str = T::WANT;
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as `T`; a missing column or another type is a corrupt row.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| DbError::Corrupt(format!("no column {i} in the row")))?;
        T::from_value(v).ok_or_else(|| {
            DbError::Corrupt(format!(
                "column {i}: expected {}, found {}",
                T::WANT,
                v.kind()
            ))
        })
    }

    /// Every value, in column order.
    pub fn values(&self) -> &[Value] {
        &self.0
    }
}

/// What every connection and transaction can run.
pub trait Sql {
    fn engine(&self) -> Engine;
    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<usize, DbError>;
    /// Every row a query returns.
    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, DbError>;
    /// Runs several statements without parameters.
    fn batch(&self, sql: &str) -> Result<(), DbError>;
    /// Takes the row locks of `sql`, a `SELECT ... FOR NO KEY UPDATE` without parameters
    /// (literals quoted with [`literal`]) whose rows nobody reads. On PostgreSQL in a
    /// transaction it goes to the server with the next statement, ahead of it (see `PgTx`);
    /// outside one, at once. On SQLite it does nothing: every transaction there holds the
    /// database's one write lock. `required`: the error when it locks no row.
    fn lock(&self, sql: &str, required: Option<&str>) -> Result<(), DbError>;
    /// The rows of a statement without parameters, as text (NULL as `None`), sent in one
    /// round trip with the locks waiting before it.
    fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError>;

    /// The first row, if any.
    fn query_opt(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row; none is a corrupt database.
    fn query_one(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Row, DbError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| DbError::Corrupt(format!("no row for: {sql}")))
    }
}

impl dyn Sql + '_ {
    /// Column 0 of the first row.
    pub fn value<T: FromValue>(&self, sql: &str, params: &[&dyn ToParam]) -> Result<T, DbError> {
        self.query_one(sql, params)?.get(0)
    }
}

/// A connection to either engine.
pub struct Conn(ConnKind);

enum ConnKind {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

struct PgConn {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    /// Set when a statement lost a race with a concurrent transaction; `Db::call` then rolls
    /// back and runs the use case again (whatever the use case made of the error).
    lost_race: Cell<Option<String>>,
}

/// A transaction; dropped without [`Tx::commit`], it rolls back.
pub struct Tx<'c>(TxKind<'c>);

enum TxKind<'c> {
    Sqlite(rusqlite::Transaction<'c>),
    Postgres(PgTx<'c>),
}

/// A PostgreSQL transaction. `BEGIN` and the row locks ([`Sql::lock`]) are not sent on their
/// own: they wait, and go to the server in one round trip ahead of the first statement whose
/// answer is read (statements of one round trip run in order, each under a snapshot of its own
/// under READ COMMITTED, so a lock is still held before the reads it guards). A promotion
/// saves three round trips that way, which on PostgreSQL is most of its time.
struct PgTx<'c> {
    client: RefCell<&'c mut postgres::Client>,
    statements: &'c RefCell<HashMap<String, postgres::Statement>>,
    lost_race: &'c Cell<Option<String>>,
    /// What goes ahead of the next statement: `BEGIN` (until it is sent), then locks.
    pending: RefCell<Vec<Deferred>>,
    /// `BEGIN` reached the server: a transaction dropped without commit is rolled back.
    begun: Cell<bool>,
    finished: Cell<bool>,
}

/// A statement without parameters whose rows nobody reads, sent with the next one.
struct Deferred {
    sql: String,
    /// The corrupt-database error when it locks no row (`None`: no row is fine).
    required: Option<String>,
}

impl Conn {
    pub(super) fn sqlite(c: rusqlite::Connection) -> Conn {
        Conn(ConnKind::Sqlite(c))
    }

    pub(super) fn postgres(client: postgres::Client) -> Conn {
        Conn(ConnKind::Postgres(Box::new(PgConn {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            lost_race: Cell::new(None),
        })))
    }

    /// Begins a transaction: on SQLite `IMMEDIATE` (it takes the write lock at once), on
    /// PostgreSQL `READ COMMITTED`, the engine's default, with the row locks of
    /// `db::locks` taken before the reads they guard.
    pub fn transaction(&mut self) -> Result<Tx<'_>, DbError> {
        Ok(Tx(match &mut self.0 {
            ConnKind::Sqlite(c) => TxKind::Sqlite(c.transaction()?),
            ConnKind::Postgres(pg) => TxKind::Postgres(PgTx {
                client: RefCell::new(pg.client.get_mut()),
                statements: &pg.statements,
                lost_race: &pg.lost_race,
                pending: RefCell::new(vec![Deferred {
                    sql: "BEGIN".into(),
                    required: None,
                }]),
                begun: Cell::new(false),
                finished: Cell::new(false),
            }),
        }))
    }

    /// Why the last run lost a race with a concurrent transaction, if it did (and forgets it).
    pub(super) fn take_lost_race(&self) -> Option<String> {
        match &self.0 {
            ConnKind::Sqlite(_) => None,
            ConnKind::Postgres(pg) => pg.lost_race.take(),
        }
    }

    /// A PostgreSQL connection that broke (the server went away) is not reused.
    pub(super) fn is_broken(&self) -> bool {
        match &self.0 {
            ConnKind::Sqlite(_) => false,
            ConnKind::Postgres(pg) => pg.client.borrow().is_closed(),
        }
    }
}

impl Tx<'_> {
    pub fn commit(self) -> Result<(), DbError> {
        match self.0 {
            TxKind::Sqlite(t) => t.commit()?,
            TxKind::Postgres(t) => {
                if t.begun.get() || t.pending.borrow().len() > 1 {
                    t.send(Some("COMMIT"))?;
                }
                t.finished.set(true);
                super::tuf::bump_generation();
            }
        }
        Ok(())
    }
}

impl PgTx<'_> {
    /// Sends what is pending followed by `then` (a statement without parameters) in one round
    /// trip; the rows of `then`, as text.
    fn send(&self, then: Option<&str>) -> Result<Vec<postgres::SimpleQueryRow>, DbError> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let mut text = String::new();
        for d in &pending {
            text.push_str(&d.sql);
            text.push_str(";\n");
        }
        text.push_str(then.unwrap_or(""));
        self.begun.set(true);
        let messages = pg_result(self.lost_race, self.client.borrow_mut().simple_query(&text))?;
        // One CommandComplete per statement, in order.
        let (mut done, mut rows) = (0, Vec::new());
        for m in messages {
            match m {
                postgres::SimpleQueryMessage::CommandComplete(n) => {
                    if let Some(why) = pending.get(done).and_then(|d| d.required.as_ref())
                        && n == 0
                    {
                        return Err(DbError::Corrupt(why.clone()));
                    }
                    done += 1;
                }
                postgres::SimpleQueryMessage::Row(r) if done == pending.len() => rows.push(r),
                _ => {}
            }
        }
        Ok(rows)
    }

    /// Sends what is pending, before a statement with parameters (which has a round trip of
    /// its own).
    fn flush(&self) -> Result<(), DbError> {
        if !self.pending.borrow().is_empty() {
            self.send(None)?;
        }
        Ok(())
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, DbError> {
        self.flush()?;
        pg_statement(self.statements, self.lost_race, sql, |q| {
            self.client.borrow_mut().prepare(q)
        })
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.begun.get() && !self.finished.get() {
            // As postgres::Transaction does; a broken connection is dropped by the pool anyway.
            let _ = self.client.get_mut().batch_execute("ROLLBACK");
        }
    }
}

impl Sql for Conn {
    fn engine(&self) -> Engine {
        match self.0 {
            ConnKind::Sqlite(_) => Engine::Sqlite,
            ConnKind::Postgres(_) => Engine::Postgres,
        }
    }

    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<usize, DbError> {
        match &self.0 {
            ConnKind::Sqlite(c) => sqlite_execute(c, sql, params),
            ConnKind::Postgres(pg) => {
                let l = &pg.lost_race;
                let st = pg_statement(&pg.statements, l, sql, |q| {
                    pg.client.borrow_mut().prepare(q)
                })?;
                let n = pg_result(
                    l,
                    pg.client
                        .borrow_mut()
                        .execute(&st, &pg_refs(&pg_params(params))),
                )?;
                Ok(n as usize)
            }
        }
    }

    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, DbError> {
        match &self.0 {
            ConnKind::Sqlite(c) => sqlite_query(c, sql, params),
            ConnKind::Postgres(pg) => {
                let l = &pg.lost_race;
                let st = pg_statement(&pg.statements, l, sql, |q| {
                    pg.client.borrow_mut().prepare(q)
                })?;
                let rows = pg_result(
                    l,
                    pg.client
                        .borrow_mut()
                        .query(&st, &pg_refs(&pg_params(params))),
                )?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.0 {
            ConnKind::Sqlite(c) => Ok(c.execute_batch(sql)?),
            ConnKind::Postgres(pg) => {
                pg_result(&pg.lost_race, pg.client.borrow_mut().batch_execute(sql))
            }
        }
    }

    fn lock(&self, sql: &str, required: Option<&str>) -> Result<(), DbError> {
        match &self.0 {
            ConnKind::Sqlite(_) => Ok(()),
            ConnKind::Postgres(_) => {
                if self.query_text(sql)?.is_empty()
                    && let Some(why) = required
                {
                    return Err(DbError::Corrupt(why.to_owned()));
                }
                Ok(())
            }
        }
    }

    fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        match &self.0 {
            ConnKind::Sqlite(c) => sqlite_query(c, sql, params![])?
                .iter()
                .map(text_row)
                .collect(),
            ConnKind::Postgres(pg) => {
                let messages = pg_result(&pg.lost_race, pg.client.borrow_mut().simple_query(sql))?;
                messages
                    .iter()
                    .filter_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(r) => Some(pg_text_row(r)),
                        _ => None,
                    })
                    .collect()
            }
        }
    }
}

/// `s` as a quoted SQL string literal, for the statements of [`Sql::lock`] (which have no
/// parameters). Backslashes are refused rather than trusted to `standard_conforming_strings`.
pub fn literal(s: &str) -> Result<String, DbError> {
    if s.contains('\\') || s.contains('\0') {
        return Err(DbError::Corrupt(format!("{s:?} cannot be quoted")));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

fn text_row(r: &Row) -> Result<Vec<Option<String>>, DbError> {
    r.0.iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(i.to_string())),
            Value::Real(f) => Ok(Some(f.to_string())),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Blob(_) => Err(DbError::Corrupt("a blob read as text".into())),
        })
        .collect()
}

fn pg_text_row(r: &postgres::SimpleQueryRow) -> Result<Vec<Option<String>>, DbError> {
    (0..r.len())
        .map(|i| Ok(r.try_get(i)?.map(str::to_owned)))
        .collect()
}

impl Sql for Tx<'_> {
    fn engine(&self) -> Engine {
        match self.0 {
            TxKind::Sqlite(_) => Engine::Sqlite,
            TxKind::Postgres { .. } => Engine::Postgres,
        }
    }

    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<usize, DbError> {
        match &self.0 {
            TxKind::Sqlite(t) => sqlite_execute(t, sql, params),
            TxKind::Postgres(t) => {
                let st = t.statement(sql)?;
                let n = pg_result(
                    t.lost_race,
                    t.client
                        .borrow_mut()
                        .execute(&st, &pg_refs(&pg_params(params))),
                )?;
                Ok(n as usize)
            }
        }
    }

    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, DbError> {
        match &self.0 {
            TxKind::Sqlite(t) => sqlite_query(t, sql, params),
            TxKind::Postgres(t) => {
                let st = t.statement(sql)?;
                let rows = pg_result(
                    t.lost_race,
                    t.client
                        .borrow_mut()
                        .query(&st, &pg_refs(&pg_params(params))),
                )?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.0 {
            TxKind::Sqlite(t) => Ok(t.execute_batch(sql)?),
            TxKind::Postgres(t) => t.send(Some(sql)).map(drop),
        }
    }

    fn lock(&self, sql: &str, required: Option<&str>) -> Result<(), DbError> {
        match &self.0 {
            TxKind::Sqlite(_) => Ok(()),
            TxKind::Postgres(t) => {
                t.pending.borrow_mut().push(Deferred {
                    sql: sql.to_owned(),
                    required: required.map(str::to_owned),
                });
                Ok(())
            }
        }
    }

    fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        match &self.0 {
            TxKind::Sqlite(t) => sqlite_query(t, sql, params![])?
                .iter()
                .map(text_row)
                .collect(),
            TxKind::Postgres(t) => t.send(Some(sql))?.iter().map(pg_text_row).collect(),
        }
    }
}

// --- SQLite ---------------------------------------------------------------------------------

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Real(f) => ValueRef::Real(f),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn sqlite_params<'a>(params: &'a [&'a dyn ToParam]) -> Vec<Param<'a>> {
    params.iter().map(|p| p.param()).collect()
}

fn sqlite_execute(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToParam],
) -> Result<usize, DbError> {
    let mut st = c.prepare_cached(sql)?;
    Ok(st.execute(rusqlite::params_from_iter(sqlite_params(params)))?)
}

fn sqlite_query(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToParam],
) -> Result<Vec<Row>, DbError> {
    let mut st = c.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(sqlite_params(params)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            use rusqlite::types::ValueRef;
            values.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(t) => Value::Text(
                    String::from_utf8(t.to_vec())
                        .map_err(|_| DbError::Corrupt(format!("column {i}: text is not UTF-8")))?,
                ),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

// --- PostgreSQL -----------------------------------------------------------------------------

/// `?1`-style placeholders as PostgreSQL's `$1` (outside quoted strings and identifiers; a `?`
/// not followed by a digit is left alone: it is jsonb's key-exists operator there).
pub(super) fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                out.push(ch);
            }
            None => match ch {
                '\'' | '"' => {
                    quote = Some(ch);
                    out.push(ch);
                }
                '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
                _ => out.push(ch),
            },
        }
    }
    out
}

/// SQLSTATEs of a transaction that lost a race with a concurrent one and may simply be run
/// again: serialization_failure, deadlock_detected, and unique_violation (a key that another
/// transaction inserted after this one checked for it; run again, the check sees it).
const LOST_RACE: [&str; 3] = ["40001", "40P01", "23505"];

/// A PostgreSQL result as arca's, noting a lost race for `Db::call`.
fn pg_result<T>(
    lost_race: &Cell<Option<String>>,
    r: Result<T, postgres::Error>,
) -> Result<T, DbError> {
    r.map_err(|e| {
        if let Some(code) = e.code()
            && LOST_RACE.contains(&code.code())
        {
            lost_race.set(Some(e.to_string()));
        }
        DbError::from(e)
    })
}

/// The prepared statement for `sql`, prepared once per connection.
fn pg_statement(
    cache: &RefCell<HashMap<String, postgres::Statement>>,
    lost_race: &Cell<Option<String>>,
    sql: &str,
    prepare: impl FnOnce(&str) -> Result<postgres::Statement, postgres::Error>,
) -> Result<postgres::Statement, DbError> {
    if let Some(st) = cache.borrow().get(sql) {
        return Ok(st.clone());
    }
    let st = pg_result(lost_race, prepare(&to_postgres(sql)))?;
    cache.borrow_mut().insert(sql.to_owned(), st.clone());
    Ok(st)
}

fn pg_params<'a>(params: &'a [&'a dyn ToParam]) -> Vec<PgParam<'a>> {
    params.iter().map(|p| PgParam(p.param())).collect()
}

fn pg_refs<'a>(params: &'a [PgParam<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// A parameter bound as whatever integer, text or bytes type the statement asks for.
#[derive(Debug)]
struct PgParam<'a>(Param<'a>);

impl postgres::types::ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match self.0 {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => {
                if *ty == Type::INT8 {
                    v.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(v)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(v)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (v != 0).to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (v as f64).to_sql(ty, out)
                } else {
                    Err(format!("an integer parameter where {ty} is expected").into())
                }
            }
            Param::Real(f) => {
                if *ty == Type::FLOAT4 {
                    (f as f32).to_sql(ty, out)
                } else {
                    f.to_sql(ty, out)
                }
            }
            Param::Text(s) => s.to_sql(ty, out),
            Param::Blob(b) => {
                if *ty == Type::BYTEA {
                    b.to_sql(ty, out)
                } else {
                    // Text columns take bytes that are UTF-8 (SQLite does not tell them apart).
                    std::str::from_utf8(b)?.to_sql(ty, out)
                }
            }
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_row(r: &postgres::Row) -> Result<Row, DbError> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(i64::from(v)))
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(f64::from(v)))
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if *ty == Type::TEXT
            || *ty == Type::VARCHAR
            || *ty == Type::BPCHAR
            || *ty == Type::NAME
            || *ty == Type::UNKNOWN
        {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(DbError::Corrupt(format!(
                "column {} has type {ty}, which arca does not read (cast it)",
                col.name()
            )));
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = '?1' AND \"?x\" = ?12 AND j ? ?2"),
            "SELECT a FROM t WHERE b = $1 AND c = '?1' AND \"?x\" = $12 AND j ? $2"
        );
    }

    #[test]
    fn rows_read_typed_and_refuse_other_types() {
        let mut c = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB)")
            .unwrap();
        let tx = c.transaction().unwrap();
        let none: Option<i64> = None;
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3), (?4, ?5, ?6)",
            params![7i64, "x", b"\x00\x01".as_slice(), none, "y", vec![2u8]],
        )
        .unwrap();
        tx.commit().unwrap();
        let rows = c
            .query("SELECT i, s, b FROM t ORDER BY s", params![])
            .unwrap();
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 7);
        assert_eq!(rows[0].get::<String>(1).unwrap(), "x");
        assert_eq!(rows[0].get::<Vec<u8>>(2).unwrap(), vec![0, 1]);
        assert_eq!(rows[1].get::<Option<i64>>(0).unwrap(), None);
        assert!(matches!(rows[0].get::<String>(0), Err(DbError::Corrupt(_))));
        assert!(matches!(rows[1].get::<i64>(0), Err(DbError::Corrupt(_))));
        assert!(matches!(rows[0].get::<i64>(5), Err(DbError::Corrupt(_))));
        // A transaction dropped without commit leaves nothing.
        {
            let tx = c.transaction().unwrap();
            tx.execute("DELETE FROM t", params![]).unwrap();
        }
        let c: &dyn Sql = &c;
        assert_eq!(
            c.value::<i64>("SELECT COUNT(*) FROM t", params![]).unwrap(),
            2
        );
    }
}
