//! One way to open a connection to the broker: TLS with the bus's own certificate as its
//! client identity, and SASL EXTERNAL, so the broker names the bus by its certificate's SAN
//! URI exactly as it names members. lapin's auto-recovery stays off (its default): a broken
//! connection is dropped and a new one opened by whoever used it.

use std::sync::Arc;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPUri, SASLMechanism};
use lapin::{Connection, ConnectionProperties};

use super::{AmqpError, AmqpOptions};

/// The rustls client configuration for the broker: the CA that signed its certificate, and
/// the bus's certificate and key (no ALPN: AMQP has none).
pub fn tls(opts: &AmqpOptions) -> Result<Arc<rustls::ClientConfig>, AmqpError> {
    let mut cfg = crate::tls::client_config(&opts.ca, &opts.cert, &opts.key)?;
    cfg.alpn_protocols.clear();
    Ok(Arc::new(cfg))
}

/// Parses `amqps://HOST:PORT/VHOST`; only TLS is offered, since the broker authenticates the
/// bus by its certificate.
pub fn parse_url(url: &str) -> Result<AMQPUri, AmqpError> {
    if !url.starts_with("amqps://") {
        return Err(AmqpError::Config(format!(
            "--amqp {url}: use amqps://HOST:PORT/VHOST (the broker knows the bus by its certificate)"
        )));
    }
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e: String| AmqpError::Config(format!("--amqp {url}: {e}")))?;
    uri.query.auth_mechanism = Some(SASLMechanism::External);
    Ok(uri)
}

/// Opens a connection named `name` (shown in the broker's connection list).
pub async fn open(
    uri: &AMQPUri,
    tls: &Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<Connection, AmqpError> {
    let connector = RustlsConnector::from(tls.clone());
    let runtime = lapin::runtime::default_runtime()?;
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let connect = Connection::connector(
        uri.clone(),
        runtime,
        async move |uri, runtime| {
            let addrs = runtime.to_socket_addrs((uri.authority.host.clone(), uri.authority.port));
            let tcp = AsyncTcpStream::connect(&runtime, addrs)
                .await
                .map_err(lapin::Error::from)?;
            tcp.into_rustls(&connector, &uri.authority.host)
                .await
                .map_err(lapin::Error::from)
        },
        props,
    );
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(c) => Ok(c?),
        Err(_) => Err(AmqpError::Broker(
            "no answer from the broker within 10 s".into(),
        )),
    }
}
