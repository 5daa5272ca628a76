//! What `pdnd-gateway dev` prints once everything is up: where each listener is, the sample
//! client and fruizione, and commands to try from another terminal, with this run's real
//! addresses and paths filled in.

use super::DevEnvironment;
use std::path::Path;

/// Prints the banner to standard output.
pub fn print(env: &DevEnvironment, data_dir: &Path) {
    let data_arg = if data_dir == Path::new(".pdnd-gateway") {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    };
    let public = env.running.public;
    let authority = env
        .running
        .authority
        .map(|a| a.to_string())
        .unwrap_or_default();
    let sample = env
        .samples
        .first()
        .map(|s| s.codice_fiscale.clone())
        .unwrap_or_else(|| "<a codice fiscale>".to_owned());
    let seeded = if env.residents > 0 {
        format!(" (seeded now with {} residents)", env.residents)
    } else {
        String::new()
    };
    println!(
        r#"
pdnd-gateway dev is running. Data directory: {data}{seeded}

  e-services (public)    http://{public}    /anagrafe/v1, /tributi/v1, /status
  internal listener      {internal_scheme}://{internal}    /status, /livez, /readyz, /fruizioni/{{name}}/... (API key: {key_file})
  fruizioni              {fruizioni}
  API documentation      http://{public}{docs}    (OpenAPI: /anagrafe/v1/openapi.json, /tributi/v1/openapi.json)
  local PDND authority   http://{authority}    /token.oauth2, /.well-known/jwks.json, /keys/{{kid}}
  sample client          {client_id}
  ModI                   responses signed ({alg}, x5c); dev CA {ca}

Try it from this directory, in another terminal:

  VOUCHER=$(cargo run -q --bin pdnd-gateway -- voucher{data_arg})
  curl -s -X POST http://{public}/anagrafe/v1/residenza \
    -H "Authorization: Bearer $VOUCHER" -H 'Content-Type: application/json' \
    -d '{{"codiceFiscale":"{sample}"}}'

  # the comune as fruitore: internal caller -> proxy -> voucher -> e-service -> answer
  curl -s -X POST {internal_scheme}://{internal}/fruizioni/{sample_fruizione}/residenza \
    -H "X-API-Key: $(cat {key_file})" -H 'Content-Type: application/json' \
    -d '{{"codiceFiscale":"{sample}"}}'

  cargo run -q --bin pdnd-gateway -- voucher{data_arg} --decode     # what the voucher says
  cargo run -q --bin pdnd-gateway -- voucher{data_arg} --eservice tributi   # a voucher for /tributi/v1

  # keep a signed answer and check it as the receiving administration would:
  curl -si -X POST http://{public}/anagrafe/v1/residenza -H "Authorization: Bearer $VOUCHER" \
    -H 'Content-Type: application/json' -d '{{"codiceFiscale":"{sample}"}}' > answer.http
  cargo run -q --bin pdnd-gateway -- verify-response --ca {ca} --audience {client_id} --response answer.http
"#,
        data = data_dir.display(),
        internal = env.running.internal,
        internal_scheme = if env.config.server.internal_tls.is_some() {
            "https"
        } else {
            "http"
        },
        docs = crate::openapi::DOCS_PATH,
        client_id = env.data.client.client_id,
        key_file = env.data.internal_api_key_path().display(),
        sample_fruizione = super::SAMPLE_FRUIZIONE,
        fruizioni = env
            .config
            .fruizioni
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        alg = crate::modi::SigningAlgorithm::from(env.config.modi.algorithm).jose_name(),
        ca = env
            .config
            .modi
            .trust_store_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    if !env.samples.is_empty() {
        println!("Sample subjects:");
        for s in env.samples.iter().take(5) {
            println!(
                "  {}  {} {}  {}",
                s.codice_fiscale, s.cognome, s.nome, s.description
            );
        }
    }
    println!("\nStop with Ctrl-C.");
}
