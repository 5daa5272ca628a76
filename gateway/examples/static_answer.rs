//! The HTTP framework alone: actix-web answering a POST with a fixed body, for
//! `tests/load/ratio.sh`.
//!
//! Why: the ratio of the gateway to nginx mixes two costs, the HTTP stack's and the gateway's
//! own work (voucher, purpose, quota, cache, audit commit). This server has the stack (actix-web,
//! the same version, workers and allocator as the gateway) and none of the work, so the ratio
//! script can show in the same run how much of an answer's CPU is the framework's.
//!
//! Usage: `static_answer LISTEN BODY_FILE [WORKERS]`; it answers `POST /anagrafe/v1/residenza`
//! with the file's bytes as `application/json`.

use actix_web::{web, App, HttpResponse, HttpServer};
use std::io;

/// The gateway's allocator, so that the comparison is of the work and not of the allocators.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn usage(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{why}; usage: static_answer LISTEN BODY_FILE [WORKERS]"),
    )
}

#[actix_web::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .ok_or_else(|| usage("no address to listen on"))?;
    let file = args.next().ok_or_else(|| usage("no body file"))?;
    let workers = match args.next() {
        Some(w) => w
            .parse::<usize>()
            .ok()
            .filter(|w| *w > 0)
            .ok_or_else(|| usage("WORKERS is a positive number"))?,
        None => 2,
    };
    let body = web::Bytes::from(std::fs::read(&file)?);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/anagrafe/v1/residenza",
            // The request body is read, as the gateway reads it.
            web::post().to(move |_request: web::Bytes| {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(workers)
    .bind(listen)?
    .run()
    .await
}
