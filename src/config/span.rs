//! Byte offsets from the TOML parser turned into 1-based line and character column.

use std::path::Path;
use std::sync::Arc;

use super::diagnostic::Loc;

/// The text of one profile file and where its lines start.
pub(crate) struct SourceFile {
    pub path: Arc<Path>,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: &Path, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path: Arc::from(path),
            text,
            line_starts,
        }
    }

    /// The place of a byte offset; the column counts characters, not bytes, so that it matches
    /// what an editor shows.
    pub fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Loc {
            file: self.path.clone(),
            line,
            col,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let f = SourceFile::new(Path::new("a.toml"), "ab\ncdé = 1\n\nx".to_string());
        let at = |o| {
            let l = f.loc(o);
            (l.line, l.col)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(1), (1, 2));
        assert_eq!(at(2), (1, 3));
        assert_eq!(at(3), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(at(8), (2, 5));
        assert_eq!(at(12), (3, 1));
        assert_eq!(at(13), (4, 1));
        assert_eq!(at(99), (4, 2));
    }
}
