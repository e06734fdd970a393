//! Enquiry step `classify`: category, priority and sentiment from the
//! enquiry text with a bag-of-words linear model whose weights live in the
//! step config, so designers retune it without rebuilding the plugin.
//!
//! Category: the highest `bias + Σ weight(word)` wins; its softmax share is
//! the confidence; nothing above zero falls back to `fallback_category`.
//! Sentiment: `tanh(Σ weight(word) / 2)` in (-1, 1). Priority: urgency words
//! plus a boost for negative sentiment and for customer tiers, against two
//! thresholds. Writes `classification` to the state; transition `classified`.

use std::collections::HashMap;

use journey_sdk::{Context, Outcome, Step, export_step, text};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Category {
    #[serde(default)]
    bias: f64,
    weights: HashMap<String, f64>,
}

#[derive(Deserialize)]
struct Priority {
    weights: HashMap<String, f64>,
    high_threshold: f64,
    normal_threshold: f64,
    #[serde(default)]
    negative_sentiment_boost: f64,
    #[serde(default)]
    tier_boost: HashMap<String, f64>,
}

#[derive(Deserialize)]
struct Config {
    categories: HashMap<String, Category>,
    fallback_category: String,
    sentiment: HashMap<String, f64>,
    priority: Priority,
}

#[derive(Debug, Serialize, PartialEq)]
struct Classification {
    category: String,
    confidence: f64,
    priority: &'static str,
    priority_score: f64,
    sentiment: &'static str,
    sentiment_score: f64,
}

#[derive(Deserialize)]
struct Enquiry {
    text: String,
}

fn weighted_sum(tokens: &[String], weights: &HashMap<String, f64>) -> f64 {
    tokens.iter().filter_map(|token| weights.get(token)).sum()
}

fn classify(config: &Config, text: &str, tier: Option<&str>) -> Classification {
    let tokens = text::tokens(text);
    let mut scores: Vec<(&str, f64)> = config
        .categories
        .iter()
        .map(|(name, category)| {
            (
                name.as_str(),
                category.bias + weighted_sum(&tokens, &category.weights),
            )
        })
        .collect();
    // Ties break by name so the result does not depend on map order.
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let (category, confidence) = match scores.first() {
        Some(&(name, best)) if best > 0.0 => {
            let total: f64 = scores.iter().map(|(_, score)| (score - best).exp()).sum();
            (name.to_owned(), 1.0 / total)
        }
        _ => (config.fallback_category.clone(), 0.0),
    };

    let sentiment_score = (weighted_sum(&tokens, &config.sentiment) / 2.0).tanh();
    let sentiment = if sentiment_score < -0.2 {
        "negative"
    } else if sentiment_score > 0.2 {
        "positive"
    } else {
        "neutral"
    };

    let priority_config = &config.priority;
    let mut priority_score = weighted_sum(&tokens, &priority_config.weights);
    if sentiment == "negative" {
        priority_score += priority_config.negative_sentiment_boost;
    }
    if let Some(boost) = tier.and_then(|tier| priority_config.tier_boost.get(tier)) {
        priority_score += boost;
    }
    let priority = if priority_score >= priority_config.high_threshold {
        "high"
    } else if priority_score >= priority_config.normal_threshold {
        "normal"
    } else {
        "low"
    };
    let round = |value: f64| (value * 1000.0).round() / 1000.0;
    Classification {
        category,
        confidence: round(confidence),
        priority,
        priority_score: round(priority_score),
        sentiment,
        sentiment_score: round(sentiment_score),
    }
}

struct Classify;

impl Step for Classify {
    fn run(ctx: &mut Context) -> journey_sdk::Result<Outcome> {
        let config: Config = ctx.config()?;
        let enquiry: Enquiry = ctx.event_data()?;
        let customer = ctx.customer_with_history(0);
        let classification = classify(&config, &enquiry.text, customer.profile_str("tier"));
        ctx.info(&format!(
            "{} ({:.0}%), priority {}, sentiment {}",
            classification.category,
            classification.confidence * 100.0,
            classification.priority,
            classification.sentiment
        ));
        ctx.count("enquiries_classified", 1);
        ctx.set("classification", &classification)?;
        Ok(Outcome::goto("classified"))
    }
}

export_step!(Classify);

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "fallback_category": "general",
            "categories": {
                "billing": { "weights": { "refund": 2.0, "charged": 2.0, "payment": 1.5 } },
                "delivery": { "weights": { "package": 2.0, "tracking": 2.0, "arrived": 1.5 } },
            },
            "sentiment": { "unacceptable": -2.0, "broke": -1.0, "thanks": 1.0 },
            "priority": {
                "weights": { "now": 1.0, "urgent": 2.0 },
                "high_threshold": 2.0,
                "normal_threshold": 0.5,
                "negative_sentiment_boost": 1.0,
                "tier_boost": { "gold": 0.5 },
            },
        }))
        .expect("test config parses")
    }

    #[test]
    fn picks_the_category_with_the_most_evidence() {
        let result = classify(
            &config(),
            "I was charged twice, please refund the payment",
            None,
        );
        assert_eq!(result.category, "billing");
        assert!(result.confidence > 0.9, "{result:?}");
        let result = classify(&config(), "My package has not arrived", None);
        assert_eq!(result.category, "delivery");
    }

    #[test]
    fn falls_back_when_nothing_matches() {
        let result = classify(&config(), "hello there", None);
        assert_eq!(result.category, "general");
        assert_eq!(result.confidence, 0.0);
        assert_eq!(result.priority, "low");
    }

    #[test]
    fn angry_urgent_enquiries_are_high_priority_and_negative() {
        let result = classify(
            &config(),
            "This is unacceptable, it broke, refund me now",
            None,
        );
        assert_eq!(result.sentiment, "negative");
        assert_eq!(result.priority, "high");
    }

    #[test]
    fn customer_tier_raises_priority() {
        let plain = classify(&config(), "refund now", None);
        let gold = classify(&config(), "refund now", Some("gold"));
        assert_eq!(plain.priority, "normal");
        assert!(gold.priority_score > plain.priority_score);
    }
}
