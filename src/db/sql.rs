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
    /// Takes the row locks of `sql`, a `SELECT ... FOR NO KEY UPDATE` whose rows nobody
    /// reads. On PostgreSQL in a transaction it goes to the server with the next statement that
    /// is answered, ahead of it (see `PgTx`); outside one, at once. On SQLite it does nothing:
    /// every transaction there holds the database's one write lock. `required`: the error when
    /// it locks no row.
    fn lock(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
        required: Option<&str>,
    ) -> Result<(), DbError>;
    /// Runs a write whose row count nobody reads: on PostgreSQL in a transaction it goes with
    /// the next statement that is answered (an error in it fails that one); elsewhere at once.
    fn defer(&self, sql: &str, params: &[&dyn ToParam]) -> Result<(), DbError>;
    /// The rows of several queries that do not depend on each other, in order: on PostgreSQL
    /// sent together, in one round trip.
    fn query_all(&self, queries: &[(&str, &[&dyn ToParam])]) -> Result<Vec<Vec<Row>>, DbError>;
    /// Marks a transaction that writes metadata servers answer polls with: on PostgreSQL it
    /// commits only once no server holds a metadata lease (`db::lease`); outside a
    /// transaction such a write is refused. Nothing on SQLite, where one server is alone.
    fn publishes_metadata(&self) -> Result<(), DbError>;

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

/// A PostgreSQL connection: tokio-postgres's client on a runtime of its own, driven by the
/// (blocking-pool) thread that waits for it, so that several statements can be sent at once and
/// answered in one round trip (tokio-postgres pipelines requests in the order they are made).
struct PgConn {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
    /// Set when a statement lost a race with a concurrent transaction; `Db::call` then rolls
    /// back and runs the use case again (whatever the use case made of the error).
    lost_race: Cell<Option<String>>,
    /// Where a transaction that publishes metadata asks for leases back (`db::lease`).
    notifier: std::sync::Arc<super::lease::Notifier>,
}

/// A transaction; dropped without [`Tx::commit`], it rolls back.
pub struct Tx<'c>(TxKind<'c>);

enum TxKind<'c> {
    Sqlite(rusqlite::Transaction<'c>),
    Postgres(PgTx<'c>),
}

/// A PostgreSQL transaction. `BEGIN`, the row locks ([`Sql::lock`]) and the writes nobody reads
/// an answer of ([`Sql::defer`]) are not sent on their own: they wait, and go to the server in
/// the round trip of the next statement that is answered (or of `COMMIT`), ahead of it.
/// Statements run in the order sent, each under a snapshot of its own (READ COMMITTED), so a
/// lock is held before the reads it guards exactly as if sent alone; an error in a deferred
/// statement fails the statement it went with, and the transaction.
struct PgTx<'c> {
    conn: &'c PgConn,
    pending: RefCell<Vec<Deferred>>,
    /// `BEGIN` reached the server: a transaction dropped without commit is rolled back.
    begun: Cell<bool>,
    finished: Cell<bool>,
    /// It writes metadata that servers answer polls with: it commits only under the lease
    /// lock, exclusively (`db::lease`).
    publishes: Cell<bool>,
}

/// A statement waiting for the next round trip.
struct Deferred {
    sql: String,
    params: Vec<Value>,
    /// A lock: the corrupt-database error when it locks no row (`None`: a write, or no row is
    /// fine).
    required: Option<String>,
}

/// One statement of a round trip.
enum Step<'a> {
    /// Without parameters, by the simple protocol (`BEGIN`, `COMMIT`, a batch).
    Simple(&'a str),
    /// Prepared, answered with its rows.
    Rows(&'a str, Vec<Param<'a>>),
    /// Prepared, answered with the number of rows it changed.
    Count(&'a str, Vec<Param<'a>>),
}

/// What a step was answered with.
enum Answer {
    Done,
    Rows(Vec<tokio_postgres::Row>),
    Count(u64),
}

