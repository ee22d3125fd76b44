//! Validation before persisting: what would fail when a pipeline starts is refused at CREATE
//! time with a SQLSTATE, and nothing of the refused statement is stored (a restart shows it).

use crate::common::{refused, rows, Weir};
use tokio_postgres::Client;

async fn catalog(client: &Client) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    (
        rows(
            client,
            "SELECT name FROM weir_catalog.sources ORDER BY name",
        )
        .await,
        rows(client, "SELECT name FROM weir_catalog.views ORDER BY name").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_definitions_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    crate::common::write_lines(&input, &[r#"{"user":"a","ts":1000}"#.to_string()]);
    let mut weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    client
        .simple_query(&format!(
            "CREATE SOURCE logins (user TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts) \
             WITH (connector = 'file', path = '{}')",
            input.display()
        ))
        .await
        .unwrap();

    // 86,400,000 windows per row: refused, where 3 rows used to take the server past 9 GB.
    let (code, message) = refused(
        &client,
        "CREATE MATERIALIZED VIEW hop AS SELECT window_start, count(*) AS n \
         FROM HOP(logins, ts, INTERVAL '1 millisecond', INTERVAL '1 day') \
         GROUP BY window_start, window_end",
    )
    .await;
    assert_eq!(code, "54000", "{message}");
    assert!(message.contains("86400000 windows"), "{message}");
    // At the bound it is accepted.
    client
        .simple_query(
            "CREATE MATERIALIZED VIEW hop_ok AS SELECT window_start, count(*) AS n \
             FROM HOP(logins, ts, INTERVAL '1 second', INTERVAL '1000 seconds') \
             GROUP BY window_start, window_end; DROP MATERIALIZED VIEW hop_ok",
        )
        .await
        .unwrap();

    // librdkafka refuses the property: at CREATE SOURCE, not when a view starts the reader.
    let (code, message) = refused(
        &client,
        "CREATE SOURCE bad_kafka (user TEXT) WITH (connector = 'kafka', \
         brokers = '127.0.0.1:1', topic = 't', \"properties.no.such.property\" = '1')",
    )
    .await;
    assert_eq!(code, "22023", "{message}");
    assert!(message.contains("no.such.property"), "{message}");
    let (code, message) = refused(
        &client,
        "CREATE SOURCE bad_value (user TEXT) WITH (connector = 'kafka', \
         brokers = '127.0.0.1:1', topic = 't', \"properties.fetch.min.bytes\" = 'many')",
    )
    .await;
    assert_eq!(code, "22023", "{message}");
    let (code, _) = refused(
        &client,
        "CREATE SOURCE no_brokers (user TEXT) WITH (connector = 'kafka', brokers = ' ', topic = 't')",
    )
    .await;
    assert_eq!(code, "22023");
    // A valid property passes (the broker is not contacted at CREATE).
    client
        .simple_query(
            "CREATE SOURCE good_kafka (user TEXT) WITH (connector = 'kafka', \
             brokers = '127.0.0.1:1', topic = 't', \"properties.fetch.min.bytes\" = '1'); \
             DROP SOURCE good_kafka",
        )
        .await
        .unwrap();

    // A followed path may appear later, but not in a directory that does not exist.
    let (code, message) = refused(
        &client,
        &format!(
            "CREATE SOURCE lost (user TEXT) WITH (connector = 'file', mode = 'follow', path = '{}')",
            dir.path().join("no-such-dir/events.jsonl").display()
        ),
    )
    .await;
    assert_eq!(code, "58030", "{message}");
    // An option value of the wrong type.
    let (code, _) = refused(
        &client,
        "CREATE SOURCE gen (auction BIGINT) WITH (connector = 'generator', kind = 'nexmark_bids', rate = 'fast')",
    )
    .await;
    assert_eq!(code, "22023");

    // The source's file is gone: a view on it could not start, so it is not created.
    std::fs::remove_file(&input).unwrap();
    let (code, message) = refused(
        &client,
        "CREATE MATERIALIZED VIEW per_user AS SELECT user, count(*) AS n FROM logins GROUP BY user",
    )
    .await;
    assert_eq!(code, "58030", "{message}");

    let only_logins = (vec![vec!["logins".to_string()]], Vec::<Vec<String>>::new());
    assert_eq!(catalog(&client).await, only_logins);
    // What is stored is what a restart finds (the file is back so the source can open).
    crate::common::write_lines(&input, &[r#"{"user":"a","ts":1000}"#.to_string()]);
    drop(client);
    weir.stop();
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    assert_eq!(catalog(&client).await, only_logins);
}

/// The security settings real clusters use build a client at CREATE SOURCE: TLS, and SASL
/// PLAIN and SCRAM over TLS. Kerberos (GSSAPI) is not built in, and says so at CREATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tls_and_sasl_settings_are_accepted_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(&dir.path().join("data"), &[]);
    let client = weir.client().await;
    let source = |name: &str, properties: &str| {
        format!(
            "CREATE SOURCE {name} (user TEXT) WITH (connector = 'kafka', \
             brokers = '127.0.0.1:1', topic = 't', {properties})"
        )
    };
    let secure = [
        ("tls", "\"properties.security.protocol\" = 'SSL'"),
        (
            "sasl_plain",
            "\"properties.security.protocol\" = 'SASL_SSL', \"properties.sasl.mechanism\" = 'PLAIN', \
             \"properties.sasl.username\" = 'weir', \"properties.sasl.password\" = 'secret'",
        ),
        (
            "scram256",
            "\"properties.security.protocol\" = 'SASL_SSL', \"properties.sasl.mechanism\" = 'SCRAM-SHA-256', \
             \"properties.sasl.username\" = 'weir', \"properties.sasl.password\" = 'secret'",
        ),
        (
            "scram512",
            "\"properties.security.protocol\" = 'SASL_SSL', \"properties.sasl.mechanism\" = 'SCRAM-SHA-512', \
             \"properties.sasl.username\" = 'weir', \"properties.sasl.password\" = 'secret'",
        ),
    ];
    for (name, properties) in secure {
        client
            .simple_query(&source(name, properties))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let (code, message) = refused(
        &client,
        &source(
            "kerberos",
            "\"properties.security.protocol\" = 'SASL_SSL', \"properties.sasl.mechanism\" = 'GSSAPI'",
        ),
    )
    .await;
    assert_eq!(code, "22023", "{message}");
    let (sources, _) = catalog(&client).await;
    let names: Vec<&str> = sources.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["sasl_plain", "scram256", "scram512", "tls"]);
}
