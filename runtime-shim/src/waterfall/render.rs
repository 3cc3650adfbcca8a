//! The waterfall as text: one line per span (name indented under its parent, service, a bar
//! placed by start offset and scaled to the width, duration, `✗` on errors), its events as
//! `◆` on the bar with their messages below, and its links.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;

use super::{Node, Waterfall};

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Columns to fill (the terminal's width).
    pub width: usize,
    /// Whether to colour services and errors (ANSI).
    pub color: bool,
}

impl Style {
    /// For standard output: the terminal's width (else `COLUMNS`, else 120 columns), and
    /// colour on a terminal unless `NO_COLOR` is set to something.
    pub fn for_stdout() -> Self {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        let width = terminal
            .then(|| crate::sys::terminal_columns(stdout.as_fd()))
            .flatten()
            .map(usize::from)
            .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
            .unwrap_or(DEFAULT_WIDTH);
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Self {
            width,
            color: terminal && !no_color,
        }
    }
}

/// Columns when standard output is no terminal and `COLUMNS` says nothing.
const DEFAULT_WIDTH: usize = 120;
/// Service colours, in order of first appearance (cyan, magenta, yellow, green, blue).
const PALETTE: [&str; 5] = ["36", "35", "33", "32", "34"];
const RED: &str = "31";
const BAR: char = '█';
const EVENT: char = '◆';
/// The bar never gets narrower than this, however long the names.
const MIN_BAR: usize = 10;
/// Columns of the duration, as "1234.5 ms".
const DURATION: usize = 9;

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A duration the way a person reads it: µs below a millisecond, ms below a second.
pub(super) fn human(ns: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `text` cut to `columns` characters, with `…` when cut.
fn fit(text: &str, columns: usize) -> String {
    if text.chars().count() <= columns {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(columns.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Column of `offset` on a bar of `width` cells spanning `total`: the cell it falls in, or
/// with `round_up` the first cell after it (where a span ending there stops).
fn column(offset: u64, total: u64, width: usize, round_up: bool) -> usize {
    if total == 0 {
        return 0;
    }
    let scaled = u128::from(offset) * u128::try_from(width).unwrap_or(u128::MAX);
    let col = scaled.div_ceil(u128::from(total));
    let col = if round_up {
        col
    } else {
        scaled / u128::from(total)
    };
    usize::try_from(col).unwrap_or(width).min(width)
}

/// The cells of a span's bar: `BAR` from its start to its end (at least one cell), `EVENT`
/// where its events are, spaces elsewhere.
fn cells(node: &Node, total: u64, width: usize) -> Vec<char> {
    let start = column(node.offset_ns, total, width, false).min(width.saturating_sub(1));
    let end = column(node.offset_ns + node.duration_ns, total, width, true).clamp(start + 1, width);
    let mut cells = vec![' '; width];
    for cell in &mut cells[start..end] {
        *cell = BAR;
    }
    for event in &node.events {
        cells[column(event.offset_ns, total, width, false).min(width.saturating_sub(1))] = EVENT;
    }
    cells
}

/// The spans in display order with their depth.
fn rows<'a>(nodes: &'a [Node], depth: usize, out: &mut Vec<(usize, &'a Node)>) {
    for node in nodes {
        out.push((depth, node));
        rows(&node.children, depth + 1, out);
    }
}

/// Draws `waterfall` in `style`.
pub fn render(waterfall: &Waterfall, style: Style) -> String {
    let mut spans = Vec::new();
    rows(&waterfall.roots, 0, &mut spans);
    let mut services: Vec<&str> = Vec::new();
    for (_, node) in &spans {
        if !services.contains(&node.service.as_str()) {
            services.push(&node.service);
        }
    }
    let colour_of = |service: &str| {
        let n = services.iter().position(|s| *s == service).unwrap_or(0);
        PALETTE[n % PALETTE.len()]
    };
    let service_width = services
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let label_width = spans
        .iter()
        .map(|(depth, node)| depth * 2 + node.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(style.width * 2 / 5)
        .max(8);
    let bar_width = style
        .width
        .saturating_sub(label_width + service_width + DURATION + 5)
        .max(MIN_BAR);
    let total = waterfall.duration_ns;

    let mut out = String::new();
    let skewed = spans.iter().any(|(_, node)| node.clock_skew_ns != 0);
    let _ = writeln!(
        out,
        "trace {}: {} spans, {}{}",
        waterfall.trace_id,
        waterfall.span_count,
        human(total),
        if skewed {
            " (clock skew between services adjusted)"
        } else {
            ""
        }
    );
    let axis_end = human(total);
    let _ = writeln!(
        out,
        "{:label_width$} {:service_width$} 0{}{axis_end}",
        "",
        "",
        " ".repeat((bar_width + 1).saturating_sub(axis_end.chars().count())),
    );
    for (depth, node) in spans {
        let indent = "  ".repeat(depth);
        let label = fit(&format!("{indent}{}", node.name), label_width);
        let label = format!("{label:label_width$}");
        let label = if node.error {
            paint(&label, RED, style.color)
        } else {
            label
        };
        let colour = colour_of(&node.service);
        let service = paint(
            &format!("{:service_width$}", node.service),
            colour,
            style.color,
        );
        let bar: String = cells(node, total, bar_width).into_iter().collect();
        let mark = if node.error {
            paint(" ✗", RED, style.color)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{label} {service} │{}│ {:>DURATION$}{mark}",
            paint(&bar, colour, style.color),
            human(node.duration_ns),
        );
        let detail_width = style.width.saturating_sub(indent.len() + 4);
        for event in &node.events {
            let at = human(event.offset_ns.saturating_sub(node.offset_ns));
            let text = fit(&format!("+{at} {}", event.message), detail_width);
            let _ = writeln!(out, "{indent}  {EVENT} {text}");
        }
        for link in &node.links {
            let target = match (&link.name, &link.service, &link.trace_id) {
                (Some(name), Some(service), _) => format!("{name} ({service})"),
                (_, _, Some(trace)) if *trace != waterfall.trace_id => {
                    format!("span {} of trace {trace}", link.span_id)
                }
                _ => format!("span {} (not in this trace)", link.span_id),
            };
            // Never cut: the ids are what a reader copies.
            let _ = writeln!(out, "{indent}  ↪ links to {target}");
        }
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
