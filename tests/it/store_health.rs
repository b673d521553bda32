//! The server's backends failing: a blob store that cannot be reached (a bucket that does not
//! exist) makes `/readyz` and pushes answer 503 naming the store; a database write lock held
//! by another process is waited out, not failed at once.

use crate::common;

use std::time::{Duration, Instant};

use common::Server;
use common::moto::Moto;
use common::raw::{self, block};

#[test]
fn a_missing_bucket_makes_readyz_and_pushes_answer_503() {
    let moto = Moto::start_empty();
    let config = format!(
        "[store]\nurl = \"s3://no-such-bucket/p\"\n[store.options]\n\
         aws_endpoint = \"http://127.0.0.1:{}\"\naws_allow_http = \"true\"\n\
         aws_access_key_id = \"testing\"\naws_secret_access_key = \"testing\"\n\
         aws_region = \"us-east-1\"\n",
        moto.port
    );
    let s = Server::start_with(Some(&config), &[]);
    let http = raw::http();

    let ready = block(async {
        raw::answer(http.get(format!("{}/readyz", s.url)).send().await.unwrap()).await
    });
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.code, "store_unavailable", "{ready:?}");
    assert!(ready.message.contains("s3://no-such-bucket/p"), "{ready:?}");
    let checks: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(
        (&checks["ready"], &checks["database"], &checks["store"]),
        (
            &serde_json::json!(false),
            &serde_json::json!("ok"),
            &serde_json::json!("unavailable")
        ),
        "{checks}"
    );

    let key = s.builder("builder", "app/*");
    let before = s.state();
    let signer = raw::key_id(&key);
    let staged = block(async {
        raw::answer(
            http.post(format!(
                "{}/api/v1/uploads?name=app/x&version=1.0.0&signer={signer}",
                s.url
            ))
            .bearer_auth(&s.token)
            .body(vec![7u8; 1000])
            .send()
            .await
            .unwrap(),
        )
        .await
    });
    assert_eq!(staged.status, 503, "{staged:?}");
    assert_eq!(staged.code, "store_unavailable", "{staged:?}");
    assert!(
        !staged.message.contains("NoSuchBucket"),
        "no backend text leaks: {staged:?}"
    );
    assert_eq!(s.state(), before);
    // The cause is in the log.
    assert!(s.log().contains("the blob store failed"), "{}", s.log());

    // The CLI calls it what it is, a server failure (exit 5), never a refusal.
    let file = s.file("x.bin", 1000, 7);
    let out = s
        .arca()
        .args(["push", file.to_str().unwrap(), "app/x@1.0.0", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    let err = common::failure_line(&["push"], &out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("server failure (503 store_unavailable)"),
        "{err}"
    );
    assert!(!err.starts_with("error: refused"), "{err}");
    assert_eq!(s.state(), before);
}

#[test]
fn a_healthy_server_is_ready() {
    let s = Server::start();
    let http = raw::http();
    let r = block(async {
        http.get(format!("{}/readyz", s.url))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(r.as_u16(), 200);
}

#[test]
fn a_push_waits_out_another_process_holding_the_write_lock() {
    if common::engine() != "sqlite" {
        eprintln!("SQLite only: holds the arca.db file's single write lock from another process");
        return;
    }
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("a.bin", 4096, 1);
    let db = s.home.join("arca.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        // A real write, so that a transaction which started reading before it cannot write after.
        c.execute_batch("BEGIN IMMEDIATE; CREATE TABLE lock_probe (x); DROP TABLE lock_probe;")
            .unwrap();
        locked_tx.send(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.execute_batch("COMMIT").unwrap();
    });
    let locked_at = locked_rx.recv().unwrap();
    let out = s.ok(&raw::push_args(&file, "app/a", "1.0.0", &key));
    assert!(out.contains("pushed app/a@1.0.0"), "{out}");
    assert!(
        locked_at.elapsed() >= Duration::from_millis(1400),
        "the push finished while the lock was held"
    );
    holder.join().unwrap();
}