impl PgConn {
    fn connect(
        config: &tokio_postgres::Config,
        notifier: Option<std::sync::Arc<super::lease::Notifier>>,
    ) -> Result<PgConn, tokio_postgres::Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let (client, connection) = rt.block_on(config.connect(tokio_postgres::NoTls))?;
        // Runs whenever a caller blocks on the runtime, i.e. while a statement is answered.
        rt.spawn(async move {
            let _ = connection.await;
        });
        Ok(PgConn {
            rt,
            client,
            statements: RefCell::new(HashMap::new()),
            lost_race: Cell::new(None),
            notifier: notifier.unwrap_or_else(|| {
                std::sync::Arc::new(super::lease::Notifier::new(config.clone()))
            }),
        })
    }

    /// The prepared statement of each of `sqls`, preparing the new ones (in one round trip).
    fn prepared(&self, sqls: &[&str]) -> Result<Vec<tokio_postgres::Statement>, DbError> {
        let missing: Vec<&str> = {
            let cache = self.statements.borrow();
            let mut m: Vec<&str> = sqls
                .iter()
                .copied()
                .filter(|s| !cache.contains_key(*s))
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            let translated: Vec<String> = missing.iter().map(|s| to_postgres(s)).collect();
            let prepared = self.rt.block_on(futures::future::join_all(
                translated.iter().map(|q| self.client.prepare(q)),
            ));
            let mut cache = self.statements.borrow_mut();
            for (sql, st) in missing.iter().zip(prepared) {
                cache.insert((*sql).to_owned(), pg_result(&self.lost_race, st)?);
            }
        }
        let cache = self.statements.borrow();
        Ok(sqls.iter().map(|s| cache[*s].clone()).collect())
    }

    /// Sends `steps` at once and waits for every answer: one round trip (plus one to prepare
    /// statements this connection has not seen). The first error, in order, is the answer
    /// (a later statement of a failed transaction only says that it was aborted).
    fn send(&self, steps: &[Step<'_>]) -> Result<Vec<Answer>, DbError> {
        let sqls: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Rows(sql, _) | Step::Count(sql, _) => Some(*sql),
                Step::Simple(_) => None,
            })
            .collect();
        let statements = self.prepared(&sqls)?;
        let params: Vec<Vec<PgParam<'_>>> = steps
            .iter()
            .map(|s| match s {
                Step::Rows(_, p) | Step::Count(_, p) => p.iter().map(|p| PgParam(*p)).collect(),
                Step::Simple(_) => Vec::new(),
            })
            .collect();
        let refs: Vec<Vec<&(dyn tokio_postgres::types::ToSql + Sync)>> =
            params.iter().map(|p| pg_refs(p)).collect();
        type Fut<'f> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Answer, tokio_postgres::Error>> + 'f>,
        >;
        let mut next = statements.iter();
        let futures: Vec<Fut<'_>> =
            steps
                .iter()
                .zip(&refs)
                .map(|(s, p)| -> Fut<'_> {
                    let client = &self.client;
                    match s {
                        Step::Simple(sql) => Box::pin(async move {
                            client.batch_execute(sql).await.map(|_| Answer::Done)
                        }),
                        Step::Rows(..) => {
                            let st = next.next().expect("one statement per step");
                            Box::pin(async move { client.query(st, p).await.map(Answer::Rows) })
                        }
                        Step::Count(..) => {
                            let st = next.next().expect("one statement per step");
                            Box::pin(async move { client.execute(st, p).await.map(Answer::Count) })
                        }
                    }
                })
                .collect();
        let answers = self.rt.block_on(futures::future::join_all(futures));
        answers
            .into_iter()
            .map(|a| pg_result(&self.lost_race, a))
            .collect()
    }
}

