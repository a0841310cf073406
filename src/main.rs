//! The `imgorigin` command: parses the CLI, maps outcomes to exit codes. Nothing else.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imgorigin",
    version,
    about = "Image origin server: resize and transcode on the fly, behind CloudFront or any CDN"
)]
struct Cli {
    /// Configuration file (TOML). `IMGORIGIN__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Validate the configuration and print a summary; exit 2 when invalid.
    CheckConfig,
    /// Print a CloudFront-signed URL (not available in this release).
    SignUrl {
        url: String,
        #[arg(long)]
        expires_in: u64,
        #[arg(long)]
        policy_ip: Option<String>,
        #[arg(long)]
        resource: Option<String>,
    },
    /// Mint a local test token (not available in this release).
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        groups: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An explicitly named config must exist; the default may be absent (all defaults).
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let config = match imgorigin::config::Config::load(&cli.config, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration OK ({})", cli.config.display());
            println!("  listen          {}", config.server.listen);
            println!("  metrics_listen  {}", config.server.metrics_listen);
            println!("  storage         {:?}", config.storage);
            println!("  metadata        {}", config.metadata_url);
            println!(
                "  workers         {} (+{} queued)",
                config.limits.transform_concurrency, config.limits.transform_queue
            );
            ExitCode::SUCCESS
        }
        Command::SignUrl { .. } | Command::Token { .. } => {
            eprintln!(
                "this command needs CloudFront / local-auth support, which is not in this release yet"
            );
            ExitCode::from(2)
        }
        Command::Serve => {
            imgorigin::telemetry::init_logging(&config.log);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(imgorigin::server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
