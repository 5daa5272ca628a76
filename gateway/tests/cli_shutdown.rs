//! Graceful shutdown of the real binary: requests in flight when SIGTERM arrives are answered
//! 2xx and have their audit records, `/readyz` turns 503 while they finish, new connections are
//! refused, and the process exits 0. Also the bound: a request that would hold the process
//! longer than `server.shutdown_timeout_secs` does not.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");

mod common;
use common::dev_process::DevProcess;

fn start_dev(dir: &Path, env: &[(&str, &str)]) -> DevProcess {
    DevProcess::start(dir, &[], env)
}

fn voucher(dir: &Path, authority: &str) -> String {
    let out = Command::new(BIN)
        .args(["voucher", "--data-dir"])
        .arg(dir)
        .env(
            "PDNDGW_PDND__TOKEN_ENDPOINT",
            format!("http://{authority}/token.oauth2"),
        )
        .output()
        .expect("voucher runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for the child's exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A POST whose headers and all but the last byte of the body are sent: the gateway has
/// the request in flight, waiting for the rest.
async fn half_sent_request(addr: &str, token: &str, cf: &str, request_id: &str) -> (TcpStream, u8) {
    let body = format!("{{\"codiceFiscale\":\"{cf}\"}}");
    let head = format!(
        "POST /anagrafe/v1/residenza HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    let (start, last) = body.as_bytes().split_at(body.len() - 1);
    stream.write_all(start).await.expect("body start");
    stream.flush().await.expect("flush");
    (stream, last[0])
}

/// One GET over a new connection, the whole answer as text.
async fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_with_their_audit_records_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("pdndgw-shutdown-{}", uuid::Uuid::new_v4()));
    // One second between the signal and the listeners' closing, for the readiness check.
    let mut dev = start_dev(&dir, &[("PDNDGW_SERVER__SHUTDOWN_DELAY_SECS", "1")]);
    let token = voucher(&dir, &dev.authority);
    let readyz = get(&dev.internal, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");

    let mut in_flight = Vec::new();
    for i in 0..8 {
        let id = format!("shutdown-{i}");
        let (stream, last) = half_sent_request(&dev.public, &token, &dev.sample_cf, &id).await;
        in_flight.push((id, stream, last));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&dev.child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Not ready at once, while the listeners still accept (the delay); alive all along.
    let readyz = get(&dev.internal, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    assert!(readyz.contains("\"shutting_down\""), "{readyz}");
    let livez = get(&dev.internal, "/livez").await;
    assert!(livez.starts_with("HTTP/1.1 200"), "{livez}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // New connections are refused, on both listeners.
    for addr in [&dev.public, &dev.internal] {
        let refused = TcpStream::connect(addr.as_str()).await;
        assert!(
            refused.is_err(),
            "{addr} still accepts connections after SIGTERM"
        );
    }
    assert!(
        dev.child.try_wait().expect("try_wait").is_none(),
        "exited with requests in flight"
    );

    // The requests in flight complete.
    for (id, stream, last) in &mut in_flight {
        stream.write_all(&[*last]).await.expect("last byte");
        let answer = read_all(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{id}: {answer}");
        assert!(answer.contains("\"residente\""), "{id}: {answer}");
    }
    let status = wait_exit(&mut dev.child, Duration::from_secs(30)).expect("exits");
    let log = std::fs::read_to_string(&dev.log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("stopped: every request in flight finished"),
        "{log}"
    );

    // Every answer served during the shutdown has its audit record.
    let store = gateway::provider::audit::AuditStore::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("audit.db").display()
    ))
    .await
    .expect("audit store");
    for (id, _, _) in &in_flight {
        let q = gateway::provider::audit::AuditQuery {
            request_id: Some(id.clone()),
            ..Default::default()
        };
        let records = store.query(&q).await.expect("query");
        assert!(
            records.iter().any(|r| r.status == 200),
            "{id} has no audit record of its 200"
        );
    }
    store.close().await;
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_request_that_never_ends_holds_the_shutdown_no_longer_than_the_bound() {
    let dir = std::env::temp_dir().join(format!("pdndgw-shutdown-{}", uuid::Uuid::new_v4()));
    // Bodies may take a minute to arrive, so only the shutdown bound can end this request.
    let mut dev = start_dev(
        &dir,
        &[
            ("PDNDGW_SERVER__SHUTDOWN_TIMEOUT_SECS", "2"),
            ("PDNDGW_SERVER__BODY_READ_TIMEOUT_MS", "60000"),
        ],
    );
    let token = voucher(&dir, &dev.authority);
    let (_stuck, _) = half_sent_request(&dev.public, &token, &dev.sample_cf, "stuck").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    sigterm(&dev.child);
    // Held at least a moment (it waits for the request), at most the bound plus slack.
    let status = wait_exit(&mut dev.child, Duration::from_secs(20)).expect("exits within 20 s");
    let took = started.elapsed();
    let log = std::fs::read_to_string(&dev.log).unwrap_or_default();
    assert!(
        took >= Duration::from_secs(1),
        "did not wait: {took:?}\n{log}"
    );
    // Cut requests are not a clean stop: status 1, and the log says why.
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("requests in flight were cut"), "{log}");
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}
