//! `simpul simulate siak|sipanse|eabsen`: an agency system's simulator as its own process,
//! serving the native interface over HTTP as the real system would, so an adapter run with
//! `url = …` reaches it through the same client it uses in production.
//!
//! - SIAK: Dukcapil's JSON web service ([`crate::siak::webservice`]) and the clerk's desk;
//! - SIPANSE: its HTTP API ([`crate::sipanse::api`]) and the licensing officer's desk;
//! - e-absen: a fingerprint terminal ([`crate::eabsen::terminal`]) that pushes to the adapter's
//!   `/iclock/` endpoint, with its reader and export on its own address.
//!
//! Each prints `simulator on http://ADDR/` on stdout once it listens (so `--listen
//! 127.0.0.1:0` can be used) and stops on `stop`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::agency::AdapterError;
use crate::eabsen::simulator::EabsenSimulator;
use crate::eabsen::terminal;
use crate::siak::simulator::SiakSimulator;
use crate::siak::webservice;
use crate::sipanse::api;
use crate::sipanse::simulator::SipanseSimulator;

/// Which system to simulate, and its own settings.
#[derive(Debug, Clone)]
pub enum Simulated {
    /// SIAK, seeded with synthetic residents on first run; answers the account given.
    Siak {
        db: PathBuf,
        user_id: String,
        password: String,
    },
    /// SIPANSE; answers the account given.
    Sipanse {
        db: PathBuf,
        user_id: String,
        password: String,
    },
    /// A terminal with serial number `sn` pushing to the adapter at `push`.
    Eabsen {
        db: PathBuf,
        sn: String,
        push: String,
    },
}

/// Runs the simulator on `listen` until `stop`.
pub async fn run(
    what: Simulated,
    listen: SocketAddr,
    stop: watch::Receiver<bool>,
) -> Result<(), AdapterError> {
    let failed = |e: &dyn std::fmt::Display| AdapterError::Native(e.to_string());
    let mut pusher = None;
    let router = match what {
        Simulated::Siak {
            db,
            user_id,
            password,
        } => {
            let sim = SiakSimulator::open_seeded(&db).map_err(|e| failed(&e))?;
            webservice::router(Arc::new(sim), &user_id, &password)
        }
        Simulated::Sipanse {
            db,
            user_id,
            password,
        } => {
            let sim = SipanseSimulator::open(&db).map_err(|e| failed(&e))?;
            api::router(Arc::new(sim), &user_id, &password)
        }
        Simulated::Eabsen { db, sn, push } => {
            let dev = Arc::new(EabsenSimulator::open(&db, "1", &sn).map_err(|e| failed(&e))?);
            pusher = Some(tokio::spawn(terminal::push(
                dev.clone(),
                push,
                stop.clone(),
            )));
            terminal::router(dev)
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| failed(&format_args!("{listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| failed(&e))?;
    println!("simulator on http://{addr}/");
    super::until(listener, router, stop).await;
    if let Some(p) = pusher {
        let _ = p.await;
    }
    Ok(())
}
