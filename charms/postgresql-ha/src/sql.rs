//! SQL the leader runs on the primary through psql. Pure: builds text; identifiers and literals
//! are quoted here, and server-side `format(%I)` quotes what is built at run time.

/// `"name"` with inner quotes doubled.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What one client relation is given: the caller decides (only what `allowed-extensions` and
/// `allowed-extra-user-roles` list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access<'a> {
    /// Extensions to create in the database.
    pub extensions: &'a [String],
    /// Role attributes (`superuser`, `createdb`, `createrole`); every other one is taken away.
    pub attributes: &'a [String],
    /// Roles to make the client's role a member of (created NOLOGIN when missing).
    pub roles: &'a [String],
    /// Roles granted before and no longer: membership revoked.
    pub revoke: &'a [String],
}

/// Creates (or updates) a client's role, database and access. Idempotent.
pub fn provision(user: &str, password: &str, database: &str, access: &Access) -> String {
    let (u, ul) = (ident(user), literal(user));
    let has = |a: &str| access.attributes.iter().any(|x| x == a);
    let attr = |a: &str, on: &'static str, off: &'static str| if has(a) { on } else { off };
    let mut s = String::new();
    s += &format!("SELECT format('CREATE ROLE %I LOGIN', {ul}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {ul}) \\gexec\n");
    s += &format!(
        "ALTER ROLE {u} WITH LOGIN {} {} {} NOREPLICATION PASSWORD {};\n",
        attr("superuser", "SUPERUSER", "NOSUPERUSER"),
        attr("createdb", "CREATEDB", "NOCREATEDB"),
        attr("createrole", "CREATEROLE", "NOCREATEROLE"),
        literal(password)
    );
    for r in access.revoke {
        let rl = literal(r);
        s += &format!("SELECT format('REVOKE %I FROM %I', rolname, {ul}) FROM pg_roles WHERE rolname = {rl} \\gexec\n");
    }
    for r in access.roles {
        let rl = literal(r);
        s += &format!("SELECT format('CREATE ROLE %I NOLOGIN', {rl}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {rl}) \\gexec\n");
        // Never hand a client membership of a role that can log in or is a superuser.
        s += &format!("SELECT format('GRANT %I TO %I', rolname, {ul}) FROM pg_roles WHERE rolname = {rl} AND NOT rolsuper AND NOT rolcanlogin \\gexec\n");
    }
    let dl = literal(database);
    s += &format!("SELECT format('CREATE DATABASE %I OWNER %I', {dl}, {ul}) WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {dl}) \\gexec\n");
    s += &format!(
        "GRANT ALL PRIVILEGES ON DATABASE {} TO {u};\n",
        ident(database)
    );
    // A database made for an earlier relation (the client was re-related) belongs to that
    // relation's role: membership of it gives the new role the existing tables.
    s += &format!(
        "SELECT format('GRANT %I TO %I', r.rolname, {ul}) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
WHERE d.datname = {dl} AND r.rolname <> {ul} AND NOT r.rolsuper AND r.rolname LIKE 'relation\\_%' \\gexec\n"
    );
    s += &format!("\\c {}\n", ident(database));
    for e in access.extensions {
        s += &format!("CREATE EXTENSION IF NOT EXISTS {};\n", ident(e));
    }
    s += &format!("GRANT ALL ON SCHEMA public TO {u};\n");
    s
}

/// Waits, at most `seconds`, until the server's pg_hba.conf lets `user` in from every one of
/// `addresses` (validated IPs); fails (exit 3) if it still does not then. `pg_hba_file_rules`
/// reads the file as it is now, and Patroni reloads PostgreSQL right after writing it.
pub fn wait_for_hba(user: &str, addresses: &[String], seconds: u32) -> String {
    let ul = literal(user);
    let list = addresses
        .iter()
        .map(|a| literal(a))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "DO $wait$\n\
DECLARE deadline timestamptz := clock_timestamp() + interval '{seconds} seconds';\n\
BEGIN\n\
  WHILE (SELECT count(DISTINCT address) FROM pg_hba_file_rules WHERE {ul} = ANY(user_name) AND address = ANY(ARRAY[{list}]::text[])) < {n} LOOP\n\
    IF clock_timestamp() > deadline THEN\n\
      RAISE EXCEPTION 'pg_hba.conf does not let % in from every unit yet', {ul};\n\
    END IF;\n\
    PERFORM pg_sleep(0.2);\n\
  END LOOP;\n\
END\n\
$wait$;\n",
        n = addresses.len()
    )
}

