//! "Did you mean" for misspelled names.
//!
//! Owns: an edit distance (optimal string alignment: insert, delete, substitute, swap two
//! neighbours) and the choice of the nearest candidate. Must not: allocate more than two rows
//! per comparison, or suggest something further away than a typo would be.

/// The number of single-character edits (with swaps of neighbours) between two strings.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows are enough for the optimal-string-alignment variant.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate nearest to `word`, if it is close enough to be a typo: at most a third of
/// the word's length (and at least one edit) away. Ties go to the first candidate.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `" (did you mean \"x\"?)"` or nothing.
pub fn hint<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match closest(word, candidates) {
        Some(c) => format!(" (did you mean \"{c}\"?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("parent", "parent"), 0);
        assert_eq!(edit_distance("paren", "parent"), 1);
        assert_eq!(edit_distance("prent", "parent"), 1);
        assert_eq!(edit_distance("aprent", "parent"), 1, "a swap is one edit");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let attrs = [
            "parent", "pre-run", "post-run", "run", "provides", "requires",
        ];
        assert_eq!(closest("paren", attrs), Some("parent"));
        assert_eq!(closest("prerun", attrs), Some("pre-run"));
        assert_eq!(closest("requries", attrs), Some("requires"));
        assert_eq!(closest("nodeset", attrs), None);
        assert_eq!(hint("rnu", attrs), " (did you mean \"run\"?)");
        assert_eq!(hint("zzz", attrs), "");
    }
}
