//! Small text helpers for scoring plugins: tokenising and bag-of-words
//! similarity. Pure functions, no host calls.

use std::collections::HashMap;

/// Lower-case alphanumeric words of `text`, in order (apostrophes dropped).
pub fn tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
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

/// Word counts of `text`.
pub fn bag_of_words(text: &str) -> HashMap<String, f64> {
    let mut bag = HashMap::new();
    for token in tokens(text) {
        *bag.entry(token).or_insert(0.0) += 1.0;
    }
    bag
}

/// Cosine similarity of two bags of words, in `[0, 1]`.
pub fn cosine(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> f64 {
    let dot: f64 = a
        .iter()
        .filter_map(|(word, count)| b.get(word).map(|other| count * other))
        .sum();
    let norm =
        |bag: &HashMap<String, f64>| bag.values().map(|count| count * count).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercase_words() {
        assert_eq!(
            tokens("I can't log IN, again!"),
            ["i", "cant", "log", "in", "again"]
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
}