/// What to show of psql's stderr when it failed: its errors, without the notices and warnings
/// the script also produced (`NOTICE:  extension "btree_gin" already exists, skipping`), which
/// say nothing about the failure. A message's DETAIL, HINT, CONTEXT and LINE lines stay with
/// it. Everything when nothing is left (a message this does not recognise is kept).
pub fn psql_errors(stderr: &str) -> String {
    const QUIET: [&str; 5] = ["NOTICE:", "WARNING:", "INFO:", "LOG:", "DEBUG"];
    const FOLLOWS: [&str; 7] = [
        "DETAIL:",
        "HINT:",
        "CONTEXT:",
        "QUERY:",
        "STATEMENT:",
        "LOCATION:",
        "LINE ",
    ];
    // `psql:<stdin>:12: NOTICE:  ...` → `NOTICE:  ...`.
    fn body(line: &str) -> &str {
        let Some(rest) = line.strip_prefix("psql:") else {
            return line;
        };
        let mut parts = rest.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(n), Some(msg)) if n.chars().all(|c| c.is_ascii_digit()) => {
                msg.trim_start()
            }
            _ => line,
        }
    }
    let mut kept = Vec::new();
    let mut keeping = true;
    for line in stderr.lines() {
        let b = body(line);
        let continues = b.is_empty()
            || line.starts_with(char::is_whitespace)
            || FOLLOWS.iter().any(|f| b.starts_with(f));
        if !continues {
            keeping = !QUIET.iter().any(|q| b.starts_with(q));
        }
        if keeping {
            kept.push(line);
        }
    }
    let text = kept.join("\n").trim().to_string();
    if text.is_empty() {
        stderr.trim().to_string()
    } else {
        text
    }
}

/// Takes a client's access away: no more logins, its sessions ended. Its database is kept.
pub fn revoke(user: &str) -> String {
    let ul = literal(user);
    format!(
        "SELECT format('ALTER ROLE %I NOLOGIN', rolname) FROM pg_roles WHERE rolname = {ul} \\gexec\n\
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {ul};\n"
    )
}

/// The exporter's least-privilege role: LOGIN (peer authentication over the socket only: no
/// password is ever set) and `pg_monitor`, which reads statistics and settings and nothing
/// else. Idempotent.
pub fn monitoring_role(role: &str) -> String {
    format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN CREATE ROLE {id} LOGIN; END IF; END $$;\nALTER ROLE {id} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD NULL;\nGRANT pg_monitor TO {id};\n",
        lit = literal(role),
        id = ident(role)
    )
}

