//! A journey drawn as a graph: its steps and terminal states as boxes in
//! layers from the start step down, its transitions as labelled arrows
//! (a transition back up, such as an escalation that waits again, is
//! dashed and goes round the right of everything), and its exit events
//! beside the terminal states.
//!
//! Only positions are computed here; the journey page's template draws
//! them as an inline SVG, styled by the console's stylesheet (no inline
//! style, so the content security policy holds).

use std::collections::{BTreeMap, VecDeque};

/// A box's size and the space between boxes, in SVG units.
const BOX_WIDTH: u32 = 190;
const BOX_HEIGHT: u32 = 50;
const GAP_X: u32 = 40;
const GAP_Y: u32 = 56;
/// Room on the right for the labels of the rightmost arrows.
const LABEL_ROOM: u32 = 90;
/// The exit box's width.
const EXIT_WIDTH: u32 = 260;
const MARGIN: u32 = 12;

/// A step as the graph needs it.
pub struct StepNode {
    pub name: String,
    /// The second line: the plugin, or the split's variants.
    pub runs: String,
    /// Instances of the version standing there now.
    pub standing: u64,
    /// `step`, `split` or `wait` (a step that waits for an event).
    pub kind: &'static str,
    /// Its transitions: (name, target).
    pub on: Vec<(String, String)>,
}

/// A box to draw.
pub struct GraphNode {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub name: String,
    pub detail: String,
    /// `step`, `split`, `wait`, `terminal` or `exit`.
    pub kind: &'static str,
    pub start: bool,
}

impl GraphNode {
    /// The x of its centre, for the label.
    pub fn middle(&self) -> u32 {
        self.x + self.width / 2
    }
}

/// An arrow to draw: an SVG path and its label's position.
pub struct GraphEdge {
    pub path: String,
    pub label: String,
    pub label_x: u32,
    pub label_y: u32,
    /// Whether it goes back up (drawn round the side).
    pub back: bool,
}

/// The whole drawing.
pub struct Graph {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// The drawing in words, for a screen reader.
    pub summary: String,
}

