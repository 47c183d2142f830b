//! `ikehub man --out DIR`: the manual pages, generated from the same sources as `--help` and the
//! reference in docs/: `ikehub(8)` and one `ikehub-COMMAND(8)` per command from the clap command
//! (clap_mangen), and `ikehub.toml(5)` from docs/profiles.md (compiled in), converted by the
//! small Markdown-to-roff writer below. Packaging installs what this writes.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;

/// docs/profiles.md as it was when this binary was built.
const PROFILES_MD: &str = include_str!("../docs/profiles.md");

/// Writes every page into `out` (created if needed) and returns their paths.
pub fn write(out: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    command_pages(&cmd, out, &mut written)?;
    let toml = out.join("ikehub.toml.5");
    std::fs::write(&toml, profiles_page(PROFILES_MD))?;
    written.push(toml);
    Ok(written)
}

/// One section-8 page for `cmd` and, recursively, for each command it shows in `--help`.
fn command_pages(cmd: &clap::Command, out: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, out, written)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("ikehub manual");
    written.push(man.generate_to(out)?);
    Ok(())
}

/// `ikehub.toml(5)` from the Markdown of docs/profiles.md: headings become sections, key tables
/// become tagged paragraphs (key, then type and default, then meaning), code blocks stay as
/// written.
pub fn profiles_page(md: &str) -> String {
    let mut r = String::from(
        ".TH IKEHUB.TOML 5 \"\" \"ikehub\" \"ikehub manual\"\n\
         .SH NAME\nikehub.toml \\- profile files of the ikehub IPsec concentrator\n",
    );
    let mut in_code = false;
    for line in md.lines() {
        if line.starts_with("```") {
            r.push_str(if in_code {
                ".fi\n.RE\n"
            } else {
                ".RS 4\n.nf\n"
            });
            in_code = !in_code;
        } else if in_code {
            r.push_str(&escape_line(line));
            r.push('\n');
        } else if line.starts_with("# ") {
            // The page title is the .TH line.
        } else if let Some(h) = line.strip_prefix("## ") {
            // Table names are case-sensitive words: only prose headings are upper-cased.
            let h = if h.starts_with('[') {
                h.to_string()
            } else {
                h.to_uppercase()
            };
            r.push_str(&format!(".SH \"{}\"\n", inline(&h)));
        } else if let Some(row) = line.strip_prefix('|') {
            table_row(&mut r, row);
        } else if let Some(item) = line.strip_prefix("- ") {
            r.push_str(&format!(".IP \\(bu 2\n{}\n", inline(item)));
        } else if line.trim().is_empty() {
            r.push_str(".PP\n");
        } else {
            r.push_str(&inline(line.trim_start()));
            r.push('\n');
        }
    }
    r
}

/// `| key | type | default | meaning |`; the header and separator rows are left out.
fn table_row(r: &mut String, row: &str) {
    let cells: Vec<&str> = row
        .trim_end_matches('|')
        .split(" | ")
        .map(str::trim)
        .collect();
    if cells.len() < 4 || !cells[0].starts_with('`') {
        return;
    }
    r.push_str(&format!(
        ".TP\n{} ({}; default: {})\n{}\n",
        inline(cells[0]),
        inline(cells[1]),
        inline(cells[2]),
        inline(&cells[3..].join(" | "))
    ));
}

/// Escapes roff's specials and turns `code` and **strong** into bold.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            _ => push_escaped(&mut out, c),
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    guard_line_start(out)
}

fn escape_line(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars() {
        push_escaped(&mut out, c);
    }
    guard_line_start(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\e"),
        '-' => out.push_str("\\-"),
        _ => out.push(c),
    }
}

/// A line starting with `.` or `'` would be read as a roff request.
fn guard_line_start(s: String) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rows_become_tagged_paragraphs() {
        let page = profiles_page(
            "## [system]\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n\
             | `shards` | integer | `0` | one per core |\n",
        );
        assert!(page.contains(".SH \"[system]\""), "{page}");
        assert!(
            page.contains(".TP\n\\fBshards\\fR (integer; default: \\fB0\\fR)\none per core\n"),
            "{page}"
        );
        assert!(!page.contains("| key |"), "{page}");
    }

    #[test]
    fn roff_requests_in_text_are_escaped() {
        assert_eq!(inline(".rm x"), "\\&.rm x");
        assert_eq!(inline("a\\b-c"), "a\\eb\\-c");
    }
}
