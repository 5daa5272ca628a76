//! Cost of the ModI patterns per message: signing an Agid-JWT-Signature with each algorithm,
//! and verifying a signed request (x5c chain check, signature, signed headers, Digest).
//!
//! Run: `cargo bench -p gateway --bench modi -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::modi::{
    digest_header, generate_dev_pki, sign, verify, KeySource, SignatureClaims,
    SignatureExpectations, SigningAlgorithm,
};

const NOW: i64 = 1_780_000_000;
const AUD: &str = "https://anagrafe.comune.example/api/v1";

fn claims() -> SignatureClaims {
    SignatureClaims {
        iss: "comune-fruitore".into(),
        sub: "comune-fruitore".into(),
        aud: AUD.into(),
        jti: "bench-jti".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300,
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("modi-bench-{}", std::process::id()));
    let pki = generate_dev_pki(&dir, "anagrafe.comune.example").expect("dev PKI in a temp dir");
    let trust = pki.trust_store().expect("dev CA loads");
    let body = br#"{"codiceFiscale":"RSSMRA80A01H501U","dataRiferimento":"2026-05-28"}"#;
    let digest = digest_header(body);
    let headers = [
        ("digest", digest.as_str()),
        ("content-type", "application/json"),
    ];

    let mut group = c.benchmark_group("modi");
    for alg in SigningAlgorithm::ALL {
        let material = pki.signing_material(alg).expect("dev material loads");
        group.bench_function(format!("sign_{}", alg.jose_name()), |b| {
            b.iter(|| sign(black_box(&material), &claims(), &headers).expect("signs"))
        });
        let jws = sign(&material, &claims(), &headers).expect("signs");
        let received = [
            ("content-type", "application/json"),
            ("digest", digest.as_str()),
            ("agid-jwt-signature", jws.as_str()),
        ];
        let expect = SignatureExpectations {
            audience: AUD.into(),
            leeway_secs: 5,
            now: NOW,
            max_lifetime_secs: Some(600),
        };
        group.bench_function(format!("verify_request_{}", alg.jose_name()), |b| {
            b.iter(|| {
                verify(
                    black_box(&jws),
                    &KeySource::X5c(&trust),
                    &expect,
                    &received,
                    body,
                )
                .expect("verifies")
            })
        });
    }
    group.bench_function("digest_header_70B", |b| {
        b.iter(|| digest_header(black_box(body)))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
