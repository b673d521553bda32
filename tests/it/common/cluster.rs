//! Several servers on one PostgreSQL database and one S3 bucket (moto), the second and later
//! ones made with `arca init --join`, as docs/operations.md ("Several servers") sets them up.

use super::Server;
use super::moto::Moto;

/// The servers and the bucket they share (servers first: they stop before the bucket).
pub struct Cluster {
    pub servers: Vec<Server>,
    pub moto: Moto,
}

impl Cluster {
    /// `n` servers on one database and one bucket, each with `config` in its arca.toml; `None`
    /// when the tests run on SQLite (several servers need PostgreSQL).
    pub fn start(n: usize, config: &str) -> Option<Cluster> {
        if super::pg_admin_url().is_none() {
            eprintln!("ARCA_TEST_PG unset: several servers need PostgreSQL");
            return None;
        }
        let moto = Moto::start();
        let first = Server::start_with(Some(&format!("{}\n{config}", moto.config(""))), &[]);
        let mut servers = vec![first];
        for _ in 1..n {
            let s = servers[0].join_with(&moto.store_url(), &moto.store_options(), config);
            servers.push(s);
        }
        Some(Cluster { servers, moto })
    }

    /// The server for the `i`th request of a round robin.
    pub fn at(&self, i: usize) -> &Server {
        &self.servers[i % self.servers.len()]
    }
}
