//! `simnet run SCENARIO [--seed N] [--json] [--events FILE] [--check-determinism]`

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use p2p_simnet::{Options, Scenario};

/// Plays p2p scenarios: N peers in one process, on a virtual clock.
#[derive(FromArgs, Debug)]
#[argh(
    example = "{command_name} run scenarios/three_peers.ron\n{command_name} run scenarios/slow_link.ron --seed 7 --json",
    note = "Exit status: 0 when every expectation held, 1 when any did not, 2 for a bad scenario or usage. \
            The format of scenario files is in scenarios/README.md."
)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Run(RunArgs),
}

/// Play a scenario and report.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// the scenario file (RON)
    #[argh(positional)]
    scenario: PathBuf,
    /// run with this seed instead of the scenario's
    #[argh(option)]
    seed: Option<u64>,
    /// print the report as JSON
    #[argh(switch)]
    json: bool,
    /// write the event log to FILE
    #[argh(option, arg_name = "FILE")]
    events: Option<PathBuf>,
    /// run twice and check that the event logs are identical
    #[argh(switch)]
    check_determinism: bool,
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    // The engine's own logs, for digging into a run: `P2P_LOG=debug`.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("P2P_LOG") {
        tracing_subscriber::fmt().with_writer(std::io::stderr).without_time().with_env_filter(filter).init();
    }
    let Command::Run(args) = cli.command;
    let scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = Options { seed: args.seed };
    let started = std::time::Instant::now();
    let run = p2p_simnet::run(&scenario, options);
    let wall = started.elapsed();
    let mut ok = run.report.passed();
    if args.json {
        match serde_json::to_string_pretty(&run.report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        print!("{}", run.report.human());
    }
    eprintln!("wall time {:.2}s for {} of virtual time", wall.as_secs_f64(), run.report.virtual_time);
    if let Some(path) = &args.events
        && let Err(e) = std::fs::write(path, run.events.join("\n") + "\n")
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        ok = false;
    }
    if args.check_determinism {
        let again = p2p_simnet::run(&scenario, options);
        if again.report.events_hash == run.report.events_hash {
            eprintln!("deterministic: both runs logged the same events (blake3 {})", run.report.events_hash);
        } else {
            let first = run.events.iter().zip(&again.events).position(|(a, b)| a != b);
            eprintln!(
                "NOT deterministic: the event logs differ (blake3 {} and {}), first at line {}",
                run.report.events_hash,
                again.report.events_hash,
                first.map_or("(one log is a prefix of the other)".to_string(), |i| (i + 1).to_string())
            );
            ok = false;
        }
    }
    if !ok {
        let seed = run.report.seed;
        eprintln!("replay: simnet run {} --seed {seed}", args.scenario.display());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