/// `text` cut to what fits a box's second line.
fn shortened(text: &str) -> String {
    const FITS: usize = 22;
    match text.char_indices().nth(FITS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Lay out `steps` (in definition order) from `start`, with the journey's
/// `terminal` states and `exits` (event types that end an instance
/// anywhere).
pub fn layout(steps: &[StepNode], start: &str, terminal: &[String], exits: &[String]) -> Graph {
    // Layers: the shortest distance from the start; steps it never
    // reaches go below the rest, terminal states at the bottom.
    let mut layer: BTreeMap<&str, u32> = BTreeMap::new();
    let mut queue = VecDeque::from([(start, 0u32)]);
    while let Some((name, depth)) = queue.pop_front() {
        if layer.contains_key(name) {
            continue;
        }
        layer.insert(name, depth);
        if let Some(step) = steps.iter().find(|step| step.name == name) {
            for (_, target) in &step.on {
                if !terminal.contains(target) {
                    queue.push_back((target, depth + 1));
                }
            }
        }
    }
    let deepest = layer.values().copied().max().unwrap_or(0);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); deepest as usize + 3];
    for (index, step) in steps.iter().enumerate() {
        let row = layer
            .get(step.name.as_str())
            .map_or(deepest + 1, |depth| *depth);
        rows[row as usize].push(index);
    }
    rows.retain(|row| !row.is_empty());
    let widest = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(1)
        .max(terminal.len())
        .max(1) as u32;
    let content = widest * BOX_WIDTH + (widest - 1) * GAP_X;
    let place = |count: u32, index: u32| {
        let used = count * BOX_WIDTH + count.saturating_sub(1) * GAP_X;
        MARGIN + (content - used) / 2 + index * (BOX_WIDTH + GAP_X)
    };
    let row_y = |row: u32| MARGIN + row * (BOX_HEIGHT + GAP_Y);
    let mut nodes = Vec::new();
    let mut at: BTreeMap<&str, usize> = BTreeMap::new();
    for (row, members) in rows.iter().enumerate() {
        for (index, &step) in members.iter().enumerate() {
            let step = &steps[step];
            at.insert(&step.name, nodes.len());
            nodes.push(GraphNode {
                x: place(members.len() as u32, index as u32),
                y: row_y(row as u32),
                width: BOX_WIDTH,
                height: BOX_HEIGHT,
                name: step.name.clone(),
                detail: format!("{} · {} here", shortened(&step.runs), step.standing),
                kind: step.kind,
                start: step.name == start,
            });
        }
    }
    let terminal_row = rows.len() as u32;
    for (index, state) in terminal.iter().enumerate() {
        at.insert(state, nodes.len());
        nodes.push(GraphNode {
            x: place(terminal.len() as u32, index as u32),
            y: row_y(terminal_row),
            width: BOX_WIDTH,
            height: BOX_HEIGHT,
            name: state.clone(),
            detail: "terminal state".into(),
            kind: "terminal",
            start: false,
        });
    }
    let mut height = row_y(terminal_row) + BOX_HEIGHT + MARGIN;
    if !exits.is_empty() {
        // Beside the drawing's foot: an exit ends an instance anywhere.
        nodes.push(GraphNode {
            x: MARGIN + content + GAP_X,
            y: row_y(terminal_row),
            width: EXIT_WIDTH,
            height: BOX_HEIGHT,
            name: "exit (from any step)".into(),
            detail: exits.join(", "),
            kind: "exit",
            start: false,
        });
    }
    // One arrow per pair of boxes, naming every transition it stands for.
    let mut arrows: Vec<(usize, usize, String)> = Vec::new();
    for step in steps {
        let Some(&from) = at.get(step.name.as_str()) else {
            continue;
        };
        for (transition, target) in &step.on {
            let Some(&to) = at.get(target.as_str()) else {
                continue;
            };
            match arrows
                .iter_mut()
                .find(|(source, sink, _)| (*source, *sink) == (from, to))
            {
                Some((_, _, label)) => {
                    label.push_str(", ");
                    label.push_str(transition);
                }
                None => arrows.push((from, to, transition.clone())),
            }
        }
    }
    let mut edges = Vec::new();
    let mut loops = 0;
    for (from, to, transition) in arrows {
        {
            let (source, sink) = (&nodes[from], &nodes[to]);
            if sink.y > source.y {
                let (x1, y1) = (source.middle(), source.y + source.height);
                let (x2, y2) = (sink.middle(), sink.y);
                let bend = (y2 - y1) / 2;
                edges.push(GraphEdge {
                    path: format!(
                        "M{x1},{y1} C{x1},{} {x2},{} {x2},{y2}",
                        y1 + bend,
                        y2 - bend
                    ),
                    label: transition.clone(),
                    label_x: (x1 + x2) / 2 + 4,
                    label_y: (y1 + y2) / 2 + 4,
                    back: false,
                });
            } else {
                // Back up (or across): up out of the source's top, round
                // the right of everything, into the target's right side.
                loops += 1;
                let reach = MARGIN + content + 16 * loops;
                let (x1, y1) = (source.x + source.width * 3 / 4, source.y);
                let above = y1.saturating_sub(12 + 4 * loops);
                let (x2, y2) = (sink.x + sink.width, sink.y + sink.height / 2);
                edges.push(GraphEdge {
                    path: format!("M{x1},{y1} V{above} H{reach} V{y2} H{x2}"),
                    label: transition.clone(),
                    label_x: reach + 4,
                    label_y: (above + y2) / 2 + 4,
                    back: true,
                });
            }
        }
    }
    let mut width = MARGIN + content + 16 * loops + LABEL_ROOM + MARGIN;
    if !exits.is_empty() {
        width = width.max(MARGIN + content + GAP_X + EXIT_WIDTH + MARGIN);
        height = height.max(row_y(terminal_row) + BOX_HEIGHT + MARGIN);
    }
    let summary = format!(
        "{} steps from {start}, ending at {}{}.",
        steps.len(),
        if terminal.is_empty() {
            "no terminal state".to_owned()
        } else {
            terminal.join(" or ")
        },
        if exits.is_empty() {
            String::new()
        } else {
            format!("; an instance leaves on {}", exits.join(" or "))
        }
    );
    Graph {
        width,
        height,
        nodes,
        edges,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, on: &[(&str, &str)]) -> StepNode {
        StepNode {
            name: name.into(),
            runs: "p".into(),
            standing: 0,
            kind: "step",
            on: on
                .iter()
                .map(|(transition, target)| ((*transition).into(), (*target).into()))
                .collect(),
        }
    }

    #[test]
    fn steps_stand_in_layers_from_the_start_and_a_loop_goes_back_up() {
        let steps = [
            step("ack", &[("sent", "wait")]),
            step("wait", &[("resolved", "done"), ("breached", "escalate")]),
            step("escalate", &[("escalated", "wait")]),
            step("orphan", &[]),
        ];
        let graph = layout(&steps, "ack", &["done".into()], &["cancelled".into()]);
        let y = |name: &str| {
            graph
                .nodes
                .iter()
                .find(|node| node.name == name)
                .map(|node| node.y)
                .expect(name)
        };
        assert!(y("ack") < y("wait") && y("wait") < y("escalate"));
        assert!(
            y("escalate") < y("orphan"),
            "an unreachable step goes below"
        );
        assert!(y("orphan") < y("done"), "terminal states at the bottom");
        assert_eq!(graph.edges.len(), 4);
        let back: Vec<&str> = graph
            .edges
            .iter()
            .filter(|edge| edge.back)
            .map(|edge| edge.label.as_str())
            .collect();
        assert_eq!(back, ["escalated"]);
        for node in &graph.nodes {
            assert!(node.x + node.width <= graph.width, "{} fits", node.name);
            assert!(node.y + node.height <= graph.height, "{} fits", node.name);
        }
        assert!(graph.nodes.iter().any(|node| node.kind == "exit"));
    }

    #[test]
    fn two_transitions_to_the_same_step_are_one_arrow_naming_both() {
        let steps = [
            step("handover", &[("assigned", "wait"), ("escalated", "wait")]),
            step("wait", &[("done", "resolved")]),
        ];
        let graph = layout(&steps, "handover", &["resolved".into()], &[]);
        let labels: Vec<&str> = graph.edges.iter().map(|edge| edge.label.as_str()).collect();
        assert_eq!(labels, ["assigned, escalated", "done"]);
    }

    #[test]
    fn a_long_plugin_reference_is_cut_to_fit_its_box() {
        assert_eq!(shortened("classify:stable"), "classify:stable");
        let cut = shortened("a-very-long-plugin-name-indeed@12");
        assert_eq!(cut.chars().count(), 23, "{cut}");
        assert!(cut.ends_with('…'));
    }
}
