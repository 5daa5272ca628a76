//! Stand-ins for remote parties, shared by several suites: a token endpoint whose answers a
//! test scripts, a remote that accepts and never answers, a closed port, and a remote e-service
//! that counts what reaches it. All are real listeners on loopback.

use serde_json::json;

/// One scripted answer of a [`ScriptedTokenEndpoint`].
#[derive(Debug, Clone)]
pub enum Step {
    /// An error status, with `Retry-After` when given, and a PDND-like problem body.
    Fail {
        status: u16,
        retry_after: Option<String>,
    },
    /// A 200 with a made-up token (for tests that never present it to a provider).
    Token { expires_in: i64 },
    /// Relay the request to the upstream authority and its answer back.
    Forward,
}

struct Script {
    steps: std::sync::Mutex<std::collections::VecDeque<Step>>,
    default: std::sync::Mutex<Step>,
    requests: std::sync::atomic::AtomicU64,
    upstream: Option<String>,
    http: reqwest::Client,
}

/// A token endpoint whose answers a test scripts: it plays the queued steps in order, then its
/// default step forever. It counts every request.
pub struct ScriptedTokenEndpoint {
    pub url: String,
    script: std::sync::Arc<Script>,
    handle: actix_web::dev::ServerHandle,
}

async fn scripted_token(
    script: actix_web::web::Data<Script>,
    body: actix_web::web::Bytes,
) -> actix_web::HttpResponse {
    use actix_web::HttpResponse;
    script
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let step = {
        let mut steps = script.steps.lock().expect("script lock");
        steps
            .pop_front()
            .unwrap_or_else(|| script.default.lock().expect("script lock").clone())
    };
    match step {
        Step::Fail {
            status,
            retry_after,
        } => {
            let mut b = HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status).expect("scripted status"),
            );
            b.insert_header(("content-type", "application/problem+json"));
            if let Some(r) = retry_after {
                b.insert_header(("retry-after", r));
            }
            b.body(
                json!({"type":"about:blank","status":status,"title":"scripted","detail":"scripted","errors":[{"code":"015-0008","detail":"Unable to generate a token for the given request"}]})
                    .to_string(),
            )
        }
        Step::Token { expires_in } => HttpResponse::Ok().json(json!({
            "access_token": format!("scripted.{}.token", uuid::Uuid::new_v4().simple()),
            "token_type": "Bearer",
            "expires_in": expires_in,
        })),
        Step::Forward => {
            let upstream = script
                .upstream
                .as_deref()
                .expect("Forward needs an upstream");
            match script
                .http
                .post(upstream)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_vec())
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status).expect("status"),
                    )
                    .insert_header(("content-type", "application/json"))
                    .body(text)
                }
                Err(_) => HttpResponse::BadGateway().finish(),
            }
        }
    }
}

impl ScriptedTokenEndpoint {
    /// Starts one on a free port; `upstream` is the real token endpoint `Forward` relays to.
    pub async fn start(
        steps: Vec<Step>,
        default: Step,
        upstream: Option<String>,
    ) -> ScriptedTokenEndpoint {
        let script = std::sync::Arc::new(Script {
            steps: std::sync::Mutex::new(steps.into()),
            default: std::sync::Mutex::new(default),
            requests: std::sync::atomic::AtomicU64::new(0),
            upstream,
            http: reqwest::Client::new(),
        });
        let data = actix_web::web::Data::from(script.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .route("/token.oauth2", actix_web::web::post().to(scripted_token))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind scripted endpoint");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        ScriptedTokenEndpoint {
            url: format!("http://{addr}/token.oauth2"),
            script,
            handle,
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.script
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the step played once the queue is empty.
    pub fn set_default(&self, step: Step) {
        *self.script.default.lock().expect("script lock") = step;
    }

    /// Takes the endpoint down (connections refused from now on).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A TCP port that accepts connections and never answers (a hung remote). Dropped with the
/// runtime.
pub async fn silent_remote() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A loopback address nobody listens on.
pub fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A remote e-service stand-in that counts what reaches it: every request is answered 200
/// with `body_len` bytes, declared by `Content-Length` or sent chunked (no length known in
/// advance). Dropped with the runtime.
pub struct CountingRemote {
    pub addr: std::net::SocketAddr,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CountingRemote {
    pub async fn start(body_len: usize, chunked: bool) -> CountingRemote {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = paths.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock().expect("paths lock").push(path);
                    let body = vec![b'a'; body_len];
                    let mut out =
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                            .to_vec();
                    if chunked {
                        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                        let _ = socket.write_all(&out).await;
                        for part in body.chunks(16 * 1024) {
                            let mut piece = format!("{:x}\r\n", part.len()).into_bytes();
                            piece.extend_from_slice(part);
                            piece.extend_from_slice(b"\r\n");
                            if socket.write_all(&piece).await.is_err() {
                                return;
                            }
                        }
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                    } else {
                        out.extend_from_slice(
                            format!("Content-Length: {body_len}\r\n\r\n").as_bytes(),
                        );
                        out.extend_from_slice(&body);
                        let _ = socket.write_all(&out).await;
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        CountingRemote { addr, paths }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.paths.lock().expect("paths lock").len()
    }

    /// The request targets received, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("paths lock").clone()
    }
}
