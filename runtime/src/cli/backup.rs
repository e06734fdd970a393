//! `journeyd backup --to FILE` (from a running server), `journeyd backup
//! verify FILE` and `journeyd restore FILE --data DIR` (offline).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::client::Client;
use journey_runtime::store::{BackupReader, BackupSummary, SledStore};

/// `journeyd backup ...`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Where to write the backup (written as FILE.part, checked, then
    /// renamed).
    #[arg(long, required = true)]
    pub to: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
}

/// `journeyd backup verify`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup file: its layout, its checksum and its record
    /// counts; print what it holds.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
}

/// `journeyd restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The new data directory (must not exist or be empty); then run
    /// `journeyd serve --data DIR`.
    #[arg(long)]
    pub data: PathBuf,
}

/// Run `journeyd backup`.
pub async fn backup(client: &Client, args: BackupArgs) -> anyhow::Result<()> {
    match (args.command, args.to) {
        (Some(BackupCommand::Verify { file }), _) => verify(&file),
        (None, Some(to)) => download(client, &to).await,
        (None, None) => anyhow::bail!("give --to FILE, or `journeyd backup verify FILE`"),
    }
}

async fn download(client: &Client, to: &Path) -> anyhow::Result<()> {
    let part = to.with_extension("part");
    let mut response = client
        .http()
        .get(client.url(&["v1", "backup"])?)
        .send()
        .await
        .context(
            "cannot reach journeyd; is it running? Give its address with --server or JOURNEYD_URL",
        )?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("journeyd refused the backup ({status}): {body}");
    }
    let pause_ms = response
        .headers()
        .get(journey_runtime::api::BACKUP_PAUSE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    let total = response.content_length();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?,
    );
    let mut written: u64 = 0;
    let mut reported = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the backup stream broke off")?
    {
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", part.display()))?;
        written += chunk.len() as u64;
        if written - reported >= 64 * 1024 * 1024 {
            reported = written;
            match total {
                Some(total) => eprintln!("  … {} of {} MiB", written >> 20, total >> 20),
                None => eprintln!("  … {} MiB", written >> 20),
            }
        }
    }
    file.into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .with_context(|| format!("writing {}", part.display()))?;
    let summary = read_through(&part).with_context(|| {
        format!(
            "the backup written to {} does not check out",
            part.display()
        )
    })?;
    std::fs::rename(&part, to).with_context(|| format!("renaming to {}", to.display()))?;
    println!(
        "backup written to {} ({} records, {:.1} MiB; writes waited {pause_ms} ms while it was taken)",
        to.display(),
        summary.records,
        written as f64 / 1048576.0
    );
    print_kinds(&summary);
    Ok(())
}

/// Read a backup through, checking it; returns its summary.
fn read_through(file: &Path) -> anyhow::Result<BackupSummary> {
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut reader = BackupReader::open(std::io::BufReader::new(opened))?;
    while reader.next_record()?.is_some() {}
    Ok(reader.finish()?)
}

fn verify(file: &Path) -> anyhow::Result<()> {
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let reader = BackupReader::open(std::io::BufReader::new(opened))
        .with_context(|| format!("{}", file.display()))?;
    let header = reader.header.clone();
    let summary = read_through(file).with_context(|| format!("{}", file.display()))?;
    let taken = jiff::Timestamp::from_millisecond(header.created_at_ms as i64)
        .map_or_else(|_| "?".to_owned(), |at| at.to_string());
    println!(
        "{}: a good backup (format {}, {} store, taken {taken} by journeyd {}); checksum matches",
        file.display(),
        header.format,
        header.store,
        header.journeyd
    );
    println!(
        "  {} records, {:.1} MiB",
        summary.records,
        summary.bytes as f64 / 1048576.0
    );
    print_kinds(&summary);
    Ok(())
}

fn print_kinds(summary: &BackupSummary) {
    let count = |kind: &str| summary.kinds.get(kind).copied().unwrap_or(0);
    println!(
        "  {} instances ({} running, {} timers, {} event waits), {} events, {} customers, {} outbox messages, {} plugin versions, {} journey versions",
        count("instance"),
        count("running"),
        count("timer"),
        count("event_wait"),
        count("event"),
        count("customer"),
        count("outbox_message"),
        count("plugin_version"),
        count("journey_version")
    );
}

/// Run `journeyd restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let (header, summary) = SledStore::restore(file, &args.data).with_context(|| {
        format!(
            "restoring {} into {}",
            args.file.display(),
            args.data.display()
        )
    })?;
    println!(
        "restored {} records from {} (taken by journeyd {}) into {}",
        summary.records,
        args.file.display(),
        header.journeyd,
        args.data.display()
    );
    print_kinds(&summary);
    println!(
        "start it with: journeyd serve --data {} (it resumes every running and waiting instance)",
        args.data.display()
    );
    Ok(())
}
