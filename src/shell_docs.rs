//! `portcullis completions SHELL` and `portcullis man DIR`: shell completions and man pages,
//! generated from the command line's own definition so they never drift from it.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: `bash` (source it, or put it in `/etc/bash_completion.d/portcullis`), `zsh`
    /// (as `_portcullis` in a directory of `$fpath`), `fish` (in
    /// `~/.config/fish/completions/portcullis.fish`), `elvish` or `powershell`.
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing): `portcullis.1` and one page
    /// per subcommand (`portcullis-admin-users-list.1`, …). Read one with `man DIR/portcullis.1`.
    dir: PathBuf,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(mut command: clap::Command, args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "portcullis", &mut script);
    crate::stdout::print(String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a man page per command into `args.dir`; prints how many.
pub fn man(command: clap::Command, args: ManArgs) -> anyhow::Result<ExitCode> {
    let dir: &Path = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let pages = pages(&command);
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write the man pages into `{}`", dir.display()))?;
    crate::stdout::done(format_args!(
        "wrote {pages} man pages to `{}`",
        dir.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// How many pages `clap_mangen::generate_to` writes: one per command that is not hidden.
fn pages(command: &clap::Command) -> usize {
    1 + command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .map(pages)
        .sum::<usize>()
}
