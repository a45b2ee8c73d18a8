//! The database servers the SQL tests use, and names no other run uses.
//!
//! The servers are found through `HOOKHOST_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `HOOKHOST_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`).

use std::time::{SystemTime, UNIX_EPOCH};

const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// The PostgreSQL server's URL.
pub fn postgres_url() -> String {
    std::env::var("HOOKHOST_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned())
}

/// The MySQL or MariaDB server's URL.
pub fn mysql_url() -> String {
    std::env::var("HOOKHOST_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_DEFAULT.to_owned())
}

/// A name (a table, a lock) no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}
