//! The command line documents itself, and docs/cli.md documents all of it: every command and
//! every flag of `--help` has a description, and a row of docs/cli.md's table names each
//! command with every one of its flags.

use clap::CommandFactory;

/// Flags every client command has, documented once above the table.
const COMMON: &[&str] = &[
    "server",
    "token",
    "ca-cert",
    "client-cert",
    "client-key",
    "help",
    "version",
];

/// Every leaf command: its words after `arca`, and the command itself.
fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    let subs: Vec<_> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .collect();
    if subs.is_empty() {
        out.push((path, cmd.clone()));
        return;
    }
    for s in subs {
        let mut p = path.clone();
        p.push(s.get_name().to_owned());
        leaves(s, p, out);
    }
}

fn all_leaves() -> Vec<(Vec<String>, clap::Command)> {
    let mut cmd = arca::cli::Cli::command();
    cmd.build();
    let mut out = Vec::new();
    leaves(&cmd, Vec::new(), &mut out);
    out
}

#[test]
fn every_command_and_option_in_help_has_a_description() {
    let mut missing = Vec::new();
    for (path, cmd) in all_leaves() {
        if cmd.get_about().is_none() {
            missing.push(format!("arca {}: no description", path.join(" ")));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("arca {}: {id}", path.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options without a description in --help:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn docs_cli_md_lists_every_command_with_every_flag() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md"))
        .expect("docs/cli.md");
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `arca ")).collect();
    let mut problems = Vec::new();
    for (path, cmd) in all_leaves() {
        let head = format!("| `arca {}", path.join(" "));
        let Some(row) = rows.iter().find(|r| {
            r.strip_prefix(&head)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('`'))
        }) else {
            problems.push(format!("no row for `arca {}`", path.join(" ")));
            continue;
        };
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if COMMON.contains(&long) {
                continue;
            }
            if !row.contains(&format!("--{long}")) {
                problems.push(format!("`arca {}`: --{long} undocumented", path.join(" ")));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/cli.md is behind the command line:\n  {}",
        problems.join("\n  ")
    );
}

/// Every file of the project that people or the build read.
fn project_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("README.md"), root.join("Cargo.toml")];
    let mut dirs: Vec<std::path::PathBuf> = [
        "docs", "src", "tests", "scripts", "bench", "benches", "examples", "store", "keys", ".ci",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    dirs.push(p);
                }
            } else if p
                .extension()
                .is_some_and(|x| ["rs", "md", "sh", "py", "toml"].contains(&x.to_str().unwrap()))
                || p.file_name().is_some_and(|n| n == "run")
            {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_project_cites_nothing_outside_itself() {
    // Spelled in pieces, so that this file does not find itself.
    let outside = [
        format!("../{}", "shared"),
        format!("{}.md", "DESIGN"),
        format!("{}.md", "STYLE"),
        format!("{} §", "DESIGN"),
    ];
    let mut found = Vec::new();
    for p in project_files() {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let issue = lower.match_indices("issue ").any(|(i, _)| {
                lower[i + 6..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            });
            if issue || outside.iter().any(|o| line.contains(o.as_str())) {
                found.push(format!("{}:{}: {line}", p.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cites outside the project:\n{}",
        found.join("\n")
    );
}

#[test]
fn security_md_numbers_its_guarantees_in_order() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md")).unwrap();
    let numbers: Vec<u32> = doc
        .lines()
        .filter_map(|l| l.split_once(". **"))
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    assert_eq!(numbers, (1..=9).collect::<Vec<_>>());
}

#[test]
fn the_configuration_example_in_operations_md_is_a_valid_config_of_the_defaults() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let start = doc.find("```toml\n").expect("a toml example") + 8;
    let example = &doc[start..start + doc[start..].find("\n```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("arca.toml"), example).unwrap();
    let cfg = arca::config::Config::load(dir.path())
        .unwrap_or_else(|e| panic!("docs/operations.md's example is not a valid arca.toml: {e}"));
    // It documents the defaults: the same as no file at all.
    let defaults = arca::config::Config::load(tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(
        format!("{cfg:?}"),
        format!("{defaults:?}"),
        "docs/operations.md's example differs from the defaults"
    );
}