/// Where PostgreSQL statements go: a connection, at once, or a transaction, after what waits.
trait PgSession {
    /// Sends `steps` in one round trip; their answers.
    fn exchange(&self, steps: Vec<Step<'_>>) -> Result<Vec<Answer>, DbError>;
    /// A statement whose answer nobody reads (a lock, a write): a transaction keeps it for its
    /// next round trip, a connection runs it now.
    fn later(&self, d: Deferred) -> Result<(), DbError>;
    /// See [`Sql::publishes_metadata`].
    fn publishes(&self) -> Result<(), DbError>;

    fn one(&self, step: Step<'_>) -> Result<Answer, DbError> {
        Ok(self.exchange(vec![step])?.pop().expect("one answer"))
    }
}

impl Deferred {
    fn step(&self) -> Step<'_> {
        let params = self.params.iter().map(ToParam::param).collect();
        match self.required {
            Some(_) => Step::Rows(&self.sql, params),
            None => Step::Count(&self.sql, params),
        }
    }

    /// A lock that locked no row is a corrupt database.
    fn check(&self, answer: &Answer) -> Result<(), DbError> {
        match (&self.required, answer) {
            (Some(why), Answer::Rows(rows)) if rows.is_empty() => {
                Err(DbError::Corrupt(why.clone()))
            }
            _ => Ok(()),
        }
    }
}

impl PgSession for PgConn {
    fn exchange(&self, steps: Vec<Step<'_>>) -> Result<Vec<Answer>, DbError> {
        self.send(&steps)
    }

    fn later(&self, d: Deferred) -> Result<(), DbError> {
        d.check(&self.one(d.step())?)
    }

    fn publishes(&self) -> Result<(), DbError> {
        Err(DbError::Postgres(
            "metadata is published only in a transaction (it must wait for the servers' leases)"
                .into(),
        ))
    }
}

impl Conn {
    pub(super) fn sqlite(c: rusqlite::Connection) -> Conn {
        Conn(ConnKind::Sqlite(c))
    }

    pub(super) fn postgres(
        config: &tokio_postgres::Config,
        notifier: Option<std::sync::Arc<super::lease::Notifier>>,
    ) -> Result<Conn, tokio_postgres::Error> {
        Ok(Conn(ConnKind::Postgres(Box::new(PgConn::connect(
            config, notifier,
        )?))))
    }

