//! Every database call has a deadline.
//!
//! A lock on a table (a migration, a long transaction) or a PostgreSQL connection that
//! goes silent must not leave a request, a join or a recovery read waiting for
//! minutes: each pooled connection bounds its statements (`statement_timeout` on
//! PostgreSQL, `busy_timeout` on SQLite), and libpq bounds connecting and a silent
//! peer (`connect_timeout`, TCP keepalives, `tcp_user_timeout`). The pool bounds the
//! wait for a free connection with the same timeout.
//!
//! The connection that runs migrations at start is not a pooled one and has no
//! statement timeout: a migration may take as long as it takes.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::CustomizeConnection;

use super::AnyConnection;

/// Bounds every statement of a pooled connection, set once when the pool opens it.
#[derive(Debug, Clone, Copy)]
pub struct StatementTimeout(pub Duration);

impl StatementTimeout {
    fn millis(&self) -> u128 {
        self.0.as_millis().max(1)
    }
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        let sql = match conn {
            AnyConnection::Postgresql(_) => format!("SET statement_timeout = {}", self.millis()),
            AnyConnection::Sqlite(_) => format!("PRAGMA busy_timeout = {}", self.millis()),
        };
        conn.batch_execute(&sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `url` with libpq's connection deadlines added, unless the URL sets them itself:
/// connecting takes at most `timeout` (libpq's least is 2 s), an idle connection is
/// probed after 5 s and given up after three lost probes, and data the peer does not
/// acknowledge within twice `timeout` ends the connection.
pub fn with_libpq_deadlines(url: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs().max(2);
    let user_timeout = (timeout.as_millis() * 2).max(1000);
    let wanted = [
        ("connect_timeout", secs.to_string()),
        ("keepalives", "1".to_owned()),
        ("keepalives_idle", "5".to_owned()),
        ("keepalives_interval", "2".to_owned()),
        ("keepalives_count", "3".to_owned()),
        ("tcp_user_timeout", user_timeout.to_string()),
    ];
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let given: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .collect();
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for (name, value) in wanted {
        if !given.contains(&name) {
            params.push(format!("{name}={value}"));
        }
    }
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_deadlines_are_added_to_a_plain_url() {
        assert_eq!(
            with_libpq_deadlines("postgres://u@h:5432/db", Duration::from_secs(5)),
            "postgres://u@h:5432/db?connect_timeout=5&keepalives=1&keepalives_idle=5\
             &keepalives_interval=2&keepalives_count=3&tcp_user_timeout=10000"
        );
    }

    #[test]
    fn what_the_url_sets_itself_stands() {
        let url = with_libpq_deadlines(
            "postgres://h/db?sslmode=disable&connect_timeout=30",
            Duration::from_millis(500),
        );
        assert_eq!(
            url,
            "postgres://h/db?sslmode=disable&connect_timeout=30&keepalives=1\
             &keepalives_idle=5&keepalives_interval=2&keepalives_count=3&tcp_user_timeout=1000"
        );
    }
}
