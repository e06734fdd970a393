//! Small text helpers for scoring plugins: tokenising and bag-of-words
//! similarity. Pure functions, no host calls.

/// Lower-case alphanumeric words of `text`, in order (apostrophes dropped).
pub fn tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if c != '\'' && !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// Word counts of a text, sorted by word: comparing two bags is one merge,
/// with no hashing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bag {
    counts: Vec<(String, f64)>,
    norm: f64,
}

impl Bag {
    /// How often `word` occurs (0 when it does not).
    pub fn count(&self, word: &str) -> f64 {
        self.counts
            .binary_search_by(|(known, _)| known.as_str().cmp(word))
            .map_or(0.0, |index| self.counts[index].1)
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether the text had no words.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Word counts of `text`.
pub fn bag_of_words(text: &str) -> Bag {
    let mut words = tokens(text);
    words.sort_unstable();
    let mut counts: Vec<(String, f64)> = Vec::with_capacity(words.len());
    for word in words {
        match counts.last_mut() {
            Some((last, count)) if *last == word => *count += 1.0,
            _ => counts.push((word, 1.0)),
        }
    }
    let norm = counts
        .iter()
        .map(|(_, count)| count * count)
        .sum::<f64>()
        .sqrt();
    Bag { counts, norm }
}

/// Cosine similarity of two bags of words, in `[0, 1]`.
pub fn cosine(a: &Bag, b: &Bag) -> f64 {
    let denominator = a.norm * b.norm;
    if denominator == 0.0 {
        return 0.0;
    }
    let (mut left, mut right) = (a.counts.iter().peekable(), b.counts.iter().peekable());
    let mut dot = 0.0;
    while let (Some((x, count_x)), Some((y, count_y))) = (left.peek(), right.peek()) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => {
                left.next();
            }
            std::cmp::Ordering::Greater => {
                right.next();
            }
            std::cmp::Ordering::Equal => {
                dot += count_x * count_y;
                left.next();
                right.next();
            }
        }
    }
    dot / denominator
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercase_words() {
        assert_eq!(
            tokens("I can't log IN, again! Ünïcode"),
            ["i", "cant", "log", "in", "again", "ünïcode"]
        );
    }

    #[test]
    fn cosine_ranks_closer_texts_higher() {
        let query = bag_of_words("refund my duplicate payment");
        let close = bag_of_words("please refund the duplicate payment on my card");
        let far = bag_of_words("where is my parcel");
        assert!(cosine(&query, &close) > cosine(&query, &far));
        assert_eq!(cosine(&query, &bag_of_words("")), 0.0);
        assert!((cosine(&query, &query) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_bag_counts_each_word_once_per_occurrence() {
        let bag = bag_of_words("Refund, refund: the REFUND now");
        assert_eq!(
            (bag.count("refund"), bag.count("now"), bag.count("x")),
            (3.0, 1.0, 0.0)
        );
        assert_eq!(bag.len(), 3);
        assert!(bag_of_words(" ,. ").is_empty());
        let similar = cosine(&bag, &bag_of_words("refund now"));
        assert!(similar > 0.8 && similar < 1.0, "{similar}");
    }
}
