//! The forms `[state] url` accepts, read into a [`Target`]: one server, a master under
//! Sentinel, or a Cluster. Here, in the configuration layer, so that a malformed URL is refused
//! when the configuration loads; `state::redis_conn` connects to what it names.
//!
//! - `redis://[[user]:password@]host:port[/db]`, `rediss://` (TLS), `redis+unix:///path`: one
//!   server, read by the redis crate itself;
//! - `redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]`
//!   (`rediss+sentinel://` for TLS to sentinels and master): the credentials are the master's;
//!   sentinels that require a password of their own take `?sentinel_password=...` (and
//!   `sentinel_username=...`), percent-encoded;
//! - `redis+cluster://[[user]:password@]host:port[,host:port...]` (`rediss+cluster://` for
//!   TLS): seed nodes of a Cluster (database 0 only).
//!
//! Errors never repeat the URL: it may carry a password.

use percent_encoding::percent_decode_str;

/// Where the store's Redis is, as [`Target::parse`] read it from the URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// One server: the URL as the crate reads it.
    Single(String),
    /// A master named `master` watched by `sentinels`.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        db: i64,
        auth: Auth,
        sentinel_auth: Auth,
        tls: bool,
    },
    /// Seed nodes of a Cluster.
    Cluster {
        nodes: Vec<(String, u16)>,
        auth: Auth,
        tls: bool,
    },
}

/// Credentials (ACL user and password), decoded from the URL.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Single(url) => f.debug_tuple("Single").field(&redact(url)).finish(),
            Target::Sentinel {
                sentinels,
                master,
                db,
                auth,
                sentinel_auth,
                tls,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .field("db", db)
                .field("auth", auth)
                .field("sentinel_auth", sentinel_auth)
                .field("tls", tls)
                .finish(),
            Target::Cluster { nodes, auth, tls } => f
                .debug_struct("Cluster")
                .field("nodes", nodes)
                .field("auth", auth)
                .field("tls", tls)
                .finish(),
        }
    }
}

/// The URL with the password of its user part replaced by `***`, for logs and `Debug`; works on
/// the multi-host forms that a URL parser refuses.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at].split(':').next().unwrap_or("");
    let query_hidden = rest[at..]
        .split_once('?')
        .map(|(before, _)| format!("{before}?***"))
        .unwrap_or_else(|| rest[at..].to_owned());
    format!("{scheme}://{user}:***{query_hidden}")
}

impl Target {
    /// Reads `[state] url`. The error says what is wrong without repeating the URL (it may
    /// carry a password).
    pub fn parse(url: &str) -> Result<Target, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(
                "has no scheme (redis://, rediss://, redis+sentinel://, redis+cluster://)".into(),
            );
        };
        let (tls, kind) = match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" => {
                redis::Client::open(url)
                    .map_err(|_| "is not a Redis URL the client accepts".to_owned())?;
                return Ok(Target::Single(url.to_owned()));
            }
            "redis+sentinel" => (false, "sentinel"),
            "rediss+sentinel" => (true, "sentinel"),
            "redis+cluster" => (false, "cluster"),
            "rediss+cluster" => (true, "cluster"),
            _ => {
                return Err(format!(
                    "scheme {scheme}:// is not one of redis://, rediss://, redis+unix://, \
                     redis+sentinel://, rediss+sentinel://, redis+cluster://, rediss+cluster://"
                ))
            }
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let auth = parse_auth(userinfo)?;
        let nodes = parse_hosts(hosts)?;
        let mut sentinel_auth = Auth::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            match (kind, name) {
                ("sentinel", "sentinel_password") => sentinel_auth.password = Some(value),
                ("sentinel", "sentinel_username") => sentinel_auth.username = Some(value),
                _ => return Err(format!("has an unknown parameter {name:?}")),
            }
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if kind == "cluster" {
            if !(segments.is_empty() || segments == ["0"]) {
                return Err(
                    "of a cluster takes no path: a Redis Cluster has only database 0".into(),
                );
            }
            return Ok(Target::Cluster { nodes, auth, tls });
        }
        let (master, db) = match segments.as_slice() {
            [master] => (*master, 0),
            [master, db] => (
                *master,
                db.parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or("has a database number that is not a number")?,
            ),
            _ => {
                return Err(
                    "of a sentinel must name the master: redis+sentinel://host:port[,host:port]/master_name[/db]"
                        .into(),
                )
            }
        };
        Ok(Target::Sentinel {
            sentinels: nodes,
            master: decode(master)?,
            db,
            auth,
            sentinel_auth,
            tls,
        })
    }

    /// Whether the URL names Sentinel or Cluster (for `backend()` and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Single(_) => "redis",
            Target::Sentinel { .. } => "redis-sentinel",
            Target::Cluster { .. } => "redis-cluster",
        }
    }
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "has a percent-encoded part that is not UTF-8".to_owned())
}