/// Sets a role's password.
pub fn set_password(role: &str, password: &str) -> String {
    format!(
        "ALTER ROLE {} WITH PASSWORD {};\n",
        ident(role),
        literal(password)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn provision_is_idempotent_sql_with_the_extensions_given() {
        let s = provision(
            "relation_5",
            "pw'x",
            "maas-region",
            &Access {
                extensions: &["btree_gin".into(), "pg_trgm".into()],
                roles: &["readers".into()],
                ..Access::default()
            },
        );
        assert!(s.contains("WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'relation_5')"));
        assert!(s.contains("PASSWORD 'pw''x'"));
        assert!(s.contains("\\c \"maas-region\""));
        assert_eq!(
            s.matches("CREATE EXTENSION IF NOT EXISTS \"btree_gin\"")
                .count(),
            1
        );
        assert!(s.contains("CREATE EXTENSION IF NOT EXISTS \"pg_trgm\""));
        assert_eq!(s.matches("CREATE EXTENSION").count(), 2, "only those given");
        assert!(s.contains("AND NOT rolsuper AND NOT rolcanlogin"));
        assert!(
            s.contains("JOIN pg_roles r ON r.oid = d.datdba"),
            "a re-related client inherits the earlier owner"
        );
    }

    #[test]
    fn attributes_not_given_are_taken_away_and_old_roles_revoked() {
        // Arrange: createdb and a role granted, an earlier role no longer.
        let access = Access {
            attributes: &["createdb".into()],
            roles: &["pg_read_all_data".into()],
            revoke: &["readers".into()],
            ..Access::default()
        };
        // Act.
        let s = provision("relation_7", "pw", "app", &access);
        // Assert.
        assert!(
            s.contains("ALTER ROLE \"relation_7\" WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION PASSWORD 'pw';"),
            "{s}"
        );
        assert!(s.contains("SELECT format('GRANT %I TO %I', rolname, 'relation_7') FROM pg_roles WHERE rolname = 'pg_read_all_data' AND NOT rolsuper AND NOT rolcanlogin \\gexec"), "{s}");
        assert!(s.contains("SELECT format('REVOKE %I FROM %I', rolname, 'relation_7') FROM pg_roles WHERE rolname = 'readers' \\gexec"), "{s}");
        let all = provision(
            "relation_7",
            "pw",
            "app",
            &Access {
                attributes: &["createrole".into(), "superuser".into()],
                ..Access::default()
            },
        );
        assert!(
            all.contains("WITH LOGIN SUPERUSER NOCREATEDB CREATEROLE NOREPLICATION"),
            "{all}"
        );
        assert!(!all.contains("REVOKE"), "nothing to revoke: {all}");
    }

    #[test]
    fn the_hba_wait_counts_the_units_addresses_for_the_role() {
        let s = wait_for_hba("relation_7", &["10.0.0.60".into(), "10.0.0.61".into()], 20);
        assert!(s.contains("interval '20 seconds'"), "{s}");
        assert!(
            s.contains("WHERE 'relation_7' = ANY(user_name) AND address = ANY(ARRAY['10.0.0.60', '10.0.0.61']::text[])) < 2 LOOP"),
            "{s}"
        );
        assert!(s.contains("RAISE EXCEPTION"), "{s}");
        assert!(s.trim_end().ends_with("$wait$;"), "{s}");
    }

    #[test]
    fn psql_errors_leave_the_notices_out() {
        let stderr = "psql:<stdin>:12: NOTICE:  extension \"btree_gin\" already exists, skipping\n\
psql:<stdin>:13: WARNING:  something minor\n\
DETAIL:  about the warning\n\
psql:<stdin>:14: ERROR:  could not open extension control file \"/usr/share/postgresql/15/extension/postgis.control\": No such file or directory\n\
HINT:  The extension must first be installed on the system where PostgreSQL is running.\n";
        assert_eq!(
            psql_errors(stderr),
            "psql:<stdin>:14: ERROR:  could not open extension control file \"/usr/share/postgresql/15/extension/postgis.control\": No such file or directory\n\
HINT:  The extension must first be installed on the system where PostgreSQL is running."
        );
        // A connection failure is not a server message: kept whole.
        let conn = "psql: error: connection to server at \"10.0.0.10\", port 5432 failed: Connection refused";
        assert_eq!(psql_errors(conn), conn);
        // Only notices: shown rather than nothing.
        let only = "psql:<stdin>:3: NOTICE:  role exists";
        assert_eq!(psql_errors(only), only);
    }

    #[test]
    fn revoke_disables_login_and_ends_sessions() {
        let s = revoke("relation_5");
        assert!(s.contains("ALTER ROLE %I NOLOGIN"));
        assert!(s.contains("pg_terminate_backend"));
    }
}
