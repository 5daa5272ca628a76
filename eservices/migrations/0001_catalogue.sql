-- The tables the anagrafe and tributi e-services read. Portable DDL: the same file runs on
-- SQLite and PostgreSQL. Dates are ISO 8601 text (YYYY-MM-DD), amounts integer cents,
-- shares hundredths of a percent. See SCHEMA.md for the contract of each column.

CREATE TABLE metadati (
    chiave TEXT NOT NULL PRIMARY KEY,
    valore TEXT NOT NULL
);

CREATE TABLE persone (
    codice_fiscale TEXT NOT NULL PRIMARY KEY,
    cognome TEXT NOT NULL,
    nome TEXT NOT NULL,
    sesso TEXT NOT NULL,
    data_nascita TEXT NOT NULL,
    comune_nascita TEXT NOT NULL,
    codice_catastale_nascita TEXT NOT NULL,
    data_decesso TEXT,
    id_famiglia TEXT,
    relazione_intestatario TEXT,
    ordine_famiglia BIGINT
);

CREATE INDEX persone_id_famiglia ON persone (id_famiglia);

CREATE TABLE residenze (
    codice_fiscale TEXT NOT NULL PRIMARY KEY REFERENCES persone (codice_fiscale),
    dug TEXT NOT NULL,
    toponimo TEXT NOT NULL,
    civico TEXT NOT NULL,
    cap TEXT NOT NULL,
    codice_istat_comune TEXT NOT NULL,
    data_decorrenza TEXT NOT NULL
);

CREATE TABLE contribuenti (
    identificativo TEXT NOT NULL PRIMARY KEY,
    tipo TEXT NOT NULL
);

CREATE TABLE imu_immobili (
    identificativo TEXT NOT NULL REFERENCES contribuenti (identificativo),
    foglio TEXT NOT NULL,
    particella TEXT NOT NULL,
    subalterno TEXT NOT NULL,
    categoria TEXT NOT NULL,
    rendita_centesimi BIGINT NOT NULL,
    quota_centesimi BIGINT NOT NULL,
    anno_inizio BIGINT NOT NULL,
    anno_fine BIGINT,
    PRIMARY KEY (identificativo, foglio, particella, subalterno, anno_inizio)
);

CREATE TABLE imu_posizioni (
    identificativo TEXT NOT NULL REFERENCES contribuenti (identificativo),
    anno BIGINT NOT NULL,
    dovuto_centesimi BIGINT NOT NULL,
    versato_centesimi BIGINT NOT NULL,
    PRIMARY KEY (identificativo, anno)
);

CREATE TABLE tari_utenze (
    identificativo TEXT NOT NULL REFERENCES contribuenti (identificativo),
    progressivo BIGINT NOT NULL,
    dug TEXT NOT NULL,
    toponimo TEXT NOT NULL,
    civico TEXT NOT NULL,
    cap TEXT NOT NULL,
    codice_istat_comune TEXT NOT NULL,
    superficie_mq BIGINT NOT NULL,
    occupanti BIGINT NOT NULL,
    categoria TEXT NOT NULL,
    anno_inizio BIGINT NOT NULL,
    anno_fine BIGINT,
    PRIMARY KEY (identificativo, progressivo)
);

CREATE TABLE tari_posizioni (
    identificativo TEXT NOT NULL REFERENCES contribuenti (identificativo),
    anno BIGINT NOT NULL,
    importo_centesimi BIGINT NOT NULL,
    pagato_centesimi BIGINT NOT NULL,
    PRIMARY KEY (identificativo, anno)
);

CREATE TABLE tari_rate (
    identificativo TEXT NOT NULL REFERENCES contribuenti (identificativo),
    anno BIGINT NOT NULL,
    rata BIGINT NOT NULL,
    data_scadenza TEXT NOT NULL,
    importo_centesimi BIGINT NOT NULL,
    PRIMARY KEY (identificativo, anno, rata)
);

CREATE TABLE pagamenti (
    iuv TEXT NOT NULL PRIMARY KEY,
    identificativo TEXT NOT NULL REFERENCES contribuenti (identificativo),
    anno BIGINT NOT NULL,
    tributo TEXT NOT NULL,
    importo_centesimi BIGINT NOT NULL,
    data_pagamento TEXT NOT NULL
);

CREATE INDEX pagamenti_identificativo_anno ON pagamenti (identificativo, anno);
