//! Seeds a store and reports how long it took: `cargo run -p eservices --example seed -- URL N`.

use eservices::store::{seed, SqlStore};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "sqlite://seed-sample.db?mode=rwc".to_owned());
    let residents: u32 = args.next().map_or(Ok(1_000), |n| n.parse())?;
    let store = SqlStore::connect(&url).await?;
    store.migrate().await?;
    let start = Instant::now();
    let summary = seed(&store, residents).await?;
    println!(
        "seeded {} residents on {} in {:.2?}",
        summary.residents,
        store.engine().name(),
        start.elapsed()
    );
    for s in summary.samples {
        println!(
            "  {} {} {}: {}",
            s.codice_fiscale, s.cognome, s.nome, s.description
        );
    }
    Ok(())
}