    /// Begins a transaction: on SQLite `IMMEDIATE` (it takes the write lock at once), on
    /// PostgreSQL `READ COMMITTED`, the engine's default, with the row locks of
    /// `db::locks` taken before the reads they guard.
    pub fn transaction(&mut self) -> Result<Tx<'_>, DbError> {
        Ok(Tx(match &mut self.0 {
            ConnKind::Sqlite(c) => TxKind::Sqlite(c.transaction()?),
            ConnKind::Postgres(pg) => TxKind::Postgres(PgTx {
                conn: pg,
                pending: RefCell::new(Vec::new()),
                begun: Cell::new(false),
                finished: Cell::new(false),
                publishes: Cell::new(false),
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
            ConnKind::Postgres(pg) => pg.client.is_closed(),
        }
    }
}

impl Tx<'_> {
    pub fn commit(self) -> Result<(), DbError> {
        match self.0 {
            TxKind::Sqlite(t) => t.commit()?,
            TxKind::Postgres(t) => {
                if t.publishes.get() {
                    t.take_lease_lock()?;
                }
                if t.begun.get() || !t.pending.borrow().is_empty() {
                    t.exchange(vec![Step::Simple("COMMIT")])?;
                }
                t.finished.set(true);
                super::tuf::bump_generation();
            }
        }
        Ok(())
    }
}

impl PgTx<'_> {
    /// Takes the lease lock exclusively, for the rest of the transaction: at once if no server
    /// holds a lease, else after asking the holders to give theirs back (`db::lease`), again
    /// every `lease::ASK_EVERY`, for at most `lease::GIVE_UP_AFTER`. Publishers queue for the
    /// lock in turn, and a holder that asks for its lease again queues behind them.
    fn take_lease_lock(&self) -> Result<(), DbError> {
        use super::lease::{ASK_EVERY, GIVE_UP_AFTER, LEASE_LOCK};
        let free = self.one(Step::Rows(
            "SELECT pg_try_advisory_xact_lock(?1)",
            vec![Param::Int(LEASE_LOCK)],
        ))?;
        if let Answer::Rows(rows) = &free
            && rows.first().is_some_and(|r| r.get::<_, bool>(0))
        {
            return Ok(());
        }
        let wait = format!(
            "SAVEPOINT arca_lease; SET LOCAL lock_timeout = {}; \
             SELECT pg_advisory_xact_lock({LEASE_LOCK}); RELEASE SAVEPOINT arca_lease",
            ASK_EVERY.as_millis()
        );
        let started = std::time::Instant::now();
        loop {
            self.conn.notifier.ask()?;
            let waited = self.conn.rt.block_on(self.conn.client.batch_execute(&wait));
            match waited {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
                {
                    self.conn.rt.block_on(
                        self.conn
                            .client
                            .batch_execute("ROLLBACK TO SAVEPOINT arca_lease"),
                    )?;
                    if started.elapsed() >= GIVE_UP_AFTER {
                        return Err(DbError::Unavailable(format!(
                            "other arca servers kept their metadata leases for {} s; nothing was published",
                            GIVE_UP_AFTER.as_secs()
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl PgSession for PgTx<'_> {
    /// Sends `BEGIN` (the first time), what is pending, and `steps`, in one round trip; the
    /// answers of `steps`.
    fn exchange(&self, steps: Vec<Step<'_>>) -> Result<Vec<Answer>, DbError> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let begin = !self.begun.get();
        let mut all: Vec<Step<'_>> = Vec::with_capacity(1 + pending.len() + steps.len());
        if begin {
            all.push(Step::Simple("BEGIN"));
        }
        all.extend(pending.iter().map(Deferred::step));
        let first = all.len();
        all.extend(steps);
        self.begun.set(true);
        let mut answers = self.conn.send(&all)?;
        for (d, a) in pending.iter().zip(&answers[usize::from(begin)..first]) {
            d.check(a)?;
        }
        Ok(answers.split_off(first))
    }

    fn later(&self, d: Deferred) -> Result<(), DbError> {
        self.pending.borrow_mut().push(d);
        Ok(())
    }

    fn publishes(&self) -> Result<(), DbError> {
        self.publishes.set(true);
        Ok(())
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.begun.get() && !self.finished.get() {
            // A broken connection is dropped by the pool anyway.
            let _ = self
                .conn
                .rt
                .block_on(self.conn.client.batch_execute("ROLLBACK"));
        }
    }
}

fn params_of<'a>(params: &'a [&'a dyn ToParam]) -> Vec<Param<'a>> {
    params.iter().map(|p| p.param()).collect()
}

fn owned(params: &[&dyn ToParam]) -> Vec<Value> {
    params
        .iter()
        .map(|p| match p.param() {
            Param::Null => Value::Null,
            Param::Int(i) => Value::Int(i),
            Param::Real(f) => Value::Real(f),
            Param::Text(t) => Value::Text(t.to_owned()),
            Param::Blob(b) => Value::Blob(b.to_vec()),
        })
        .collect()
}

fn rows_of(a: Answer) -> Result<Vec<Row>, DbError> {
    match a {
        Answer::Rows(rows) => rows.iter().map(pg_row).collect(),
        _ => Ok(Vec::new()),
    }
}

fn count_of(a: Answer) -> usize {
    match a {
        Answer::Count(n) => n as usize,
        _ => 0,
    }
}

/// What a [`Conn`] or a [`Tx`] runs its statements on: the one implementation of [`Sql`].
enum Session<'a> {
    /// A connection, or a transaction (which derefs to its connection).
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a dyn PgSession),
}

impl Conn {
    fn session(&self) -> Session<'_> {
        match &self.0 {
            ConnKind::Sqlite(c) => Session::Sqlite(c),
            ConnKind::Postgres(pg) => Session::Postgres(pg.as_ref()),
        }
    }
}

impl Tx<'_> {
    fn session(&self) -> Session<'_> {
        match &self.0 {
            TxKind::Sqlite(t) => Session::Sqlite(t),
            TxKind::Postgres(t) => Session::Postgres(t),
        }
    }
}

impl Session<'_> {
    fn engine(&self) -> Engine {
        match self {
            Session::Sqlite(_) => Engine::Sqlite,
            Session::Postgres(_) => Engine::Postgres,
        }
    }

    fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<usize, DbError> {
        match self {
            Session::Sqlite(c) => sqlite_execute(c, sql, params),
            Session::Postgres(pg) => Ok(count_of(pg.one(Step::Count(sql, params_of(params)))?)),
        }
    }

    fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, DbError> {
        match self {
            Session::Sqlite(c) => sqlite_query(c, sql, params),
            Session::Postgres(pg) => rows_of(pg.one(Step::Rows(sql, params_of(params)))?),
        }
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Session::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Session::Postgres(pg) => pg.one(Step::Simple(sql)).map(drop),
        }
    }

    fn lock(
        &self,
        sql: &str,
        params: &[&dyn ToParam],
        required: Option<&str>,
    ) -> Result<(), DbError> {
        match self {
            // Every SQLite transaction holds the database's one write lock.
            Session::Sqlite(_) => Ok(()),
            Session::Postgres(pg) => pg.later(Deferred {
                sql: sql.to_owned(),
                params: owned(params),
                required: required.map(str::to_owned),
            }),
        }
    }

    fn defer(&self, sql: &str, params: &[&dyn ToParam]) -> Result<(), DbError> {
        match self {
            Session::Sqlite(c) => sqlite_execute(c, sql, params).map(drop),
            Session::Postgres(pg) => pg.later(Deferred {
                sql: sql.to_owned(),
                params: owned(params),
                required: None,
            }),
        }
    }

    fn publishes_metadata(&self) -> Result<(), DbError> {
        match self {
            Session::Sqlite(_) => Ok(()),
            Session::Postgres(pg) => pg.publishes(),
        }
    }

    fn query_all(&self, queries: &[(&str, &[&dyn ToParam])]) -> Result<Vec<Vec<Row>>, DbError> {
        match self {
            Session::Sqlite(c) => queries
                .iter()
                .map(|(sql, params)| sqlite_query(c, sql, params))
                .collect(),
            Session::Postgres(pg) => pg
                .exchange(
                    queries
                        .iter()
                        .map(|(sql, params)| Step::Rows(sql, params_of(params)))
                        .collect(),
                )?
                .into_iter()
                .map(rows_of)
                .collect(),
        }
    }
}

/// [`Sql`] for a connection and for a transaction alike, through their [`Session`].
macro_rules! sql_by_session {
    ($t:ty) => {
        impl Sql for $t {
            fn engine(&self) -> Engine {
                self.session().engine()
            }
            fn execute(&self, sql: &str, params: &[&dyn ToParam]) -> Result<usize, DbError> {
                self.session().execute(sql, params)
            }
            fn query(&self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, DbError> {
                self.session().query(sql, params)
            }
            fn batch(&self, sql: &str) -> Result<(), DbError> {
                self.session().batch(sql)
            }
            fn lock(
                &self,
                sql: &str,
                params: &[&dyn ToParam],
                required: Option<&str>,
            ) -> Result<(), DbError> {
                self.session().lock(sql, params, required)
            }
            fn defer(&self, sql: &str, params: &[&dyn ToParam]) -> Result<(), DbError> {
                self.session().defer(sql, params)
            }
            fn query_all(
                &self,
                queries: &[(&str, &[&dyn ToParam])],
            ) -> Result<Vec<Vec<Row>>, DbError> {
                self.session().query_all(queries)
            }
            fn publishes_metadata(&self) -> Result<(), DbError> {
                self.session().publishes_metadata()
            }
        }
    };
}

sql_by_session!(Conn);
sql_by_session!(Tx<'_>);

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
    r: Result<T, tokio_postgres::Error>,
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

fn pg_refs<'a>(params: &'a [PgParam<'a>]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// A parameter bound as whatever integer, text or bytes type the statement asks for.
#[derive(Debug)]
struct PgParam<'a>(Param<'a>);

impl tokio_postgres::types::ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, Type};
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

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row, DbError> {
    use tokio_postgres::types::Type;
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
