//! `simpul admin`: the operator's dead letters and message traces from a terminal, through the
//! same API the console uses, authenticated by the operator's certificate.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bus::client::{Answer, Client};
use bus::identity::MemberId;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args)]
pub struct AdminArgs {
    /// The bus to ask.
    #[arg(long, default_value = "https://127.0.0.1:8443", env = "SIMPUL_BUS")]
    bus: String,
    /// The operator's member id; its certificate and key are read from --certs.
    #[arg(long = "as", default_value = "GOV/diskominfo", env = "SIMPUL_OPERATOR")]
    operator: String,
    /// Directory with `ca.pem` and the members' certificates (the `simpul certs` layout).
    #[arg(long, default_value = "certs", env = "SIMPUL_CERTS")]
    certs: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Dead letters: list a recipient's, or put them back in its inbox.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Everything the bus knows of a message id: the message, each delivery, the reply and
    /// its audit records.
    Trace {
        id: String,
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List a recipient's dead letters, oldest first.
    List {
        recipient: String,
        /// Most to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back in the recipient's inbox with their attempts reset.
    Redrive {
        recipient: String,
        /// The one dead letter to redrive.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        /// Which sender's message, when two senders used the id.
        #[arg(long, requires = "id")]
        sender: Option<String>,
        /// Every dead letter of the recipient, in steps of 1,000.
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

pub fn run(a: AdminArgs) -> anyhow::Result<ExitCode> {
    let operator = MemberId::parse(&a.operator)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::for_member(&a.bus, &a.certs, &operator)
            .with_context(|| format!("the certificate of {operator} in {}", a.certs.display()))?;
        match a.command {
            AdminCommand::Dlq {
                command: DlqCommand::List { recipient, limit },
            } => list(&client, &MemberId::parse(&recipient)?, limit).await,
            AdminCommand::Dlq {
                command:
                    DlqCommand::Redrive {
                        recipient,
                        id,
                        sender,
                        all,
                        yes,
                    },
            } => {
                let recipient = MemberId::parse(&recipient)?;
                match id {
                    Some(id) => redrive_one(&client, &recipient, &id, sender, yes).await,
                    None if all => redrive_all(&client, &recipient, yes).await,
                    None => bail!("name --id or --all"),
                }
            }
            AdminCommand::Trace { id, json } => trace(&client, &id, json).await,
        }
    })
}

/// The answer's body when it is a success; otherwise the problem as an error.
fn ok(answer: Answer) -> anyhow::Result<Value> {
    if answer.status.is_success() {
        return Ok(answer.body);
    }
    let b = &answer.body;
    let mut why = format!(
        "{} {}",
        answer.status.as_u16(),
        b["detail"].as_str().or(b["title"].as_str()).unwrap_or("")
    );
    for e in b["errors"].as_array().into_iter().flatten() {
        why.push_str(&format!(
            "\n  {}: {}",
            e["pointer"].as_str().unwrap_or(""),
            e["detail"].as_str().unwrap_or("")
        ));
    }
    bail!(why)
}

async fn list(client: &Client, recipient: &MemberId, limit: usize) -> anyhow::Result<ExitCode> {
    let (mut after, mut shown) = (0, 0);
    loop {
        let want = (limit - shown).clamp(1, 1000);
        let page = ok(client.dead_letters(recipient, after, want).await?)?;
        if after == 0 {
            println!("{recipient}: {} dead letter(s)", page["total"]);
        }
        for d in page["items"].as_array().into_iter().flatten() {
            println!(
                "{}  {}  from {}  {}  attempts {}  {}: {}",
                d["accepted_at"].as_str().unwrap_or(""),
                d["id"].as_str().unwrap_or(""),
                d["sender"].as_str().unwrap_or(""),
                d["type"].as_str().unwrap_or(""),
                d["attempts"],
                d["why"].as_str().unwrap_or(""),
                d["reason"].as_str().unwrap_or("")
            );
            shown += 1;
        }
        match page["next"].as_i64() {
            Some(next) if shown < limit => after = next,
            _ => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Asks on the terminal unless `yes`; a closed stdin is a no.
fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

async fn redrive_one(
    client: &Client,
    recipient: &MemberId,
    id: &str,
    sender: Option<String>,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    if !confirm(&format!("redrive {id} to {recipient}?"), yes)? {
        println!("nothing redriven");
        return Ok(ExitCode::FAILURE);
    }
    let mut body = json!({ "id": id });
    if let Some(s) = sender {
        body["sender"] = json!(s);
    }
    let done = ok(client.redrive(recipient, &body).await?)?;
    println!(
        "redriven: {} ({} dead letter(s) remain)",
        done["redriven"].as_array().map_or(0, Vec::len),
        done["remaining"]
    );
    Ok(ExitCode::SUCCESS)
}

async fn redrive_all(client: &Client, recipient: &MemberId, yes: bool) -> anyhow::Result<ExitCode> {
    let total = ok(client.dead_letters(recipient, 0, 1).await?)?["total"]
        .as_u64()
        .unwrap_or(0);
    if total == 0 {
        println!("{recipient} has no dead letters");
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm(
        &format!("redrive all {total} dead letter(s) of {recipient}?"),
        yes,
    )? {
        println!("nothing redriven");
        return Ok(ExitCode::FAILURE);
    }
    let bar = indicatif::ProgressBar::new(total);
    let mut done = 0u64;
    // Each step is one commit of up to 1,000; a dead letter that arrives meanwhile is
    // redriven too, so the bar's length follows what remains.
    loop {
        let step = ok(client.redrive(recipient, &json!({ "all": true })).await?)?;
        let n = step["redriven"].as_array().map_or(0, Vec::len) as u64;
        let remaining = step["remaining"].as_u64().unwrap_or(0);
        done += n;
        bar.set_length(done + remaining);
        bar.set_position(done);
        if remaining == 0 || n == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    println!("redriven: {done} to {recipient}");
    Ok(ExitCode::SUCCESS)
}

async fn trace(client: &Client, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let id = uuid_arg(id)?;
    let t = ok(client.trace(id).await?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in t["messages"].as_array().into_iter().flatten() {
        println!(
            "{} {} from {} accepted {}: {}{}",
            m["type"].as_str().unwrap_or(""),
            id,
            m["source"].as_str().unwrap_or(""),
            m["accepted_at"].as_str().unwrap_or(""),
            m["status"].as_str().unwrap_or(""),
            if m["replied"] == json!(true) {
                ", replied"
            } else {
                ""
            }
        );
        if let Some(tp) = m["attributes"]["traceparent"].as_str() {
            println!("  traceparent {tp}");
        }
        for d in m["deliveries"].as_array().into_iter().flatten() {
            println!(
                "  to {}: {} after {} attempt(s) {}",
                d["recipient"].as_str().unwrap_or(""),
                d["state"].as_str().unwrap_or(""),
                d["attempts"],
                d["reason"].as_str().unwrap_or("")
            );
        }
    }
    println!("audit:");
    for e in t["audit"].as_array().into_iter().flatten() {
        println!(
            "  {}  {:<12} {}{}{}",
            e["at"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["actor"].as_str().unwrap_or(""),
            e["counterpart"]
                .as_str()
                .map(|c| format!(" -> {c}"))
                .unwrap_or_default(),
            e["detail"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn uuid_arg(id: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(id).with_context(|| format!("{id} is not a message id (UUID)"))
}