fn parse_auth(userinfo: Option<&str>) -> Result<Auth, String> {
    let Some(userinfo) = userinfo else {
        return Ok(Auth::default());
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    Ok(Auth {
        username: Some(decode(user)?).filter(|u| !u.is_empty()),
        password: password.map(decode).transpose()?.filter(|p| !p.is_empty()),
    })
}

fn parse_hosts(hosts: &str) -> Result<Vec<(String, u16)>, String> {
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        let Some((name, port)) = host.rsplit_once(':') else {
            return Err(format!("node {host:?} has no port (host:port)"));
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("node {host:?} has no valid port"))?;
        if name.is_empty() || name.contains(['@', '/', ' ']) {
            return Err(format!("node {host:?} has no valid host name"));
        }
        nodes.push((name.to_owned(), port));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_urls_pass_through() {
        for url in [
            "redis://h:6379/0",
            "rediss://:pw@h:6380/1",
            "redis+unix:///tmp/r.sock",
        ] {
            assert_eq!(
                Target::parse(url),
                Ok(Target::Single(url.to_owned())),
                "{url}"
            );
        }
    }

    #[test]
    fn sentinel_urls_are_read() {
        let t = Target::parse(
            "redis+sentinel://app:p%40ss@s1:26379,s2:26380,[::1]:26381/mymaster/2?sentinel_password=sp",
        )
        .expect("valid");
        assert_eq!(
            t,
            Target::Sentinel {
                sentinels: vec![
                    ("s1".into(), 26379),
                    ("s2".into(), 26380),
                    ("::1".into(), 26381)
                ],
                master: "mymaster".into(),
                db: 2,
                auth: Auth {
                    username: Some("app".into()),
                    password: Some("p@ss".into())
                },
                sentinel_auth: Auth {
                    username: None,
                    password: Some("sp".into())
                },
                tls: false,
            }
        );
        let t = Target::parse("rediss+sentinel://s1:26379/m").expect("valid");
        assert!(
            matches!(
                t,
                Target::Sentinel {
                    tls: true,
                    db: 0,
                    ..
                }
            ),
            "{t:?}"
        );
        assert_eq!(t.kind(), "redis-sentinel");
    }

    #[test]
    fn cluster_urls_are_read() {
        let t = Target::parse("redis+cluster://:pw@n1:7000,n2:7001,n3:7002").expect("valid");
        let Target::Cluster { nodes, auth, tls } = &t else {
            panic!("{t:?}")
        };
        assert_eq!(nodes.len(), 3);
        assert_eq!(auth.password.as_deref(), Some("pw"));
        assert!(!tls);
        assert!(Target::parse("rediss+cluster://n1:7000/").is_ok());
        assert_eq!(t.kind(), "redis-cluster");
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_the_password() {
        let bad = [
            "redis+sentinel://:secret-pw@s1:26379",     // no master name
            "redis+sentinel://:secret-pw@s1:26379/m/x", // db not a number
            "redis+sentinel://:secret-pw@s1:26379/m/0/extra", // too many segments
            "redis+sentinel://:secret-pw@s1/m",         // no port
            "redis+sentinel://:secret-pw@s1:0/m",       // port 0
            "redis+sentinel://:secret-pw@s1:99999/m",   // port out of range
            "redis+sentinel://:secret-pw@s1:26379,/m",  // empty node
            "redis+sentinel://:secret-pw@s1:26379/m?bogus=1", // unknown parameter
            "redis+cluster://:secret-pw@n1:7000/3",     // cluster has only db 0
            "redis+cluster://:secret-pw@:7000",         // no host
            "redis+cluster://:secret-pw@n1:7000?sentinel_password=x", // not a cluster parameter
            "redis+clustr://:secret-pw@n1:7000",        // unknown scheme
            "sentinel-pw-secret-pw",                    // no scheme
        ];
        for url in bad {
            let err = Target::parse(url).expect_err(url);
            assert!(!err.contains("secret-pw"), "{url}: {err}");
        }
    }

    #[test]
    fn redaction_covers_multi_host_urls() {
        let shown =
            redact("redis+sentinel://app:top-secret@s1:1,s2:2/m?sentinel_password=also-secret");
        assert!(
            !shown.contains("top-secret") && !shown.contains("also-secret"),
            "{shown}"
        );
        assert!(shown.contains("s1:1,s2:2/m"), "{shown}");
        assert_eq!(redact("redis+cluster://n1:7000"), "redis+cluster://n1:7000");
        assert!(!redact("redis://:pw1@h:1/0").contains("pw1"));
    }

    #[test]
    fn debug_hides_passwords() {
        let t = Target::parse("redis+cluster://:hidden-pw@n1:7000").expect("valid");
        assert!(!format!("{t:?}").contains("hidden-pw"));
    }
}
